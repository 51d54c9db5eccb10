"""What the dashboard's index page loads: plotly.js's cartesian bundle of plotly.py's own plotly.js version,
fetched as the first callback leaves (not a blocking script), and the browser's own trimming and number parsing
kept around Babel's polyfill. The browser test checks that every figure is drawn by a module of that bundle."""

from __future__ import annotations

from pathlib import Path

from plotly.offline import get_plotlyjs_version

import dashboard
from dashboard.app import NATIVE, PLOTLY_BUNDLE, create_app


def test_the_plotly_bundle_is_the_cartesian_one_of_plotly_py_s_plotly_js(tmp_path: Path) -> None:
    bundle = Path(dashboard.__file__).parent / "assets" / PLOTLY_BUNDLE
    head = bundle.read_text()[:300]
    assert f"plotly.js (cartesian - minified) v{get_plotlyjs_version()}" in head
    app = create_app(f"sqlite:///{tmp_path / 'mlflow.db'}")
    client = app.server.test_client()
    index = client.get("/").get_data(as_text=True)
    url = app.get_asset_url(PLOTLY_BUNDLE)
    assert f'script.src = "{url}"' in index and f'src="{url}' not in index  # loaded by the renderer's hook only
    served = client.get(url)
    assert served.status_code == 200 and served.get_data() == bundle.read_bytes()
    assert "plotly.min.js" not in index  # plotly.py's full bundle is never asked for


def test_the_browser_s_own_trim_and_parse_functions_are_put_back_after_the_polyfill(tmp_path: Path) -> None:
    index = create_app(f"sqlite:///{tmp_path / 'mlflow.db'}").server.test_client().get("/").get_data(as_text=True)
    assert index.count("/polyfill@") == 1
    polyfill = index.index("/polyfill@")
    saved = index.index("var fitlensNative = [")
    assert saved < polyfill
    for i, name in enumerate(NATIVE):
        assert index.index(f"{name} = fitlensNative[{i}];") > polyfill
    assert index[saved:polyfill].split("[", 1)[1].split("]", 1)[0].split(", ") == list(NATIVE)

"""What the dashboard's index page loads: plotly.js's cartesian bundle of plotly.py's own plotly.js version,
fetched as the first callback leaves (not a blocking script), and the browser's own trimming and number parsing
kept around Babel's polyfill. The browser test checks that every figure is drawn by a module of that bundle."""

from __future__ import annotations

from pathlib import Path

from plotly.offline import get_plotlyjs_version

import dashboard
from dashboard.app import NATIVE_SAVE, PLOTLY_BUNDLE, create_app

ASSETS = Path(dashboard.__file__).parent / "assets"


def test_the_plotly_bundle_is_the_cartesian_one_of_plotly_py_s_plotly_js(tmp_path: Path) -> None:
    bundle = ASSETS / PLOTLY_BUNDLE
    head = bundle.read_text()[:300]
    assert f"plotly.js (cartesian - minified) v{get_plotlyjs_version()}" in head
    app = create_app(f"sqlite:///{tmp_path / 'mlflow.db'}")
    client = app.server.test_client()
    index = client.get("/").get_data(as_text=True)
    url = app.get_asset_url(PLOTLY_BUNDLE)
    assert f'new DashRenderer(fitlensRendererHooks("{url}"))' in index  # loaded by the renderer's hook only,
    assert f'src="{url}' not in index  # never as a blocking script
    assert "/assets/fitlens-draw.js" in index
    assert "function fitlensRendererHooks" in (ASSETS / "fitlens-draw.js").read_text()
    served = client.get(url)
    assert served.status_code == 200 and served.get_data() == bundle.read_bytes()
    assert "plotly.min.js" not in index  # plotly.py's full bundle is never asked for


def test_the_browser_s_own_trim_and_parse_functions_are_put_back_after_the_polyfill(tmp_path: Path) -> None:
    """native-save.js runs just before the polyfill, native-restore.js (an ordinary asset) after it; every
    function it saves is a browser built-in the polyfill replaces."""
    index = create_app(f"sqlite:///{tmp_path / 'mlflow.db'}").server.test_client().get("/").get_data(as_text=True)
    assert index.count("/polyfill@") == 1 and index.count(NATIVE_SAVE) == 1
    polyfill = index.index("/polyfill@")
    save, restore = index.index(f"/assets/{NATIVE_SAVE}"), index.index("/assets/native-restore.js")
    assert save < polyfill < restore
    saved = (ASSETS / NATIVE_SAVE).read_text()
    for name in ("trim", "trimStart", "trimEnd", "parseInt", "parseFloat"):
        assert f'"{name}"' in saved

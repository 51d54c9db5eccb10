"""The Dash app: a router over the pages of `dashboard.pages`, and one live content callback.

Every page module has `PATH` (a template such as "/run/<run_id>"), `TITLE`, `controls(reader, **args)`
(the page's controls, built once when the URL changes) and `content(reader, args, values)` (everything
data-driven: drawn with the controls when the URL changes, then rebuilt when a control changes and on the
live-refresh interval). Controls carry ids `{"type": "control", "name": ...}`, so one callback serves every
page; tests call `controls` and `content` as plain functions. Markup from the store (run names, tags) is
only ever passed as text, which Dash renders inert.
"""

from __future__ import annotations

import hashlib
import re
import traceback
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any
from urllib.parse import parse_qs

from dash import ALL, Dash, Input, Output, State, ctx, dcc, html, no_update
from plotly.io.json import to_json_plotly

from dashboard import ids
from dashboard.cache import CachedReader
from dashboard.components import message
from dashboard.pages import PAGES
from tracking.reader import DataError

REFRESH_MS = 5000  # live refresh while a sweep runs; finished runs are cached, so a refresh costs little


def match(pathname: str | None) -> tuple[ModuleType, dict[str, str]] | None:
    """The page whose PATH matches `pathname`, with the path's arguments; None for no page."""
    path = (pathname or "/").rstrip("/") or "/"
    for page in PAGES:
        pattern = "^" + re.sub(r"<(\w+)>", r"(?P<\1>[^/]+)", page.PATH) + "$"
        found = re.match(pattern, path)
        if found:
            return page, found.groupdict()
    return None


def query(search: str | None) -> dict[str, str]:
    """The URL's query string as one value per name (the first)."""
    return {key: values[0] for key, values in parse_qs((search or "").lstrip("?")).items()}


def _guarded(render: Callable[[], Any]) -> Any:
    """render(), or a notice in the page when it fails: a DataError says what the store holds that cannot be read,
    and any other exception (a page bug) must not become a server error."""
    try:
        return render()
    except DataError as err:
        return message(str(err))
    except Exception as err:
        traceback.print_exc()
        return message(f"this view failed: {type(err).__name__}: {err}"[:500])


def render_controls(reader: CachedReader, pathname: str | None, search: str | None) -> Any:
    routed = match(pathname)
    if routed is None:
        return message(f"no page at {str(pathname)[:200]!r}; the pages are: "
                       + ", ".join(p.PATH for p in PAGES))
    page, args = routed
    # Query names are the URL's: one that is also an argument name (?reader=, ?run_id=) must not reach it.
    extra = {k: v for k, v in query(search).items() if k not in args and k != "reader"}
    return _guarded(lambda: page.controls(reader, **args, **extra))


def render_content(reader: CachedReader, pathname: str | None, search: str | None,
                   values: Mapping[str, Any]) -> Any:
    routed = match(pathname)
    if routed is None:
        return None
    page, args = routed
    return _guarded(lambda: page.content(reader, {**query(search), **args}, dict(values)))


# Plotly.js: plotly.py's full bundle is 4.8 MB (~0.7 s to evaluate cold, longer to compile its drawing code on
# first use); the pages draw only cartesian traces (scatter, bar, box, heatmap), which plotly.js's official
# "cartesian" partial bundle of the same version holds in 1.5 MB (assets/, kept to plotly.py's version by a test).
# assets/fitlens-draw.js loads it with the first callback request and draws each figure in a task of its own after
# the browser has painted: dcc.Graph drew every figure of an answer in the task that mounted them, so the window
# showed nothing of the page (its text, its table) until the last figure, below the window, was drawn: 0.8-1.2 s of
# the sweep page.
PLOTLY_BUNDLE = "plotly-cartesian-4.1.1.min.js"
RENDERER = 'var renderer = new DashRenderer(fitlensRendererHooks("{url}"));'
# Dash's bundles need Babel's polyfill (regeneratorRuntime), but its core-js replaces the browser's own whitespace
# trimming and number parsing with JavaScript ones (it still counts U+180E as whitespace, which Unicode stopped doing
# in 2013, so it finds every browser's own wrong). Those ran on the drawing path: d3 trims class names for every
# element it styles (0.25-0.45 s of the sweep page), and Plotly parses a colour with parseInt for every marker
# (35 ms). Every browser Dash 4 runs in has correct native ones: assets/native-save.js saves them before the polyfill
# and assets/native-restore.js (an ordinary asset, loaded after it) puts them back.
NATIVE_SAVE = "native-save.js"
POLYFILL = re.compile(r'(<script src="[^"]*/polyfill@[^"]*"></script>)')


class _Dash(Dash):
    def interpolate_index(self, **kwargs: Any) -> str:
        save = f'<script src="{self.get_asset_url(NATIVE_SAVE)}"></script>'
        kwargs["scripts"] = POLYFILL.sub(lambda found: save + found.group(1), kwargs.get("scripts", ""), count=1)
        return super().interpolate_index(**kwargs)


def control_values(tree: Any) -> dict[str, Any]:
    """{name: value} of every control ({"type": "control", "name": ...}) in the component `tree`: what the
    browser sends as the controls' values."""
    found = {}
    for component in [tree, *tree._traverse()] if hasattr(tree, "_traverse") else []:
        cid = getattr(component, "id", None)
        if isinstance(cid, dict) and cid.get("type") == "control":
            found[cid["name"]] = getattr(component, "value", None)
    return found


def drawn_record(values: Mapping[str, Any], content: Any) -> dict[str, Any]:
    """What the page keeps of the content it shows (ids.DRAWN_WITH): the controls' values it was drawn with, and a
    digest of it as the browser receives it."""
    digest = hashlib.blake2b(to_json_plotly(content).encode(), digest_size=16).hexdigest()
    return {"values": dict(values), "digest": digest}


def render_page(reader: CachedReader, pathname: str | None, search: str | None) -> tuple[Any, Any, dict[str, Any]]:
    """What a URL shows, the route callback's answer: the page's controls, its content with their initial values
    (in one answer: the browser would otherwise draw the content once before the controls exist and again after),
    and the drawn record of that content."""
    controls = render_controls(reader, pathname, search)
    values = control_values(controls)
    content = render_content(reader, pathname, search, values)
    return controls, content, drawn_record(values, content)


def redraw(reader: CachedReader, pathname: str | None, search: str | None, values: Mapping[str, Any],
           drawn: Mapping[str, Any] | None, refresh: bool) -> tuple[Any, Any]:
    """The content callback's answer: (content, drawn record), no_update for either where it would not change.

    A control change to the values the content was drawn with (a dropdown reports its value once mounted) renders
    nothing. Otherwise the content is rendered (cached data: a live refresh of finished runs costs little on the
    server), but sent only when it differs from what the page shows: the browser would redraw every figure, about
    a second of the sweep page's, every refresh interval."""
    drawn = drawn or {}
    if not refresh and dict(values) == drawn.get("values"):
        return no_update, no_update
    content = render_content(reader, pathname, search, values)
    record = drawn_record(values, content)
    if record["digest"] != drawn.get("digest"):
        return content, record
    return no_update, (no_update if record == drawn else record)


def create_app(uri: str | None = None, refresh_ms: int = REFRESH_MS) -> Dash:
    """The dashboard over the tracking store `uri` (default: MLFLOW_TRACKING_URI, else ./mlflow.db)."""
    reader = CachedReader(uri)
    app = _Dash(__name__, title="fitlens", update_title=None, suppress_callback_exceptions=True,
                assets_folder="assets", assets_ignore=f"{re.escape(PLOTLY_BUNDLE)}|{re.escape(NATIVE_SAVE)}")
    app.renderer = RENDERER.format(url=app.get_asset_url(PLOTLY_BUNDLE))  # served, loaded by the renderer's hook
    app.layout = html.Div([
        dcc.Location(id=ids.URL),
        html.Header([
            dcc.Link("fitlens", href="/", className="brand"),
            html.Span(f"store: {reader.uri}", className="store"),
            dcc.Checklist(id=ids.LIVE, options=[{"label": " live", "value": "on"}], value=["on"], inline=True),
        ], className="header"),
        dcc.Interval(id=ids.REFRESH, interval=refresh_ms),
        dcc.Store(id=ids.DRAWN_WITH),
        html.Main(id=ids.PAGE),
        html.Div(id=ids.CONTENT),
    ])

    @app.callback(Output(ids.PAGE, "children"), Output(ids.CONTENT, "children"), Output(ids.DRAWN_WITH, "data"),
                  Input(ids.URL, "pathname"), Input(ids.URL, "search"))
    def route(pathname: str | None, search: str | None) -> tuple[Any, Any, dict[str, Any]]:
        return render_page(reader, pathname, search)

    # Not at load, nor when the route puts new controls on the page (prevent_initial_call): the route drew the
    # content with their values.
    @app.callback(
        Output(ids.CONTENT, "children", allow_duplicate=True), Output(ids.DRAWN_WITH, "data", allow_duplicate=True),
        Input(ids.REFRESH, "n_intervals"), Input({"type": "control", "name": ALL}, "value"),
        State(ids.URL, "pathname"), State(ids.URL, "search"), State(ids.LIVE, "value"), State(ids.DRAWN_WITH, "data"),
        prevent_initial_call=True,
    )
    def update(_tick: int, _values: list, pathname: str | None, search: str | None, live: list,
               drawn_with: dict[str, Any] | None) -> tuple[Any, Any]:
        refresh = ctx.triggered_id == ids.REFRESH
        if refresh and not live:
            return no_update, no_update
        values = {item["id"]["name"]: item.get("value") for item in ctx.inputs_list[1]}
        return redraw(reader, pathname, search, values, drawn_with, refresh)

    app.reader = reader  # for tests and benchmarks
    return app

"""The Dash app: a router over the pages of `dashboard.pages`, and one live content callback.

Every page module has `PATH` (a template such as "/run/<run_id>"), `TITLE`, `controls(reader, **args)`
(the page's controls, built once when the URL changes) and `content(reader, args, values)` (everything
data-driven, rebuilt when a control changes and on the live-refresh interval). Controls carry ids
`{"type": "control", "name": ...}`, so one callback serves every page; tests call `controls` and `content`
as plain functions. Markup from the store (run names, tags) is only ever passed as text, which Dash renders
inert.
"""

from __future__ import annotations

import re
import traceback
from collections.abc import Mapping
from types import ModuleType
from typing import Any
from urllib.parse import parse_qs

from dash import ALL, Dash, Input, Output, State, ctx, dcc, html

from dashboard import ids
from dashboard.components import message
from dashboard.data import DataError, Reader
from dashboard.pages import PAGES

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


def render_controls(reader: Reader, pathname: str | None, search: str | None) -> Any:
    routed = match(pathname)
    if routed is None:
        return message(f"no page at {str(pathname)[:200]!r}; the pages are: "
                       + ", ".join(p.PATH for p in PAGES))
    page, args = routed
    try:
        return page.controls(reader, **args, **{k: v for k, v in query(search).items() if k not in args})
    except DataError as err:
        return message(str(err))


def render_content(reader: Reader, pathname: str | None, search: str | None, values: Mapping[str, Any]) -> Any:
    routed = match(pathname)
    if routed is None:
        return None
    page, args = routed
    try:
        return page.content(reader, {**query(search), **args}, dict(values))
    except DataError as err:
        return message(str(err))
    except Exception as err:  # a page bug must not become a server error: say what failed
        traceback.print_exc()
        return message(f"this view failed: {type(err).__name__}: {err}"[:500])


def create_app(uri: str | None = None, refresh_ms: int = REFRESH_MS) -> Dash:
    """The dashboard over the tracking store `uri` (default: MLFLOW_TRACKING_URI, else ./mlflow.db)."""
    reader = Reader(uri)
    app = Dash(__name__, title="fitlens", update_title=None, suppress_callback_exceptions=True,
               assets_folder="assets")
    app.layout = html.Div([
        dcc.Location(id=ids.URL),
        html.Header([
            dcc.Link("fitlens", href="/", className="brand"),
            html.Span(f"store: {reader.uri}", className="store"),
            dcc.Checklist(id=ids.LIVE, options=[{"label": " live", "value": "on"}], value=["on"], inline=True),
        ], className="header"),
        dcc.Interval(id=ids.REFRESH, interval=refresh_ms),
        html.Main(id=ids.PAGE),
        html.Div(id=ids.CONTENT),
    ])

    @app.callback(Output(ids.PAGE, "children"), Input(ids.URL, "pathname"), State(ids.URL, "search"))
    def route(pathname: str | None, search: str | None) -> Any:
        return render_controls(reader, pathname, search)

    @app.callback(
        Output(ids.CONTENT, "children"),
        Input(ids.URL, "pathname"), Input(ids.URL, "search"), Input(ids.REFRESH, "n_intervals"),
        Input({"type": "control", "name": ALL}, "value"), State(ids.LIVE, "value"),
    )
    def update(pathname: str | None, search: str | None, _tick: int, _values: list, live: list) -> Any:
        if ctx.triggered_id == ids.REFRESH and not live:
            from dash import no_update

            return no_update
        values = {item["id"]["name"]: item.get("value") for item in ctx.inputs_list[3]}
        return render_content(reader, pathname, search, values)

    app.reader = reader  # for tests and benchmarks
    return app

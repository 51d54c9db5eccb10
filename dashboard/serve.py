"""Serving the dashboard: waitress (a production WSGI server, not Flask's development server), debug off,
bound to localhost unless told otherwise."""

from __future__ import annotations

import gc
import logging
from typing import TYPE_CHECKING

from lightning_modules.config import ConfigError

if TYPE_CHECKING:
    from dashboard.cache import CachedReader

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8050
THREADS = 8  # concurrent requests: a page asks for its content and Dash's assets at once


def serve(uri: str | None = None, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> None:
    """Serve the dashboard over the store `uri` at http://host:port/ until interrupted."""
    if not 0 < port < 65536:
        raise ConfigError(f"--port = {port} is not allowed; it must be a TCP port in 1..65535")
    from waitress import serve as waitress_serve

    from dashboard.app import create_app

    app = create_app(uri)
    warm_up(app.reader)
    gc.freeze()  # start-up's objects live as long as the server: collections skip them (0.3 s of a first page)
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # "task queue depth" notes on 2 cores
    print(f"fitlens dashboard: http://{host}:{port}/  (store: {app.reader.uri}; Ctrl-C stops it)", flush=True)
    waitress_serve(app.server, host=host, port=port, threads=THREADS, ident="fitlens")


def warm_up(reader: CachedReader) -> None:
    """Pay at start what the first page would pay once per process (~0.5 s): opening the store (MLflow checks an
    embedded store's schema on first use), importing Parquet reading and the Plotly classes the figures use (Plotly
    imports each lazily), and Plotly reading its validators. Nothing of the runs is read or cached."""
    import io

    import pandas as pd
    import plotly.graph_objects as go
    from plotly.io.json import to_json_plotly
    from plotly.subplots import make_subplots

    from tracking.reader import experiment_ids

    experiment_ids(reader.client)  # opens the store
    pd.read_parquet(io.BytesIO(pd.DataFrame({"step": [0]}).to_parquet()))  # histogram parts

    figure = make_subplots(rows=1, cols=2)
    figure.add_trace(go.Scatter(x=pd.Series([0.0]), y=[0.0], marker={"color": [0.0], "coloraxis": "coloraxis"}), 1, 1)
    figure.add_trace(go.Bar(x=[0.0], y=[0.0], marker={"line": {"width": 0}}), 1, 2)
    figure.add_trace(go.Heatmap(z=[[0.0]]), 1, 2)
    figure.update_layout(title={"text": ""}, coloraxis={"colorbar": {"title": {"text": ""}}}, xaxis_title="",
                         yaxis_title="", annotations=[{"text": ""}], legend={"orientation": "h"},
                         margin={"t": 0})
    to_json_plotly(figure)

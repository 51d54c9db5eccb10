"""Serving the dashboard: waitress (a production WSGI server, not Flask's development server), debug off,
bound to localhost unless told otherwise."""

from __future__ import annotations

import logging

from lightning_modules.config import ConfigError

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
    warm_up()
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # "task queue depth" notes on 2 cores
    print(f"fitlens dashboard: http://{host}:{port}/  (store: {app.reader.uri}; Ctrl-C stops it)", flush=True)
    waitress_serve(app.server, host=host, port=port, threads=THREADS, ident="fitlens")


def warm_up() -> None:
    """Pay at start what the first page would pay once per process: Plotly reading its validators (0.4 s)."""
    import plotly.graph_objects as go

    go.Figure(go.Scatter())

"""Plotly figures from pandas frames: pure functions, no I/O, one module per page area.

A figure whose input lacks what it needs says so in the figure (`empty`) instead of raising."""

from __future__ import annotations

import html
from collections.abc import Sequence

import plotly.graph_objects as go

UIREVISION = "keep"  # a live refresh keeps the user's zoom and legend choices


def label(text: object) -> str:
    """Store text (run names, tags, layer names, setting values) made inert for Plotly, which reads a few HTML
    tags in labels and hover text (<a href>, <b>, <span style>)."""
    return html.escape(str(text), quote=False)


def lacking(frame: object, columns: Sequence[str], subject: str) -> go.Figure | None:
    """A figure saying "<subject> the column(s) a, b" when `frame` is not a frame holding every one of `columns`
    (subject: "the points lack", "the history lacks"), else None: the figure can be drawn."""
    present = set(getattr(frame, "columns", ()))
    missing = [c for c in columns if c not in present]
    return empty(f"{subject} the column(s) {', '.join(missing)}") if missing else None


def empty(text: str) -> go.Figure:
    """A blank figure carrying `text` where the plot would be: what is missing and why."""
    fig = go.Figure()
    fig.add_annotation(text=str(text), showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.update_layout(height=260, margin=dict(l=20, r=20, t=20, b=20))
    return fig

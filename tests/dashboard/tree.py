"""Reading what a page built: the strings, figures, tables, links and controls of a Dash component tree."""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go
from dash import dash_table

MARKUP = "<b>bold</b> [x](javascript:alert(1))"


def collect(component: Any) -> dict[str, list]:
    """Every string, figure, DataTable, link target and control id in a component tree."""
    found: dict[str, list] = {"text": [], "figures": [], "tables": [], "hrefs": [], "controls": []}

    def walk(node: Any) -> None:
        if isinstance(node, (list, tuple)):
            for child in node:
                walk(child)
        elif isinstance(node, str):
            found["text"].append(node)
        elif isinstance(node, go.Figure):
            found["figures"].append(node)
        elif hasattr(node, "to_plotly_json"):
            if isinstance(node, dash_table.DataTable):
                found["tables"].append(node)
            figure = getattr(node, "figure", None)
            if figure is not None:
                found["figures"].append(figure)
            if getattr(node, "href", None):
                found["hrefs"].append(node.href)
            node_id = getattr(node, "id", None)
            if isinstance(node_id, dict) and node_id.get("type") == "control":
                found["controls"].append(node)
            walk(getattr(node, "children", None))
    walk(component)
    found["all_text"] = " ".join(found["text"])
    return found

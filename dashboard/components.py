"""Small pieces every page uses: notices, links to runs and pages, verdict badges, a control's id."""

from __future__ import annotations

from typing import Any

from dash import dcc, html

MLFLOW_UI = "http://127.0.0.1:5000"  # `make mlflow-ui`; a server URI's own UI when the store is a server


def control(name: str) -> dict[str, str]:
    """The id of a page control: `content(reader, args, values)` receives its value as values[name]."""
    return {"type": "control", "name": name}


def message(text: str, kind: str = "error") -> html.Div:
    """A notice in the page: what could not be shown and why (text only, never markup)."""
    return html.Div(str(text), className=f"notice notice-{kind}", role="alert")


def run_link(run_id: str, label: str | None = None, page: str = "run") -> dcc.Link:
    """A link to one of a run's pages (run, layers, gradcheck, ...)."""
    return dcc.Link(str(label or run_id[:8]), href=f"/{page}/{run_id}", title=str(run_id))


def mlflow_link(uri: str, experiment_id: str, run_id: str) -> html.A:
    """The run in the MLflow UI: the server itself for an http store, else `make mlflow-ui`'s address."""
    base = uri.rstrip("/") if uri.startswith(("http://", "https://")) else MLFLOW_UI
    return html.A("open in the MLflow UI", href=f"{base}/#/experiments/{experiment_id}/runs/{run_id}",
                  target="_blank", rel="noopener noreferrer")


VERDICT_LABELS = {"high_bias": "high bias", "high_variance": "high variance",
                  "high_bias_high_variance": "high bias + variance", "good_fit": "good fit", None: "no verdict"}


def verdict_badge(verdict: str | None) -> html.Span:
    """The verdict as a coloured badge."""
    return html.Span(VERDICT_LABELS.get(verdict, str(verdict)), className=f"badge badge-{verdict or 'none'}")


def section(title: str, *children: Any) -> html.Section:
    return html.Section([html.H2(title), *children], className="section")

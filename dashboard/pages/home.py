"""The start page: the store's sweeps and its lone runs (`fitlens train`, gradient checks), each a link to its
page, or how to make runs when the store has none."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pandas as pd
from dash import html

from analysis.bias_variance import pct
from analysis.report import row_verdict
from analysis.values import finite_or_none
from dashboard.cache import CachedReader
from dashboard.components import message, run_link, section, verdict_badge

PATH = "/"
TITLE = "Sweeps and runs"


def controls(reader: CachedReader, **_: str) -> Any:
    """The page's heading (it has no controls)."""
    return html.Div([html.H1(TITLE)], className="controls")


def content(reader: CachedReader, args: dict[str, str], values: dict[str, Any]) -> Any:
    """A table of the sweeps (newest first) and one of the lone runs, or a notice how to make runs."""
    sweeps, lone = reader.sweeps(), reader.lone_runs()
    if sweeps.empty and lone.empty:
        return html.Div([
            message(f"the store {reader.uri} has no runs yet", "info"),
            html.P("Make some: make demo runs the initialization study for 4 epochs (about 2 minutes on 2 "
                   "cores); the full study (10 epochs) takes about 4 minutes:"),
            html.Pre("make demo\n.venv/bin/fitlens sweep --study init"),
            html.P("then reload this page (runs in progress show up as they start)."),
        ])
    parts = []
    if not sweeps.empty:
        parts.append(section(f"Sweeps ({len(sweeps)})", sweeps_table(sweeps)))
    if not lone.empty:
        parts.append(section(f"Runs outside sweeps ({len(lone)})", lone_runs_table(lone)))
    return html.Div(parts)


def cause_counts(counts: Any) -> str:
    """A finished sweep's trials counted by primary cause, most first ("symmetry 2, high bias 1"); "" without
    (a sweep in progress: its page computes them)."""
    if not isinstance(counts, dict) or not counts:
        return ""
    return ", ".join(f"{cause.replace('_', ' ')} {n}" for cause, n in counts.items())


def sweeps_table(sweeps: pd.DataFrame) -> html.Table:
    """One row per sweep (a `CachedReader.sweeps()` frame): name linking to its page, status, start, best trial, and
    its trials' primary causes counted."""
    header = html.Tr([html.Th(h) for h in ("sweep", "status", "started (UTC)", "best trial", "causes (trials)",
                                           "run id")])
    rows = []
    for sweep in sweeps.to_dict("records"):
        best = sweep.get("best_run_id")
        rows.append(html.Tr([
            html.Td(run_link(sweep["run_id"], sweep.get("run_name") or sweep["run_id"], "sweep")),
            html.Td(str(sweep.get("status"))),
            html.Td(started(sweep.get("start_time"))),
            html.Td(run_link(best, None, "run") if isinstance(best, str) and best else "none yet"),
            html.Td(cause_counts(sweep.get("causes")) or "-", className="causes"),
            html.Td(html.Code(sweep["run_id"])),
        ]))
    return html.Table([html.Thead(header), html.Tbody(rows)], className="table")


def lone_runs_table(runs: pd.DataFrame) -> html.Table:
    """One row per run (`runs_frame` rows): name linking to its page, status, train and dev error, verdict."""
    header = html.Tr([html.Th(h) for h in ("run", "status", "train error", "dev error", "verdict", "run id")])
    rows = []
    for run in runs.to_dict("records"):
        rows.append(html.Tr([
            html.Td(run_link(run["run_id"], run.get("run_name") or run["run_id"], "run")),
            html.Td(str(run.get("status"))),
            html.Td(pct(finite_or_none(run.get("train_error")))),
            html.Td(pct(finite_or_none(run.get("dev_error")))),
            html.Td(verdict_badge(row_verdict(run))),
            html.Td(html.Code(run["run_id"])),
        ]))
    return html.Table([html.Thead(header), html.Tbody(rows)], className="table")


def started(start_time: Any) -> str:
    """An MLflow start time (ms since the epoch) as a UTC date and time."""
    try:
        return datetime.fromtimestamp(float(start_time) / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M")
    except (TypeError, ValueError, OverflowError, OSError):
        return "unknown"


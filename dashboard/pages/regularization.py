"""Regularization: what L2, L1, weight decay, dropout or augmentation did to the runs of a sweep.

Train and dev error, the gap (variance), the weight norm and the fraction of near-zero weights against the
strength of one regularization setting (`analysis.curves.regularization_curve`), and the runs'
weight distributions at their last snapshot overlaid. The runs compared are a sweep's trials, or, for any
other run, the runs of its experiment on the same data set.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd
from dash import dcc, html

from analysis.curves import REGULARIZATION_SETTINGS, regularization_curve
from analysis.values import NOT_SETTINGS, setting_text
from dashboard.cache import CachedReader
from dashboard.components import control, message, run_link, section
from dashboard.figures.training import (
    regularization_errors,
    regularization_gap,
    regularization_sparsity,
    regularization_weight_norm,
    strength_axis,
    strength_value,
    weight_distributions,
)
from tracking.reader import RUN_COLUMNS, is_sweep

PATH = "/regularization/<run_id>"
TITLE = "Regularization"

MAX_DISTRIBUTIONS = 8  # weight distributions overlaid at most; more lines than this cannot be told apart
GRAPH_CONFIG = {"displaylogo": False}


# ----------------------------------------------------------------------------------------------
# The runs compared (shared with the optimization page)


def compared_runs(reader: CachedReader, run_id: str) -> tuple[pd.DataFrame, str]:
    """The runs a page compares for `run_id`, as `runs_frame` rows, and a phrase saying which they are.

    A sweep's parent run: its trials. Any other run: its siblings (its sweep's trials, or the runs of its
    experiment) on the same data set (data.name). Runs with neither a train nor a dev error that are not
    running (a gradient check, a run that failed before its first epoch) have nothing to compare and are left out.
    """
    run = reader.run(run_id)
    name = str(run.info.run_name or run_id[:8])
    if is_sweep(run):
        frame = reader.trials_frame(run_id)
        scope = f"the trials of sweep {name}"
    else:
        frame = reader.siblings(run)
        data_name = run.data.params.get("data.name")
        if data_name is not None and "data.name" in frame.columns:
            frame = frame[frame["data.name"].astype(str) == str(data_name)]
            scope = f"the runs of run {name}'s experiment on data set {data_name}"
        else:
            scope = f"the runs of run {name}'s experiment"
    if not frame.empty:
        errors = frame[["train_error", "dev_error"]].apply(pd.to_numeric, errors="coerce")
        frame = frame[errors.notna().any(axis=1) | (frame["status"] == "RUNNING")]
    return frame.reset_index(drop=True), scope


def _comparable(value: Any) -> str:
    """A param value as a string two equal values share (lists and dicts included; every NaN alike)."""
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    try:
        return json.dumps(value, sort_keys=True, default=str)
    except (TypeError, ValueError):
        return repr(value)


def varying_settings(frame: pd.DataFrame) -> list[str]:
    """The config settings (param columns) whose value differs between the runs of `frame`, in column order;
    run columns (errors, names, ...) and recording settings (diagnostics.*) are not settings."""
    return [str(column) for column in frame.columns
            if _is_setting(str(column)) and frame[column].map(_comparable).nunique() > 1]


def _is_setting(column: str) -> bool:
    if column in RUN_COLUMNS or column in NOT_SETTINGS:
        return False
    return not any(column.startswith(prefix) for prefix in NOT_SETTINGS if prefix.endswith("."))


def header(reader: CachedReader, run_id: str, title: str) -> html.Div:
    """The page's title, the run or sweep it is about, and links to its other pages."""
    run = reader.run(run_id)
    page = "sweep" if is_sweep(run) else "run"
    links = [run_link(run_id, f"the {page}", page)]
    links += [run_link(run_id, label, target) for label, target in
              (("regularization", "regularization"), ("optimization", "optimization")) if label != title.lower()]
    return html.Div([
        html.H1(f"{title}: {run.info.run_name or run_id[:8]}"),
        html.Nav(links, className="nav"),
    ])


# ----------------------------------------------------------------------------------------------
# The page


def controls(reader: CachedReader, run_id: str, **_query: str) -> html.Div:
    """The header and the "setting" dropdown: the regularization settings that vary among the runs."""
    frame, _ = compared_runs(reader, run_id)
    settings = [s for s in REGULARIZATION_SETTINGS if s in varying_settings(frame)]
    children: list[Any] = [header(reader, run_id, TITLE)]
    if settings:
        children.append(html.Label([
            "setting ",
            dcc.Dropdown(id=control("setting"), options=[{"label": s, "value": s} for s in settings],
                         value=settings[0], clearable=False, style={"width": "22rem"}),
        ]))
    return html.Div(children)


def content(reader: CachedReader, args: dict, values: dict) -> Any:
    """The regularization curve of the chosen setting, its summary and the weight distributions."""
    run_id = str(args.get("run_id", ""))
    frame, scope = compared_runs(reader, run_id)
    if frame.empty:
        return message(f"{scope}: no run to compare yet", "info")
    varying = varying_settings(frame)
    settings = [s for s in REGULARIZATION_SETTINGS if s in varying]
    if not settings:
        varied = ", ".join(varying) if varying else "nothing (the runs share one config)"
        return message(f"{scope} varied no regularizer; they varied: {varied}. This page compares runs that "
                       f"differ in one of: {', '.join(REGULARIZATION_SETTINGS)}.", "info")
    setting = values.get("setting")
    setting = setting if setting in settings else settings[0]
    others = [s for s in varying if s != setting]

    points = pd.DataFrame({
        "value": [strength_value(setting, v) for v in frame[setting]],
        "train_error": frame["train_error"], "dev_error": frame["dev_error"],
        "run_id": frame["run_id"], "weight_norm": frame["weight_norm"],
    })
    try:
        curve = regularization_curve(points, setting, other_params_varied=bool(others))
    except ValueError as err:
        return message(f"{scope}: {err}", "info")

    by_id = frame.set_index("run_id")
    curve_points = curve.points.copy()
    curve_points["label"] = [f"{setting} = {setting_text(by_id.at[rid, setting])} ({by_id.at[rid, 'run_name']})"
                             for rid in curve_points["run_id"]]
    curve_points["frac_small"] = curve_points["run_id"].map(by_id["frac_small"])
    reference = pd.to_numeric(frame["reference_error"], errors="coerce").dropna()
    axis = strength_axis(curve_points["value"], setting)

    shown = spread(curve_points["run_id"].tolist(), MAX_DISTRIBUTIONS)
    histograms, problems = last_weight_histograms(reader, shown)
    labels = {rid: curve_points.loc[curve_points["run_id"] == rid, "label"].iloc[0] for rid in shown}

    summary = [html.P(curve.summary)]
    if others:
        summary.append(message(f"Confounded: besides {setting} the runs also differ in {', '.join(others)}, so "
                               "these curves mix their effects; a sweep over one setting reads cleanly.", "warning"))
    if axis.note:
        summary.append(html.P(axis.note, className="note"))
    summary.append(html.P(["best: ", run_link(curve.best_run_id, labels.get(curve.best_run_id) or
                                              curve.best_run_id[:8])]))
    distributions = [graph(weight_distributions(histograms, labels))]
    if len(shown) < len(curve_points):
        distributions.insert(0, html.P(f"{len(shown)} of {len(curve_points)} runs shown, spread from the weakest "
                                       f"to the strongest {setting}."))
    distributions += [message(p, "warning") for p in problems]
    return html.Div([
        section(f"{setting}: {len(curve_points)} runs, {scope}", *summary),
        section("Train and dev error", graph(regularization_errors(
            curve_points, setting, float(reference.iloc[0]) if len(reference) else None))),
        section("Variance (dev - train)", graph(regularization_gap(curve_points, setting))),
        section("Weight norm", html.P("Regularization shrinks the weights: L2 and weight decay pull every weight "
                                      "toward 0."), graph(regularization_weight_norm(curve_points, setting))),
        section("Near-zero weights", html.P("L1 sets weights to exactly zero (a sparse network); L2 only makes "
                                            "them small. The fraction of weights with |w| < 1e-3 at the last "
                                            "snapshot, mean over layers."),
                graph(regularization_sparsity(curve_points, setting))),
        section("Weight distributions at the last snapshot", *distributions),
    ])


def graph(figure: Any) -> dcc.Graph:
    return dcc.Graph(figure=figure, config=GRAPH_CONFIG)


def spread(items: list[str], most: int) -> list[str]:
    """At most `most` of `items`, evenly spaced, the first and last kept."""
    if len(items) <= most:
        return list(items)
    return [items[i] for i in np.unique(np.linspace(0, len(items) - 1, most).round().astype(int))]


def last_weight_histograms(reader: CachedReader, run_ids: list[str]) -> tuple[pd.DataFrame, list[str]]:
    """The weight histograms (run_id, layer, edges, counts) of each run's last snapshot, and the problems met."""
    frames, problems = [], []
    for run_id in run_ids:
        try:
            steps = reader.histogram_steps(run_id)
        except Exception:  # an unreachable artifact store: say so, go on with the other runs
            problems.append(f"run {run_id}: its histogram parts could not be listed")
            continue
        if not steps:
            continue
        rows, missing = reader.histograms(run_id, [steps[-1]])
        problems += missing
        rows = rows[rows["kind"] == "weight"]
        if not rows.empty:
            frames.append(rows.assign(run_id=run_id))
    columns = ["step", "kind", "layer", "edges", "counts", "run_id"]
    return (pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)), problems

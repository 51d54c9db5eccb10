"""Optimization: how the optimizer, the learning rate, its schedule and the batch size shaped training.

The runs' loss curves overlaid (smoothed with the course's bias-corrected EMA), each run's learning-rate
schedule, and the update-to-weight ratio ||dW|| / ||W|| per step against the ~1e-3 rule of thumb. The runs
compared are a sweep's trials, or, for any other run, the runs of its experiment on the same data set; the
legend groups them by one setting (the "color_by" control).
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
from dash import dcc, html

from analysis.thresholds import DEFAULT
from analysis.values import setting_text
from dashboard.cache import CachedReader
from dashboard.components import control, message, section
from dashboard.figures.training import loss_curves, lr_schedules, update_ratios
from dashboard.pages.regularization import compared_runs, graph, header, spread, varying_settings
from tracking.reader import DataError

PATH = "/optimization/<run_id>"
TITLE = "Optimization"

# The settings the optimization lessons are about, in the order a label names them (learning rate first).
OPTIM_SETTINGS = ("optim.name", "optim.lr", "data.batch_size", "optim.momentum", "optim.nesterov", "optim.beta1",
                  "optim.beta2", "optim.eps", "optim.schedule", "optim.gamma", "optim.step_size", "optim.decay_rate",
                  "optim.min_lr", "optim.weight_decay", "optim.kwargs")
EACH_RUN = "run"  # color_by: every run its own colour
LABEL_SETTINGS = 3  # a run's label names at most this many of the settings that differ
MAX_RUNS_SHOWN = 30  # runs overlaid at most: more curves cannot be told apart, and each run costs the store a read
HISTORY_KEYS = ("train/loss", "dev/loss", "lr", "epoch")
DEFAULT_SMOOTHING = 0.6


def ordered_settings(varying: list[str]) -> list[str]:
    """The settings that differ, the optimization ones first (in OPTIM_SETTINGS order), then the others."""
    return [s for s in OPTIM_SETTINGS if s in varying] + [s for s in varying if s not in OPTIM_SETTINGS]


def smoothing_beta(value: Any, default: float = DEFAULT_SMOOTHING) -> float:
    """The smoothing control's value as an EMA beta in [0, 0.99]; `default` when it is missing or not a number."""
    try:
        beta = float(value)
    except (TypeError, ValueError):
        return default
    return default if not math.isfinite(beta) else min(max(beta, 0.0), 0.99)


def run_labels(frame: pd.DataFrame, settings: list[str], color_by: str) -> pd.DataFrame:
    """run_id, run_name, label (the run's values of the first LABEL_SETTINGS `settings`, and its name) and group (its
    value of `color_by`, or its label for EACH_RUN), sorted by the color_by value, then by label."""
    rows = []
    for _, run in frame.iterrows():
        named = [f"{s} = {setting_text(run[s])}" for s in settings[:LABEL_SETTINGS]]
        if len(settings) > LABEL_SETTINGS:
            named.append("...")
        label = f"{', '.join(named)} ({run['run_name']})" if named else str(run["run_name"])
        value = run[color_by] if color_by in frame.columns else None
        group = label if color_by == EACH_RUN or color_by not in frame.columns else \
            f"{color_by} = {setting_text(value)}"
        rows.append({"run_id": run["run_id"], "run_name": str(run["run_name"]), "label": label, "group": group,
                     "order": _sort_key(value)})
    rows.sort(key=lambda row: (row["order"], row["label"]))  # stable: equal runs keep the frame's order
    columns = ["run_id", "run_name", "label", "group"]
    return pd.DataFrame([{k: row[k] for k in columns} for row in rows], columns=columns)


def _sort_key(value: Any) -> tuple[int, float, str]:
    # numbers by size, then booleans, then anything else by its text: the legend lists the groups in value order
    if isinstance(value, bool):
        return (1, float(value), "")
    if isinstance(value, (int, float)) and math.isfinite(value):
        return (0, float(value), "")
    return (2, 0.0, str(value))


def controls(reader: CachedReader, run_id: str, **_query: str) -> html.Div:
    """The header, "color_by" (the setting the legend groups the runs by) and the "smoothing" slider."""
    frame, _ = compared_runs(reader, run_id)
    settings = ordered_settings(varying_settings(frame))
    options = [{"label": s, "value": s} for s in settings] + [{"label": "each run", "value": EACH_RUN}]
    return html.Div([
        header(reader, run_id, TITLE),
        html.Div([
            html.Label(["color by ", dcc.Dropdown(id=control("color_by"), options=options,
                                                  value=settings[0] if settings else EACH_RUN, clearable=False,
                                                  style={"width": "18rem"})]),
            html.Label(["smoothing (EMA beta) ", dcc.Slider(
                id=control("smoothing"), min=0, max=0.95, step=0.05, value=DEFAULT_SMOOTHING,
                marks={0: "raw", 0.5: "0.5", 0.6: "0.6", 0.9: "0.9", 0.95: "0.95"})],
                style={"width": "24rem"}),
        ], style={"display": "flex", "gap": "2rem", "alignItems": "end"}),
    ])


def content(reader: CachedReader, args: dict, values: dict) -> Any:
    """The loss curves, learning-rate schedules and update-to-weight ratios of the runs compared."""
    run_id = str(args.get("run_id", ""))
    frame, scope = compared_runs(reader, run_id)
    if frame.empty:
        return message(f"{scope}: no run to compare yet", "info")
    settings = ordered_settings(varying_settings(frame))
    color_by = values.get("color_by")
    color_by = color_by if color_by in (*settings, EACH_RUN) else (settings[0] if settings else EACH_RUN)
    beta = smoothing_beta(values.get("smoothing"))
    labels = run_labels(frame, settings, color_by)
    shown = labels[labels["run_id"].isin(spread(labels["run_id"].tolist(), MAX_RUNS_SHOWN))]

    losses, rates, ratios, without_update = [], [], [], []
    for run in shown.itertuples(index=False):
        named = {"run_id": run.run_id, "label": run.label, "group": run.group}
        history = reader.history(run.run_id, HISTORY_KEYS)
        losses.append(epoch_losses(history).assign(**named))
        rates.append(history[history["key"] == "lr"][["step", "value"]].assign(**named))
        update = update_ratio_rows(reader, run.run_id)
        if update.empty:
            without_update.append(run.run_name)
        ratios.append(update.assign(**named))

    differ = f"they differ in {', '.join(settings)}" if settings else "they share one config"
    grouped = "run" if color_by == EACH_RUN else color_by
    summary = [html.P(f"{differ}; the legend groups them by {grouped}.")]
    if len(shown) < len(labels):
        order = "in the legend's order" if color_by == EACH_RUN else \
            f"from the smallest to the largest {grouped} (choose another under color by)"
        summary.append(html.P(f"{len(shown)} of {len(labels)} runs shown, spread evenly {order}.", className="note"))
    ratio_notes: list[Any] = [html.P(
        "||dW|| / ||W|| of one optimizer step, median over the layers: about 1e-3 is healthy; far below, the "
        "learning rate is too small (the weights barely move); far above, too large. The dotted lines are the "
        f"health flags' thresholds ({DEFAULT.update_ratio_low:g} and {DEFAULT.update_ratio_high:g}).")]
    if without_update:
        ratio_notes.append(message(
            f"{len(without_update)} of {len(shown)} runs shown recorded no update-to-weight ratio (the economy "
            "diagnostics preset skips the update kind); train with diagnostics.preset=default to see it: "
            + ", ".join(without_update[:10]) + (" ..." if len(without_update) > 10 else ""), "info"))
    return html.Div([
        section(f"{len(labels)} runs, {scope}", *summary),
        section("Loss curves", html.P("Train loss (solid) and dev loss (dashed) per epoch, smoothed with the "
                                      f"bias-corrected exponentially weighted average, beta = {beta:g}."),
                graph(loss_curves(_concat(losses, ["key", "step", "epoch", "value"]), beta))),
        section("Learning-rate schedule", graph(lr_schedules(_concat(rates, ["step", "value"])))),
        section("Update-to-weight ratio", *ratio_notes,
                graph(update_ratios(_concat(ratios, ["step", "layer", "value"])))),
    ])


def _concat(frames: list[pd.DataFrame], columns: list[str]) -> pd.DataFrame:
    frames = [f for f in frames if not f.empty]
    if frames:
        return pd.concat(frames, ignore_index=True)
    return pd.DataFrame(columns=["run_id", "label", "group", *columns])


def epoch_losses(history: pd.DataFrame) -> pd.DataFrame:
    """The train/loss and dev/loss rows of a run's history (key, step, value) with their epoch, counted from 1:
    the `epoch` metric logged at the same step, plus one; where it is missing, the point's rank."""
    losses = history[history["key"].isin(("train/loss", "dev/loss"))].copy()
    epochs = history[history["key"] == "epoch"].drop_duplicates("step", keep="last").set_index("step")["value"]
    losses["epoch"] = losses["step"].map(epochs) + 1
    rank = losses.groupby("key").cumcount() + 1
    losses["epoch"] = losses["epoch"].fillna(rank.astype(float))
    return losses[["key", "step", "epoch", "value"]]


def update_ratio_rows(reader: CachedReader, run_id: str) -> pd.DataFrame:
    """The run's update-to-weight ratios (step, layer, value); empty when it recorded none."""
    try:
        stats = reader.diagnostics(run_id, stats=("update_ratio",))
    except DataError:
        return pd.DataFrame(columns=["step", "layer", "value"])
    stats = stats[(stats["kind"] == "update") & (stats["stat"] == "update_ratio")]
    return stats[["step", "layer", "value"]].reset_index(drop=True)

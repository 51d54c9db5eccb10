"""Figures of the training pages: regularization (errors, gap, weight norm, near-zero weights and weight
distributions against one regularization setting), optimization (loss curves, learning-rate schedules,
update-to-weight ratios) and gradient checks (relative difference per parameter tensor).

Pure functions over frames the pages build from `dashboard.cache.CachedReader`; each checks its input and returns
`empty("what is missing")` instead of raising. Errors and gaps are fractions (0.05 = 5 points of error).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative

from analysis.curves import AUGMENT_SETTING, KEEP_PROB_SETTINGS, LAMBDA_SETTINGS
from analysis.smoothing import ema
from analysis.thresholds import DEFAULT, Thresholds
from analysis.values import setting_text
from dashboard.figures import UIREVISION, empty, label, lacking
from dashboard.figures.histograms import pooled_histogram
from tracking.layout import SMALL_WEIGHT

# The regularization settings a run can vary, in the order the page offers them. Strength grows with lambda
# (L2, L1, decoupled weight decay) and with augmentation, and falls with keep_prob (1 = no dropout).

COLORS = qualitative.Plotly
TRAIN_COLOR, DEV_COLOR, GAP_COLOR = "#1f77b4", "#ff7f0e", "#8250df"
VERDICT_COLORS = {"great": "#1a7f37", "look closer": "#bf8700", "worry": "#cf222e"}
DISTRIBUTION_BINS = 80  # the common grid the weight histograms of several runs (and layers) are pooled onto
LOSS_LOG_SPAN = 100.0  # losses spanning more than this factor get a log axis
UPDATE_RATIO_RULE = 1e-3  # Karpathy's rule of thumb for ||dW|| / ||W|| per step
# The course's reading of a gradient check's relative difference: ~1e-7 great, ~1e-5 look closer, >= 1e-3 worry.
GRADCHECK_LINES = ((1e-7, "~1e-7 great"), (1e-5, "~1e-5 look closer"), (1e-3, "1e-3 worry"))
LOG10_OF_ZERO = -17.0  # where a relative difference of exactly 0 is drawn (below float64's resolution)


# ----------------------------------------------------------------------------------------------
# Regularization: the strength axis


def strength_value(setting: str, value: Any) -> float:
    """A logged value of a regularization setting as one number on its axis.

    keep_prob given per layer (a list) is the mean over the layers; data.augment is 1 when on (true or a list
    of ops), 0 when off; anything that is not a number is NaN (the curve drops that run).
    """
    if setting == AUGMENT_SETTING:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return math.nan
        if isinstance(value, str):
            return 0.0 if value.strip().lower() in ("", "false", "none", "[]") else 1.0
        return 1.0 if value else 0.0
    if isinstance(value, (list, tuple)):
        numbers = [strength_value(setting, v) for v in value]
        return float(np.mean(numbers)) if numbers else math.nan
    if isinstance(value, bool):
        return float(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


@dataclass(frozen=True)
class StrengthAxis:
    """Where each value of a setting is drawn on x, the x axis's layout, and a note on how the axis reads."""

    x: np.ndarray
    axis: dict = field(default_factory=dict)
    note: str | None = None


def strength_axis(values: Iterable[float], setting: str) -> StrengthAxis:
    """The x positions and axis of `values` of `setting`, so that strength grows to the right.

    lambda (reg.l2, reg.l1, optim.weight_decay): a log axis; 0 (no regularization) cannot sit on it, so it is
    drawn a decade below the smallest positive lambda, labelled "0", and the note says so. keep_prob: a linear
    axis reversed (1 = no dropout on the left). data.augment: "off" and "on". Anything else: linear.
    """
    x = np.asarray(list(values), dtype=np.float64)
    finite = x[np.isfinite(x)]
    if setting in LAMBDA_SETTINGS:
        positive = finite[finite > 0]
        if positive.size == 0:
            return StrengthAxis(x, {"title": {"text": f"lambda ({setting})"}, "type": "linear"})
        zero_at = float(positive.min()) / 10
        drawn = np.where(x == 0, zero_at, x)
        distinct = np.unique(drawn[np.isfinite(drawn)])
        if distinct.size <= 8:
            tickvals = distinct.tolist()
        else:  # many values: decades, and the 0 position
            decades = range(math.floor(math.log10(positive.min())), math.ceil(math.log10(positive.max())) + 1)
            tickvals = sorted({zero_at, *(10.0**k for k in decades)})
        has_zero = bool((finite == 0).any())
        ticktext = ["0" if has_zero and v == zero_at else setting_text(v) for v in tickvals]
        axis = {"title": {"text": f"lambda ({setting}), log scale"}, "type": "log", "tickmode": "array",
                "tickvals": tickvals, "ticktext": ticktext}
        note = (f"{setting} = 0 (no regularization) is drawn at {setting_text(zero_at)}, a decade below the smallest "
                f"{setting} tried, so that the log axis can show it.") if has_zero else None
        return StrengthAxis(drawn, axis, note)
    if setting in KEEP_PROB_SETTINGS:
        axis = {"title": {"text": f"keep_prob ({setting}); 1 = no dropout, stronger to the right"},
                "type": "linear", "autorange": "reversed"}
        return StrengthAxis(x, axis, f"The {setting} axis runs from 1 down: a smaller keep_prob drops more "
                                     "units, a stronger regularizer, so strength grows to the right.")
    if setting == AUGMENT_SETTING:
        axis = {"title": {"text": "data augmentation"}, "type": "linear", "tickmode": "array",
                "tickvals": [0, 1], "ticktext": ["off", "on"], "range": [-0.5, 1.5]}
        return StrengthAxis(x, axis)
    return StrengthAxis(x, {"title": {"text": setting}, "type": "linear"})


def _numeric(series: pd.Series) -> np.ndarray:
    values = pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64)
    return np.where(np.isfinite(values), values, np.nan)


def _hover(points: pd.DataFrame) -> list[str]:
    return [label(v) for v in (points["label"] if "label" in points.columns else points["run_id"])]


def _strength_figure(points: pd.DataFrame, setting: str, y_title: str, height: int = 340) -> tuple[go.Figure,
                                                                                                    StrengthAxis]:
    axis = strength_axis(points["value"], setting)
    fig = go.Figure()
    fig.update_layout(xaxis=axis.axis, yaxis={"title": {"text": y_title}}, height=height, uirevision=UIREVISION,
                      margin=dict(l=60, r=20, t=30, b=50), legend=dict(orientation="h", y=1.12))
    return fig, axis


def _mode(x: np.ndarray) -> str:
    """Lines through the points when each value was tried once; markers alone when some value was tried by
    several runs (a line would zigzag up and down at that value)."""
    finite = x[np.isfinite(x)]
    return "lines+markers" if np.unique(finite).size == finite.size else "markers"


def regularization_errors(points: pd.DataFrame, setting: str, reference_error: float | None = None) -> go.Figure:
    """Train and dev error against `setting`, weakest to strongest (a `RegularizationCurve.points` frame:
    value, train_error, dev_error, and optionally label for the hover); the reference error e* as a line."""
    problem = lacking(points, ("value", "train_error", "dev_error"), "the points lack")
    if problem is not None:
        return problem
    if points.empty:
        return empty(f"no run with a finite {setting}, train error and dev error")
    fig, axis = _strength_figure(points, setting, "error")
    for column, name, color in (("train_error", "train error", TRAIN_COLOR), ("dev_error", "dev error", DEV_COLOR)):
        fig.add_trace(go.Scatter(x=axis.x, y=_numeric(points[column]), name=name, mode=_mode(axis.x),
                                 line=dict(color=color), text=_hover(points),
                                 hovertemplate="%{text}<br>" + name + " %{y:.1%}<extra></extra>"))
    if reference_error is not None and math.isfinite(reference_error):
        fig.add_hline(y=reference_error, line=dict(dash="dot", color="#6e7781"),
                      annotation_text=f"reference error e* {reference_error:.1%}")
    fig.update_yaxes(tickformat=".0%", rangemode="tozero")
    return fig


def regularization_gap(points: pd.DataFrame, setting: str, thresholds: Thresholds = DEFAULT) -> go.Figure:
    """The variance (dev error - train error) against `setting`, with the high-variance threshold."""
    problem = lacking(points, ("value", "train_error", "dev_error"), "the points lack")
    if problem is not None:
        return problem
    if points.empty:
        return empty(f"no run with a finite {setting}, train error and dev error")
    gap = _numeric(points["dev_error"]) - _numeric(points["train_error"])
    fig, axis = _strength_figure(points, setting, "variance (dev - train)")
    fig.add_trace(go.Scatter(x=axis.x, y=gap, name="variance (dev - train)", mode=_mode(axis.x),
                             line=dict(color=GAP_COLOR), text=_hover(points),
                             hovertemplate="%{text}<br>gap %{y:.1%}<extra></extra>"))
    fig.add_hline(y=thresholds.high_variance, line=dict(dash="dot", color="#6e7781"),
                  annotation_text=f"high variance above {thresholds.high_variance:.0%}")
    fig.update_yaxes(tickformat=".0%", rangemode="tozero")
    return fig


def regularization_weight_norm(points: pd.DataFrame, setting: str) -> go.Figure:
    """The weight norm sqrt(sum_l ||W[l]||_F^2) at the last snapshot against `setting`."""
    problem = lacking(points, ("value", "weight_norm"), "the points lack")
    if problem is not None:
        return problem
    norms = _numeric(points["weight_norm"])
    if not np.isfinite(norms).any():
        return empty("no run recorded weight norms (diag/weight/<layer>/norm): diagnostics were off")
    fig, axis = _strength_figure(points, setting, "weight norm sqrt(sum ||W||^2)")
    fig.add_trace(go.Scatter(x=axis.x, y=norms, name="weight norm", mode=_mode(axis.x), text=_hover(points),
                             hovertemplate="%{text}<br>weight norm %{y:.3g}<extra></extra>"))
    fig.update_yaxes(rangemode="tozero")
    return fig


def regularization_sparsity(points: pd.DataFrame, setting: str) -> go.Figure:
    """The fraction of near-zero weights (|w| < 1e-3, mean over layers) at the last snapshot against `setting`:
    L1 drives weights to exactly zero, L2 only shrinks them."""
    problem = lacking(points, ("value", "frac_small"), "the points lack")
    if problem is not None:
        return problem
    fractions = _numeric(points["frac_small"])
    if not np.isfinite(fractions).any():
        return empty("no run recorded the fraction of near-zero weights (diag/weight/<layer>/frac_small)")
    fig, axis = _strength_figure(points, setting, f"weights with |w| < {SMALL_WEIGHT:g}")
    fig.add_trace(go.Scatter(x=axis.x, y=fractions, name="near-zero weights", mode=_mode(axis.x),
                             text=_hover(points), hovertemplate="%{text}<br>%{y:.2%} near zero<extra></extra>"))
    fig.update_yaxes(tickformat=".1%", rangemode="tozero")
    return fig


def weight_distributions(rows: pd.DataFrame, labels: Mapping[str, str], bins: int = DISTRIBUTION_BINS) -> go.Figure:
    """The weight distribution of each run, overlaid: one trace per run in the order of `labels` (run_id ->
    name), its layers' histograms pooled onto one grid, as the fraction of the run's weights per bin.

    `rows` has columns run_id, edges, counts (and kind: only "weight" rows are drawn), one row per layer.
    """
    problem = lacking(rows, ("run_id", "edges", "counts"), "the histogram rows lack")
    if problem is not None:
        return problem
    if "kind" in rows.columns:
        rows = rows[rows["kind"] == "weight"]
    rows = rows[rows["run_id"].isin(list(labels))]
    if rows.empty:
        return empty("no weight histograms: the runs recorded none (diagnostics.kinds without weight, or off)")
    lows = [float(np.asarray(e, dtype=np.float64)[0]) for e in rows["edges"] if len(e)]
    highs = [float(np.asarray(e, dtype=np.float64)[-1]) for e in rows["edges"] if len(e)]
    grid = np.linspace(min(lows), max(highs), bins + 1)
    centres = (grid[:-1] + grid[1:]) / 2
    fig = go.Figure()
    for i, (run_id, name) in enumerate(labels.items()):
        counts = pooled_histogram(rows[rows["run_id"] == run_id], grid)
        if counts.sum() <= 0:
            continue
        fig.add_trace(go.Scatter(x=centres, y=counts / counts.sum(), name=label(name), mode="lines",
                                 line=dict(color=COLORS[i % len(COLORS)], shape="hvh"),
                                 text=[label(name)] * len(centres),
                                 hovertemplate="%{text}<br>w %{x:.3g}: %{y:.2%}<extra></extra>"))
    fig.update_layout(xaxis={"title": {"text": "weight value w (all layers pooled)"}},
                      yaxis={"title": {"text": "fraction of the weights"}, "tickformat": ".1%"},
                      height=360, uirevision=UIREVISION, margin=dict(l=60, r=20, t=30, b=50))
    return fig


# ----------------------------------------------------------------------------------------------
# Optimization


def group_colors(groups: Iterable[str]) -> dict[str, str]:
    """One colour per group, in the order the groups first appear."""
    order = list(dict.fromkeys(str(g) for g in groups))
    return {group: COLORS[i % len(COLORS)] for i, group in enumerate(order)}


def _run_traces(frame: pd.DataFrame, x_column: str, colors: Mapping[str, str], shown: set[str], *,
                dash: str = "solid", suffix: str = "", y: str = "value", fmt: str = ".4g") -> list[go.Scatter]:
    """One line per run of `frame` (columns run_id, label, group, x_column, y), coloured by group; the legend
    shows each group once."""
    traces = []
    for run_id, curve in frame.groupby("run_id", sort=False):
        curve = curve.sort_values(x_column)
        group, name = str(curve["group"].iloc[0]), label(curve["label"].iloc[0])
        traces.append(go.Scatter(
            x=curve[x_column].to_numpy(), y=curve[y].to_numpy(dtype=np.float64), mode="lines",
            name=label(group), legendgroup=group, showlegend=group not in shown,
            line=dict(color=colors[group], dash=dash), meta=str(run_id), text=[name + suffix] * len(curve),
            hovertemplate=f"%{{text}}<br>%{{x}}: %{{y:{fmt}}}<extra></extra>"))
        shown.add(group)
    return traces


RUN_TRACE_COLUMNS = ("run_id", "label", "group")


def loss_curves(curves: pd.DataFrame, beta: float = 0.0) -> go.Figure:
    """Train loss (solid) and dev loss (dashed) per epoch of each run, smoothed with the bias-corrected EMA
    (beta = 0: raw), coloured by group.

    `curves` has columns run_id, label (what the run is), group (the legend entry), key (train/loss or
    dev/loss), epoch, value; runs are drawn in the order they appear. The y axis is log when the losses span
    more than LOSS_LOG_SPAN (a diverging run next to converging ones), else linear.
    """
    problem = lacking(curves, (*RUN_TRACE_COLUMNS, "key", "epoch", "value"), "the loss curves lack")
    if problem is not None:
        return problem
    if not 0 <= beta < 1:
        return empty(f"smoothing beta = {beta!r}: expected a number in [0, 1)")
    rows = curves[curves["key"].isin(("train/loss", "dev/loss"))]
    if rows.empty:
        return empty("no run has a train or dev loss yet: the curves appear after the first epoch")
    colors = group_colors(rows["group"])
    order = list(dict.fromkeys(rows["run_id"]))
    fig, shown = go.Figure(), set()
    for key, dash in (("train/loss", "solid"), ("dev/loss", "dash")):
        parts = []
        for run_id in order:
            curve = rows[(rows["run_id"] == run_id) & (rows["key"] == key)].sort_values("epoch", kind="mergesort")
            if not curve.empty:
                values = _numeric(curve["value"])
                parts.append(curve.assign(value=ema(values, beta) if beta > 0 else values))
        if parts:
            fig.add_traces(_run_traces(pd.concat(parts), "epoch", colors, shown, dash=dash, suffix=f" ({key})"))
    values = _numeric(rows["value"])
    positive = values[np.isfinite(values) & (values > 0)]
    # one diverging run (a loss of 1e5) would flatten every other curve on a linear axis
    log = positive.size == np.isfinite(values).sum() and positive.size > 0 and \
        positive.max() / positive.min() > LOSS_LOG_SPAN
    fig.update_layout(xaxis={"title": {"text": "epoch"}},
                      yaxis={"title": {"text": "loss (cross-entropy)" + (", log scale" if log else "")},
                             "type": "log" if log else "linear"},
                      legend={"title": {"text": "solid: train, dashed: dev"}}, height=420, uirevision=UIREVISION,
                      margin=dict(l=60, r=20, t=30, b=50))
    return fig


def lr_schedules(curves: pd.DataFrame) -> go.Figure:
    """The learning rate over steps of each run (metric `lr`), coloured by group; a log y axis when every rate
    is positive (schedules decay by factors)."""
    problem = lacking(curves, (*RUN_TRACE_COLUMNS, "step", "value"), "the learning-rate curves lack")
    if problem is not None:
        return problem
    if curves.empty:
        return empty("no run has logged a learning rate (metric lr) yet")
    fig = go.Figure()
    fig.add_traces(_run_traces(curves, "step", group_colors(curves["group"]), set(), fmt=".3g"))
    values = _numeric(curves["value"])
    log = bool(np.all(values[np.isfinite(values)] > 0))
    fig.update_layout(xaxis={"title": {"text": "step"}},
                      yaxis={"title": {"text": "learning rate"}, "type": "log" if log else "linear"},
                      height=320, uirevision=UIREVISION, margin=dict(l=60, r=20, t=30, b=50))
    return fig


def median_update_ratio(ratios: pd.DataFrame) -> pd.DataFrame:
    """The median over layers of the update-to-weight ratio at each step of each run: columns run_id, label,
    group, step, value (non-finite values ignored)."""
    frame = ratios.assign(value=_numeric(ratios["value"])).dropna(subset=["value"])
    return (frame.groupby(["run_id", "step"], sort=False)
            .agg(label=("label", "first"), group=("group", "first"), value=("value", "median"))
            .reset_index()[["run_id", "label", "group", "step", "value"]])


def update_ratios(ratios: pd.DataFrame, thresholds: Thresholds = DEFAULT) -> go.Figure:
    """The update-to-weight ratio ||dW|| / ||W|| per step, median over layers, of each run on a log y axis,
    with the ~1e-3 rule of thumb and the thresholds outside which the health flags call the learning rate
    too small or too large.

    `ratios` has columns run_id, label, group, step, layer, value (diagnostics `update_ratio` of kind update).
    """
    problem = lacking(ratios, (*RUN_TRACE_COLUMNS, "step", "layer", "value"), "the update ratios lack")
    if problem is not None:
        return problem
    medians = median_update_ratio(ratios)
    medians = medians[medians["value"] > 0]  # a zero update has no place on a log axis
    if medians.empty:
        return empty("no update-to-weight ratio recorded (diagnostics kind update: diagnostics.preset=default)")
    fig = go.Figure()
    fig.add_traces(_run_traces(medians, "step", group_colors(medians["group"]), set(), fmt=".2e"))
    # The lines are named in the legend: add_hline's annotations land at the wrong height on a log axis.
    for value, name, dash, color in (
            (thresholds.update_ratio_high, f"{thresholds.update_ratio_high:g}: learning rate too large?", "dot",
             "#cf222e"),
            (UPDATE_RATIO_RULE, "~1e-3: the rule of thumb", "solid", "#1a7f37"),
            (thresholds.update_ratio_low, f"{thresholds.update_ratio_low:g}: learning rate too small?", "dot",
             "#cf222e")):
        fig.add_hline(y=value, line=dict(dash=dash, color=color), name=name, showlegend=True)
    fig.update_layout(xaxis={"title": {"text": "step"}},
                      yaxis={"title": {"text": "||dW|| / ||W|| (median over layers)"}, "type": "log"},
                      height=360, uirevision=UIREVISION, margin=dict(l=70, r=20, t=30, b=50))
    return fig


# ----------------------------------------------------------------------------------------------
# Gradient check


def log10_relative_difference(values: Iterable[Any]) -> np.ndarray:
    """log10 of each relative difference; 0 is drawn at LOG10_OF_ZERO, a missing or non-finite one is NaN."""
    out = []
    for value in values:
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = math.nan
        if not math.isfinite(number) or number < 0:
            out.append(math.nan)
        else:
            out.append(LOG10_OF_ZERO if number == 0 else math.log10(number))
    return np.asarray(out, dtype=np.float64)


def gradcheck_bars(per_tensor: pd.DataFrame) -> go.Figure:
    """log10 of the relative difference of each parameter tensor, coloured by verdict, with the course's
    reference lines at 1e-7 (great), 1e-5 (look closer) and 1e-3 (worry).

    `per_tensor` has columns name, relative_difference (None for a non-finite one) and verdict, as the rows of
    a check's per_tensor in gradcheck/report.json.
    """
    problem = lacking(per_tensor, ("name", "relative_difference", "verdict"), "the per-tensor rows lack")
    if problem is not None:
        return problem
    if per_tensor.empty:
        return empty("the check has no parameter tensors")
    heights = log10_relative_difference(per_tensor["relative_difference"])
    verdicts = [str(v) for v in per_tensor["verdict"]]
    text = ["not finite" if math.isnan(h) else ("0" if h == LOG10_OF_ZERO else f"{10**h:.1e}") for h in heights]
    fig = go.Figure(go.Bar(
        x=[str(n) for n in per_tensor["name"]], y=heights, text=text, textposition="outside",
        marker_color=[VERDICT_COLORS.get(v, "#6e7781") for v in verdicts], customdata=verdicts,
        hovertemplate="%{x}<br>relative difference %{text}<br>%{customdata}<extra></extra>", name="tensors",
        showlegend=False))
    for (value, verdict), color in zip(GRADCHECK_LINES, VERDICT_COLORS.values(), strict=True):
        fig.add_hline(y=math.log10(value), line=dict(dash="dot", color=color), name=verdict, showlegend=True)
    finite = heights[np.isfinite(heights)]
    bottom = min(float(finite.min()) if finite.size else -8.0, -8.0) - 1
    fig.update_layout(xaxis={"title": {"text": "parameter tensor"}},
                      yaxis={"title": {"text": "log10 relative difference"}, "range": [bottom, 0]},
                      height=340, showlegend=True, uirevision=UIREVISION, margin=dict(l=60, r=20, t=30, b=80))
    return fig

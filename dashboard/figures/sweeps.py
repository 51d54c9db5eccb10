"""Figures of a sweep's trials: parallel coordinates, the metric against each hyperparameter, importance bars,
and the trials on the bias/variance plane.

Inputs are the rows of `tracking.reader.runs_frame` (one per trial: run_id, run_name, train_error, dev_error,
reference_error and one column per flattened config key) and, per searched setting, its scale as
`tracking.sweep_config.Distribution.scale` names it: "log" (loguniform), "log_one_minus" (loguniform in
1 - beta), "linear" (uniform, randint), "categorical" / "grid" (choice, grid). Numbers are drawn as numbers
(a grid over reg.l2 too), on a log axis for the log scales; anything else (strings, bools, lists, section
bundles) as categories.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import sample_colorscale
from plotly.subplots import make_subplots

from analysis.thresholds import DEFAULT, Thresholds
from dashboard.figures import UIREVISION, empty, label

LOG_SCALES = ("log", "log_one_minus")
COLUMNS_PER_ROW = 3  # small multiples of the metric against each hyperparameter
BOX_POINTS = 50  # trials up to which a categorical setting's box shows every trial as a point, not only outliers
MISSING = "(none)"  # the category of a trial that has no value for a setting
QUADRANTS = (  # (label, x in the plot's width, y in its height, anchors): corners of the bias/variance plane
    ("good fit", 0.01, 0.01, "left", "bottom"),
    ("high bias", 0.99, 0.01, "right", "bottom"),
    ("high variance", 0.01, 0.99, "left", "top"),
    ("high bias + high variance", 0.99, 0.99, "right", "top"),
)


# ---------------------------------------------------------------------------------------------------------
# reading a hyperparameter column

def numbers(column: pd.Series) -> np.ndarray | None:
    """The column as floats (missing is NaN) when every present value is a number (not a bool), else None."""
    present = [v for v in column if not _missing(v)]
    if not present or any(isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.number))
                          for v in present):
        return None
    return np.array([math.nan if _missing(v) else float(v) for v in column], dtype=np.float64)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA


def category_labels(column: pd.Series) -> list[str]:
    """Each value as an inert label: lists and section bundles as JSON, a missing value as MISSING."""
    def text(value: Any) -> str:
        if _missing(value):
            return MISSING
        if isinstance(value, (list, dict, tuple)):
            return json.dumps(value, sort_keys=True, default=str)
        return str(value)
    return [label(text(v)) for v in column]


def axis_label(setting: str, scale: str | None) -> str:
    """The name of a setting on its search scale: log10(optim.lr), log10(1 - optim.beta1), or the setting."""
    return {"log": f"log10({setting})", "log_one_minus": f"log10(1 - {setting})"}.get(scale or "", setting)


def on_scale(values: np.ndarray, scale: str | None) -> np.ndarray | None:
    """Numbers as searched: log10 for "log", log10(1 - v) for "log_one_minus", unchanged otherwise; None when
    a log scale meets a value without a logarithm (<= 0, or a beta >= 1)."""
    if scale not in LOG_SCALES:
        return values
    argument = values if scale == "log" else 1.0 - values
    present = argument[np.isfinite(argument)]
    if (present <= 0).any():
        return None
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.log10(argument)


def _finite_rows(trials: pd.DataFrame, metric: str) -> pd.DataFrame:
    values = pd.to_numeric(trials[metric], errors="coerce")
    return trials[np.isfinite(values.to_numpy(dtype=np.float64))]


def _hover_names(rows: pd.DataFrame) -> list[str]:
    names = rows["run_name"] if "run_name" in rows else rows.get("run_id", pd.Series([""] * len(rows)))
    return [label(n) for n in names]


# ---------------------------------------------------------------------------------------------------------
# figures

def parallel_coordinates(trials: pd.DataFrame, params: Sequence[str], scales: Mapping[str, str] | None = None,
                         metric: str = "dev_error", metric_label: str = "dev error") -> go.Figure:
    """One line per trial through an axis per searched setting and a last axis for `metric`, coloured by it in
    PARALLEL_BANDS bands (yellow: the lowest).

    Numeric settings are drawn on their search scale (log10 for loguniform: the axis is named
    "log10(optim.lr)"), categorical ones as coded axes labelled with their values; each axis spans its own
    range, its ends labelled. Trials without a finite `metric` (diverged, failed, still in their first epoch)
    are left out. Each vertex carries its value on the axis (customdata) and the trial's name (text).

    Lines in SVG, not Plotly's WebGL parcoords: that took 1.6 s to draw 500 trials in a browser without a GPU,
    most of the sweep page's first paint; the runs table above filters by range instead of brushing.
    """
    scales = scales or {}
    found = _plottable(trials, params, metric, metric_label)
    if isinstance(found, go.Figure):
        return found
    rows, settings = found

    axes = [_parallel_axis(rows[setting], setting, scales.get(setting)) for setting in settings]
    metric_values = pd.to_numeric(rows[metric]).to_numpy(dtype=np.float64)
    axes.append(_parallel_axis(pd.Series(metric_values), metric_label, None))
    heights = np.column_stack([axis.height(axis.values) for axis in axes])  # (trials, axes) in [0, 1]
    values = np.column_stack([axis.values for axis in axes])
    names = _hover_names(rows)
    lowest, highest = float(metric_values.min()), float(metric_values.max())
    spread = highest - lowest
    bands = (np.zeros(len(rows), dtype=int) if spread == 0 else
             np.minimum(((metric_values - lowest) / spread * PARALLEL_BANDS).astype(int), PARALLEL_BANDS - 1))
    colours = sample_colorscale("Viridis", PARALLEL_BANDS)[::-1]

    fig = go.Figure()
    # A band's trials are one continuous line: each trial's line, the next one's drawn back from the last axis to
    # the first, and so on; the turns run along the first and the last axis, under their axis lines (shapes are
    # drawn above the traces). Plotly draws a line broken by gaps as one SVG path per piece, 500 for 500 trials,
    # and that was most of this figure's drawing. Arrays, not lists: Plotly checks a list element by element and
    # sends an array as binary, float32 here (heights in [0, 1], values shown to 4 digits).
    heights, values = heights.astype(np.float32), values.astype(np.float32)
    forth = np.arange(len(axes), dtype=np.float32)
    for band in reversed(range(PARALLEL_BANDS)):  # the best trials last: on top
        members = np.flatnonzero(bands == band)
        if not len(members):
            continue
        order = [slice(None) if k % 2 == 0 else slice(None, None, -1) for k in range(len(members))]
        low, high = lowest + spread * band / PARALLEL_BANDS, lowest + spread * (band + 1) / PARALLEL_BANDS
        fig.add_trace(go.Scatter(
            x=np.concatenate([forth[way] for way in order]),
            y=np.concatenate([heights[i][way] for i, way in zip(members, order, strict=True)]),
            customdata=np.concatenate([values[i][way] for i, way in zip(members, order, strict=True)]),
            text=[names[i] for i in members for _ in axes],
            mode="lines", line=dict(color=colours[band], width=1), opacity=0.8,
            name=f"{low:.3g} to {high:.3g}", hovertemplate="%{text}: %{customdata:.4g}<extra></extra>"))
    for j, axis in enumerate(axes):
        fig.add_shape(type="line", x0=j, x1=j, y0=0, y1=1, line=dict(color="#444", width=AXIS_WIDTH))
        for value, text in axis.ticks:
            fig.add_annotation(x=j, y=float(axis.height(np.array([value]))[0]), text=text, showarrow=False,
                               xanchor="right", xshift=-4, font=dict(size=10), bgcolor="rgba(255,255,255,0.7)")
    fig.update_layout(
        height=380, margin=dict(l=60, r=40, t=50, b=30), uirevision=UIREVISION, legend_title_text=metric_label,
        xaxis=dict(tickvals=list(range(len(axes))), ticktext=[axis.label for axis in axes], side="top",
                   showgrid=False, zeroline=False, range=[-0.5, len(axes) - 0.7]),
        yaxis=dict(visible=False, range=[-0.05, 1.05]), plot_bgcolor="white")
    return fig


PARALLEL_BANDS = 8  # colours of the parallel coordinates' lines: the metric's range in equal bands
AXIS_WIDTH = 2  # px: an axis line covers the 1 px turns of the lines along it, antialiased edges included


@dataclass(frozen=True)
class ParallelAxis:
    """One axis of the parallel coordinates: its name, the trials' values on it, the values at its ends (bottom,
    top) and its labelled ticks (value, text)."""

    label: str
    values: np.ndarray
    bottom: float
    top: float
    ticks: list[tuple[float, str]]

    def height(self, values: np.ndarray) -> np.ndarray:
        """Values as heights in [0, 1] on this axis (a constant axis draws its value in the middle)."""
        if self.top == self.bottom:
            return np.where(np.isfinite(values), 0.5, np.nan)
        return (values - self.bottom) / (self.top - self.bottom)


def _parallel_axis(column: pd.Series, setting: str, scale: str | None) -> ParallelAxis:
    values = numbers(column)
    if values is None:  # categories: coded 0..n-1, each labelled, half a step of room at the ends
        labels = category_labels(column)
        levels = sorted(set(labels), key=_natural)
        code = {level: i for i, level in enumerate(levels)}
        return ParallelAxis(setting, np.array([code[label] for label in labels], dtype=np.float64), -0.5,
                            len(levels) - 0.5, [(float(i), level) for i, level in enumerate(levels)])
    scaled = on_scale(values, scale)
    if scaled is None:  # a log scale with a value <= 0: show the numbers as they are
        scaled, scale = values, "linear"
    present = scaled[np.isfinite(scaled)]
    bottom, top = (float(present.min()), float(present.max())) if len(present) else (0.0, 0.0)
    ends = [bottom] if top == bottom else [bottom, top]
    return ParallelAxis(axis_label(setting, scale), scaled, bottom, top, [(v, f"{v:.3g}") for v in ends])


def _natural(label: str) -> tuple:
    """Numbers in numeric order before text, text alphabetically: 0.1 < 1 < 30 < relu < tanh."""
    try:
        return (0, float(label), "")
    except ValueError:
        return (1, 0.0, label)


def hyperparameter_scatter(trials: pd.DataFrame, params: Sequence[str], scales: Mapping[str, str] | None = None,
                           metric: str = "dev_error", metric_label: str = "dev error") -> go.Figure:
    """`metric` against each searched setting, one small plot each, on the setting's own scale: a log x axis
    for a loguniform setting, 1 - beta on a log x axis for loguniform_one_minus; a box per value for a
    categorical setting."""
    scales = scales or {}
    found = _plottable(trials, params, metric, metric_label)
    if isinstance(found, go.Figure):
        return found
    rows, settings = found

    n_cols = min(COLUMNS_PER_ROW, len(settings))
    n_rows = math.ceil(len(settings) / n_cols)
    fig = make_subplots(rows=n_rows, cols=n_cols, shared_yaxes=True, horizontal_spacing=0.06,
                        vertical_spacing=0.6 / n_rows if n_rows > 1 else 0.1)
    y = pd.to_numeric(rows[metric]).to_numpy(dtype=np.float64)
    names = _hover_names(rows)
    for i, setting in enumerate(settings):
        row, col = divmod(i, n_cols)
        row, col = row + 1, col + 1
        values = numbers(rows[setting])
        scale = scales.get(setting)
        axis = dict(title_text=setting)
        hover = f"%{{text}}<br>{setting} %{{x}}<br>{metric_label} %{{y:.4g}}<extra></extra>"
        if values is not None:
            x: Any = 1.0 - values if scale == "log_one_minus" else values
            if scale in LOG_SCALES and (x[np.isfinite(x)] > 0).all():
                axis |= dict(type="log", title_text="1 - " + setting if scale == "log_one_minus" else setting)
            else:
                axis |= dict(type="linear")
            trace: Any = go.Scatter(x=x, y=y, mode="markers", name=setting, showlegend=False, text=names,
                                    marker=dict(size=9, opacity=0.8), hovertemplate=hover)
        else:
            # A box of the metric per value, with every trial as a point up to BOX_POINTS trials, the outliers
            # only beyond: a column of hundreds of points on top of each other said less, and cost the drawing.
            x = category_labels(rows[setting])
            axis |= dict(type="category", categoryorder="array", categoryarray=sorted(set(x), key=_natural))
            trace = go.Box(x=x, y=y, name=setting, showlegend=False, text=names,
                           boxpoints="all" if len(rows) <= BOX_POINTS else "outliers", jitter=0.3, pointpos=0,
                           marker=dict(size=7, opacity=0.8), hovertemplate=hover)
        fig.add_trace(trace, row=row, col=col)
        fig.update_xaxes(row=row, col=col, **axis)
        if col == 1:
            fig.update_yaxes(title_text=metric_label, row=row, col=col)
    fig.update_layout(height=max(300, 280 * n_rows), margin=dict(l=60, r=20, t=30, b=50), uirevision=UIREVISION)
    return fig


def importance_bars(scores: Mapping[str, float], method: str | None = None) -> go.Figure:
    """Horizontal bars of hyperparameter importance (the share of the metric's variance a setting explains on
    its own, 0..1), the most important on top."""
    ranked = [(str(k), float(v)) for k, v in (scores or {}).items()
              if isinstance(v, (int, float)) and math.isfinite(v)]
    if not ranked:
        return empty("no hyperparameter importance: the sweep searched no setting, or no trial finished")
    ranked.sort(key=lambda item: -item[1])
    names = [name for name, _ in ranked][::-1]  # plotly draws the first bar at the bottom
    values = [value for _, value in ranked][::-1]
    fig = go.Figure(go.Bar(x=values, y=names, orientation="h", text=[f"{v:.2f}" for v in values],
                           textposition="auto", marker_color="#4c78a8",
                           hovertemplate="%{y}: %{x:.3f}<extra></extra>"))
    fig.update_xaxes(range=[0, 1], title_text="share of the variance of the dev error it explains on its own")
    fig.update_layout(height=max(220, 60 + 40 * len(ranked)), margin=dict(l=160, r=20, t=30 if method else 10, b=50),
                      uirevision=UIREVISION,
                      title=dict(text=method, font=dict(size=11)) if method else None)
    return fig


def bias_variance_scatter(trials: pd.DataFrame, color_by: str | None = None,
                          scales: Mapping[str, str] | None = None, thresholds: Thresholds = DEFAULT) -> go.Figure:
    """The trials on the plane avoidable bias (train - reference error) by variance (dev - train error), with
    the verdict's thresholds as lines, the four quadrants named, and the points coloured by `color_by` (a
    column: a colour scale for numbers, on log10 for a log-scale setting; one colour per value otherwise)."""
    scales = scales or {}
    missing = [c for c in ("train_error", "dev_error") if c not in getattr(trials, "columns", ())]
    if missing:
        return empty(f"the trials have no {' or '.join(c.replace('_', ' ') for c in missing)} column")
    train = pd.to_numeric(trials["train_error"], errors="coerce")
    dev = pd.to_numeric(trials["dev_error"], errors="coerce")
    reference = (pd.to_numeric(trials["reference_error"], errors="coerce").fillna(0.0)
                 if "reference_error" in trials else pd.Series(0.0, index=trials.index))
    finite = np.isfinite(train.to_numpy(dtype=np.float64)) & np.isfinite(dev.to_numpy(dtype=np.float64))
    if not finite.any():
        return empty("no trial has a finite train and dev error yet")
    rows = trials[finite]
    bias = (train - reference)[finite].to_numpy(dtype=np.float64)
    variance = (dev - train)[finite].to_numpy(dtype=np.float64)
    names = _hover_names(rows)
    hover = "%{text}<br>avoidable bias %{x:.1%}<br>variance %{y:.1%}"
    marker = dict(size=11, line=dict(width=1, color="white"))

    fig = go.Figure()
    color_by = color_by if color_by in rows.columns else None
    values = numbers(rows[color_by]) if color_by else None
    if color_by is None:
        fig.add_trace(go.Scatter(x=bias, y=variance, mode="markers", text=names, name="trials", marker=marker,
                                 hovertemplate=hover + "<extra></extra>"))
    elif values is not None:
        scale = scales.get(color_by)
        shown = on_scale(values, scale)
        if shown is None:
            shown, scale = values, "linear"
        label = axis_label(color_by, scale)
        fig.add_trace(go.Scatter(
            x=bias, y=variance, mode="markers", text=names, name=label,
            marker=marker | dict(color=shown, colorscale="Viridis", showscale=True,
                                 colorbar=dict(title=dict(text=label))),
            hovertemplate=hover + f"<br>{label} %{{marker.color:.4g}}<extra></extra>"))
    else:
        labels = np.array(category_labels(rows[color_by]))
        for level in sorted(set(labels), key=_natural):
            chosen = labels == level
            fig.add_trace(go.Scatter(x=bias[chosen], y=variance[chosen], mode="markers", name=f"{color_by} = {level}",
                                     text=[n for n, c in zip(names, chosen, strict=True) if c], marker=marker,
                                     hovertemplate=hover + "<extra></extra>"))

    # Axis ranges that always hold both thresholds and 0, so each corner of the plot lies in its quadrant.
    x_low, x_high = _span(bias, thresholds.high_bias)
    y_low, y_high = _span(variance, thresholds.high_variance)
    fig.add_vline(x=thresholds.high_bias, line=dict(dash="dash", color="grey"),
                  annotation_text=f"high bias above {thresholds.high_bias:.0%}",
                  annotation_position="top right")
    fig.add_hline(y=thresholds.high_variance, line=dict(dash="dash", color="grey"),
                  annotation_text=f"high variance above {thresholds.high_variance:.0%}",
                  annotation_position="top right")
    for text, x, y, xanchor, yanchor in QUADRANTS:
        fig.add_annotation(text=text, x=x, y=y, xref="x domain", yref="y domain", xanchor=xanchor,
                           yanchor=yanchor, showarrow=False, font=dict(color="grey", size=12))
    fig.update_xaxes(title_text="avoidable bias (train error - reference error)", tickformat=".0%",
                     range=[x_low, x_high], zeroline=True)
    fig.update_yaxes(title_text="variance (dev error - train error)", tickformat=".0%", range=[y_low, y_high],
                     zeroline=True)
    fig.update_layout(height=420, margin=dict(l=60, r=20, t=30, b=50), uirevision=UIREVISION,
                      legend=dict(title=dict(text=color_by or "")))
    return fig


def _span(values: np.ndarray, threshold: float) -> tuple[float, float]:
    low = min(float(values.min()), 0.0, threshold)
    high = max(float(values.max()), 2 * threshold)
    pad = 0.08 * (high - low or 1.0)
    return low - pad, high + pad


def _plottable(trials: pd.DataFrame, params: Sequence[str], metric: str,
               metric_label: str) -> tuple[pd.DataFrame, list[str]] | go.Figure:
    """The trials with a finite `metric` and the searched settings they record, or an `empty` figure saying
    which of the two is missing."""
    if metric not in getattr(trials, "columns", ()):
        return empty(f"the trials have no {metric_label} column ({metric})")
    rows = _finite_rows(trials, metric)
    if rows.empty:
        return empty(f"no trial has a finite {metric_label} yet")
    settings = [p for p in params if p in rows.columns]
    if not settings:
        return empty("the sweep searched no setting the trials record")
    return rows, settings

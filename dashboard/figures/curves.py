"""Train and dev curves over training steps, smoothed with the course's bias-corrected exponentially weighted
average (`analysis.smoothing.ema`), the raw points drawn faintly behind the smoothed line."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from analysis.smoothing import ema
from dashboard.figures import UIREVISION, empty, lacking

# (panel title, metric quantity) in the order of the panels; each panel draws train and dev.
PANELS = (("loss", "loss"), ("error", "error"))
SPLITS = ("train", "dev")
COLORS = {"train": "#1f77b4", "dev": "#ff7f0e"}
RAW_OPACITY = 0.3  # faint enough to read the smoothed line, visible enough to see the noise it hides
CURVE_KEYS = tuple(f"{split}/{quantity}" for _, quantity in PANELS for split in SPLITS)


def smoothing_beta(value: object, default: float = 0.6) -> float:
    """The smoothing control's value as an EMA beta in [0, 0.99]; `default` when it is missing or not a number."""
    try:
        beta = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return default
    return default if not math.isfinite(beta) else min(max(beta, 0.0), 0.99)


def learning_curves(history: pd.DataFrame, beta: float = 0.6) -> go.Figure:
    """Loss and error over steps, train and dev in each panel: the raw values faint, their EMA (beta) on top.

    `history` has columns key, step, value (as `Reader.history` returns them) with keys among train/loss,
    dev/loss, train/error, dev/error; other keys are ignored. Non-finite values (a diverged run) are gaps.
    beta = 0 draws the raw curves only. Returns `empty(...)` naming what is missing instead of raising.
    """
    problem = lacking(history, ("key", "step", "value"), "the history lacks")
    if problem is not None:
        return problem
    if not 0 <= beta < 1:
        return empty(f"smoothing beta = {beta!r}: expected a number in [0, 1)")
    rows = history[history["key"].isin(CURVE_KEYS)]
    if rows.empty:
        return empty("no train/dev loss or error recorded yet: the curves appear after the first epoch")

    fig = make_subplots(rows=1, cols=len(PANELS), subplot_titles=[title for title, _ in PANELS],
                        horizontal_spacing=0.08)
    for col, (_, quantity) in enumerate(PANELS, start=1):
        for split in SPLITS:
            key = f"{split}/{quantity}"
            curve = rows[rows["key"] == key].sort_values("step")
            if curve.empty:
                continue
            steps = curve["step"].to_numpy()
            values = pd.to_numeric(curve["value"], errors="coerce").to_numpy(dtype=np.float64)
            values = np.where(np.isfinite(values), values, np.nan)  # inf is a gap too, not a spike off the chart
            if beta > 0:
                fig.add_trace(go.Scatter(x=steps, y=values, mode="lines", name=f"{key} (raw)", legendgroup=key,
                                         showlegend=False, opacity=RAW_OPACITY, hoverinfo="skip",
                                         line=dict(color=COLORS[split], width=1)), row=1, col=col)
            fig.add_trace(go.Scatter(x=steps, y=ema(values, beta) if beta > 0 else values,
                                     mode="lines+markers" if len(steps) < 30 else "lines", name=key,
                                     legendgroup=key, line=dict(color=COLORS[split], width=2),
                                     hovertemplate=f"{key}<br>step %{{x}}<br>%{{y:.4g}}<extra></extra>"),
                          row=1, col=col)
        fig.update_xaxes(title_text="step", row=1, col=col)
    fig.update_yaxes(title_text="loss", row=1, col=1)
    fig.update_yaxes(title_text="error", rangemode="tozero", row=1, col=2)
    fig.update_layout(height=360, margin=dict(l=50, r=20, t=40, b=40), uirevision=UIREVISION,
                      legend=dict(orientation="h", y=-0.2),
                      title=dict(text=f"smoothed with beta = {beta:g}" if beta > 0 else "raw", font=dict(size=12)))
    return fig

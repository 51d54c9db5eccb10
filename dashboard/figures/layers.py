"""Per-layer pictures of a run's diagnostics: histograms over training (heat map or ridgeline), percentile bands
over steps, the depth profile at one step (activation std and gradient norm by layer, one line per run) and the
histograms of every layer at one step (small multiples).

Inputs are the frames of `dashboard.cache.CachedReader`: histogram rows (step, kind, layer, edges, counts) and the long
diagnostics frame (step, kind, layer, stat, value). Pure functions, no I/O; a figure whose input lacks what it
needs returns `empty(...)` saying what is missing.

Re-binning. Every snapshot's histogram has its own edges (from that tensor's min to its max), so rows cannot be
stacked as they are. `rebin` moves each row onto one common grid of equal bins spanning the layer's global range
(the smallest first edge to the largest last edge over the snapshots shown): the row's cumulative count is a
piecewise-linear function of the value (counts spread evenly within each source bin), it is evaluated at the
grid's edges (`numpy.interp`) and differenced. Each grid bin thus gets every source bin's count in proportion to
their overlap; the total is conserved whenever the grid covers the row's edges, which the global range does.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from analysis.health import depth_order
from dashboard.figures import UIREVISION, empty, label, lacking
from dashboard.figures.histograms import rebin

GRID_BINS = 64  # the common grid of a heat map: as fine as the `default` preset's histograms
HIST_COLUMNS = ("step", "kind", "layer", "edges", "counts")
DIAG_COLUMNS = ("step", "kind", "layer", "stat", "value")
# Percentile bands, outermost first: (low, high, fill opacity); the p50 line is drawn over them.
BANDS = (("p01", "p99", 0.15), ("p05", "p95", 0.25), ("p25", "p75", 0.4))
BAND_COLOR = "31, 119, 180"
# The depth profile's default panels: the initialization lesson's picture.
DEPTH_PANELS = (("act", "std"), ("grad", "norm"))
LOG_STATS = frozenset({"std", "norm", "update_ratio"})  # positive, spanning decades: drawn on a log axis
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")
RIDGE_FILL = "rgb(198, 219, 239)"  # opaque: a lower (earlier) ridge hides the one behind it
RIDGE_OVERLAP = 1.6  # a ridge's peak reaches this many rows up: ridges overlap a little, as ridgelines do
LAYER_HEIGHT = 190  # pixels per layer row of a per-layer figure


def _select(rows: pd.DataFrame, kind: str | None, layer: str | None) -> pd.DataFrame:
    if kind is not None:
        rows = rows[rows["kind"] == kind]
    if layer is not None:
        rows = rows[rows["layer"] == layer]
    return rows


def layer_grid(rows: pd.DataFrame, bins: int = GRID_BINS) -> tuple[list[int], np.ndarray, np.ndarray]:
    """One layer's histograms over training on a common grid: (steps in snapshot order, grid centres,
    counts of shape (steps, bins)). `rows` holds one kind and one layer; the grid spans the global range of
    their edges (see the module's docstring). Rows whose edges do not fit their counts are left out."""
    rows = rows.sort_values("step").drop_duplicates("step", keep="last")
    usable = []
    for row in rows.itertuples(index=False):
        edges, counts = np.asarray(row.edges, dtype=np.float64), np.asarray(row.counts, dtype=np.float64)
        if len(edges) == len(counts) + 1 and len(counts) > 0 and np.all(np.isfinite(edges)):
            usable.append((int(row.step), edges, counts))
    if not usable:
        return [], np.empty(0), np.empty((0, bins))
    low = min(e[0] for _, e, _ in usable)
    high = max(e[-1] for _, e, _ in usable)
    if not high > low:
        low, high = low - 0.5, high + 0.5
    grid = np.linspace(low, high, bins + 1)
    matrix = np.vstack([rebin(e, c, grid) for _, e, c in usable])
    return [s for s, _, _ in usable], (grid[:-1] + grid[1:]) / 2, matrix


def _scaled(matrix: np.ndarray, scale: str) -> np.ndarray:
    """Per-row normalised counts (each snapshot's largest bin = 1) or log(1 + counts)."""
    if scale == "log1p":
        return np.log1p(matrix)
    peak = matrix.max(axis=1, keepdims=True) if matrix.size else matrix
    return np.divide(matrix, peak, out=np.zeros_like(matrix), where=peak > 0)


def _layers(rows: pd.DataFrame, layer: str | None) -> list[str]:
    return [layer] if layer is not None else depth_order(rows["layer"].unique().tolist())


def _layer_panels(rows: pd.DataFrame, kind: str, layer: str | None, bins: int) -> go.Figure | tuple[
        go.Figure, list[str], list[tuple[int, str, list[int], np.ndarray, np.ndarray]]]:
    """What the heat map and the ridgeline share: an `empty` figure naming what is missing, or a figure with one
    row of subplots per layer, the layers, and each layer's (row, name, steps, grid centres, re-binned counts)."""
    problem = lacking(rows, HIST_COLUMNS, "the histogram rows lack")
    if problem is not None:
        return problem
    rows = _select(rows, kind, layer)
    if rows.empty:
        return empty(f"no {kind} histograms" + (f" for layer {layer}" if layer else ""))
    layers = _layers(rows, layer)
    fig = make_subplots(rows=len(layers), cols=1, subplot_titles=[label(name) for name in layers],
                        vertical_spacing=min(0.08, 0.3 / len(layers)))
    grids = [(i, name, *layer_grid(rows[rows["layer"] == name], bins)) for i, name in enumerate(layers, start=1)]
    return fig, layers, [grid for grid in grids if grid[2]]


def histogram_heatmap(rows: pd.DataFrame, kind: str, layer: str | None = None, scale: str = "row",
                      bins: int = GRID_BINS) -> go.Figure:
    """The histograms of `kind` over training, one heat map per layer (all layers in depth order when `layer`
    is None): y = the snapshot's step, in snapshot order (a category axis: steps are log-spaced early),
    x = value (the centres of a common grid over the layer's global range, see `rebin`), z = counts normalised
    per row (`scale` "row": each snapshot's fullest bin = 1) or log(1 + counts) (`scale` "log1p")."""
    if scale not in ("row", "log1p"):
        return empty(f"scale = {scale!r}: expected 'row' or 'log1p'")
    panels = _layer_panels(rows, kind, layer, bins)
    if isinstance(panels, go.Figure):
        return panels
    fig, layers, grids = panels
    for i, name, steps, centres, matrix in grids:
        fig.add_trace(go.Heatmap(x=centres, y=[str(s) for s in steps], z=_scaled(matrix, scale),
                                 coloraxis="coloraxis", name=label(name),
                                 hovertemplate="value %{x:.3g}<br>step %{y}<br>%{z:.3g}<extra></extra>"),
                      row=i, col=1)
        fig.update_yaxes(type="category", title_text="step", row=i, col=1)
    fig.update_xaxes(title_text=f"{kind} value", row=len(layers), col=1)
    fig.update_layout(height=120 + LAYER_HEIGHT * len(layers), margin=dict(l=60, r=20, t=40, b=40),
                      coloraxis=dict(colorscale="Viridis", colorbar=dict(
                          title=dict(text="count / row max" if scale == "row" else "log(1 + count)"))),
                      uirevision=UIREVISION)
    return fig


def ridgeline(rows: pd.DataFrame, kind: str, layer: str | None = None, bins: int = GRID_BINS) -> go.Figure:
    """The histograms of `kind` over training as a ridgeline per layer: one filled line per snapshot (counts on
    the layer's common grid, normalised to the snapshot's fullest bin), offset upward in snapshot order, the
    first snapshot at the bottom."""
    panels = _layer_panels(rows, kind, layer, bins)
    if isinstance(panels, go.Figure):
        return panels
    fig, layers, grids = panels
    for i, name, steps, centres, matrix in grids:
        heights = _scaled(matrix, "row") * RIDGE_OVERLAP
        half = (centres[1] - centres[0]) / 2 if len(centres) > 1 else 0.5
        x = np.concatenate([[centres[0] - half], centres, [centres[-1] + half]])
        for j in reversed(range(len(steps))):  # the top ridge first, so the lower ones are drawn in front
            y = np.concatenate([[j], j + heights[j], [j]])
            fig.add_trace(go.Scatter(x=x, y=y, mode="lines", fill="toself", name=f"step {steps[j]}",
                                     showlegend=False, line=dict(color=PALETTE[0], width=1),
                                     fillcolor=RIDGE_FILL,
                                     hovertemplate=f"{label(name)}, step {steps[j]}<br>value %{{x:.3g}}"
                                                   "<extra></extra>"),
                          row=i, col=1)
        ticks = _tick_indices(len(steps))
        fig.update_yaxes(tickvals=ticks, ticktext=[str(steps[t]) for t in ticks], title_text="step",
                         range=[-0.2, len(steps) - 1 + RIDGE_OVERLAP + 0.2], row=i, col=1)
    fig.update_xaxes(title_text=f"{kind} value", row=len(layers), col=1)
    fig.update_layout(height=120 + LAYER_HEIGHT * len(layers), margin=dict(l=60, r=20, t=40, b=40),
                      uirevision=UIREVISION)
    return fig


def _tick_indices(n: int, most: int = 12) -> list[int]:
    return sorted(set(np.linspace(0, n - 1, min(n, most)).round().astype(int).tolist())) if n else []


def percentile_bands(diag: pd.DataFrame, kind: str, layer: str | None = None) -> go.Figure:
    """The distribution of `kind` over steps: filled bands p01-p99, p05-p95, p25-p75, the p50 line and the mean
    (dotted), one panel per layer (every layer in depth order when `layer` is None)."""
    problem = lacking(diag, DIAG_COLUMNS, "the diagnostics lack")
    if problem is not None:
        return problem
    rows = diag[(diag["kind"] == kind) & diag["stat"].isin(["p50", "mean", *[s for b in BANDS for s in b[:2]]])]
    if layer is not None:
        rows = rows[rows["layer"] == layer]
    if rows.empty:
        return empty(f"no percentiles of {kind}" + (f" for layer {layer}" if layer else "") + " recorded")
    layers = _layers(rows, layer)
    fig = make_subplots(rows=len(layers), cols=1, subplot_titles=[label(name) for name in layers],
                        shared_xaxes=True, vertical_spacing=min(0.08, 0.3 / len(layers)))
    for i, name in enumerate(layers, start=1):
        table = rows[rows["layer"] == name].pivot_table(index="step", columns="stat", values="value",
                                                        aggfunc="last").sort_index()
        steps = table.index.to_numpy()
        first = i == 1
        for low, high, opacity in BANDS:
            if low not in table or high not in table:
                continue
            # one closed outline per band, up along `high` and back along `low`: half the traces of two lines
            # filled between (each trace costs the browser its own drawing pass)
            fig.add_trace(go.Scatter(x=np.concatenate([steps, steps[::-1]]),
                                     y=np.concatenate([table[high].to_numpy(), table[low].to_numpy()[::-1]]),
                                     mode="lines", line=dict(width=0), fill="toself",
                                     fillcolor=f"rgba({BAND_COLOR}, {opacity})", name=f"{low}-{high}",
                                     legendgroup=f"{low}-{high}", showlegend=first, hoveron="fills",
                                     hoverinfo="name"), row=i, col=1)
        for stat, dash in (("p50", "solid"), ("mean", "dot")):
            if stat in table:
                fig.add_trace(go.Scatter(x=steps, y=table[stat], mode="lines+markers" if len(steps) < 40 else "lines",
                                         name=stat, legendgroup=stat, showlegend=first,
                                         line=dict(color=f"rgb({BAND_COLOR})" if stat == "p50" else "#444",
                                                   width=2 if stat == "p50" else 1, dash=dash),
                                         marker=dict(size=4),
                                         hovertemplate=f"step %{{x}}<br>{stat} %{{y:.3g}}<extra></extra>"),
                              row=i, col=1)
        fig.update_yaxes(title_text=kind, row=i, col=1)
    fig.update_xaxes(title_text="step", row=len(layers), col=1)
    fig.update_layout(height=120 + 170 * len(layers), margin=dict(l=60, r=20, t=40, b=40), uirevision=UIREVISION,
                      legend=dict(orientation="h", y=1.02, yanchor="bottom", x=1, xanchor="right"))
    return fig


def nearest_step(steps: Sequence[int], step: int) -> int | None:
    """The step of `steps` closest to `step` (the earlier on a tie); None when there is none."""
    steps = sorted(int(s) for s in steps)
    if not steps:
        return None
    return min(steps, key=lambda s: (abs(s - step), s))


def depth_profile(frames_by_run: Mapping[str, pd.DataFrame], step: int,
                  panels: Sequence[tuple[str, str]] = DEPTH_PANELS) -> go.Figure:
    """Statistics by layer at `step`, from the input to the output (`depth_order`), one panel per
    (kind, stat) of `panels` (default: activation std and gradient norm, on log axes) and one line per run
    (legend: the key of `frames_by_run`, a diagnostics frame each). A run without a snapshot at `step` shows its
    nearest snapshot, named in its legend entry. On a log axis, values <= 0 cannot be drawn: a note under the
    panel says which run and how many layers (a zero-initialized network's activations are all 0)."""
    if not frames_by_run:
        return empty("no runs to profile")
    frames: dict[str, pd.DataFrame] = {}
    for name, frame in frames_by_run.items():
        problem = lacking(frame, DIAG_COLUMNS, f"{name}: the diagnostics lack")
        if problem is not None:
            return problem
        frames[name] = frame
    panels = list(panels)
    if not panels:
        return empty("no statistics chosen for the depth profile")
    found = {name: _at_step(frame, step, panels) for name, frame in frames.items()}
    if not any(values for _, values in found.values()):
        what = " or ".join(f"{kind} {stat}" for kind, stat in panels)
        return empty(f"no {what} recorded at step {step}")
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[f"{kind} {stat} by layer" for kind, stat in panels],
                        horizontal_spacing=0.1)
    notes: dict[int, list[str]] = {}
    all_layers: set[str] = set()
    for r, (name, (used_step, values)) in enumerate(found.items()):
        color = PALETTE[r % len(PALETTE)]
        legend = label(name) if used_step == step else f"{label(name)} (step {used_step})"
        shown = False
        for col, (kind, stat) in enumerate(panels, start=1):
            by_layer = values.get((kind, stat))
            if not by_layer:
                continue
            layers = depth_order(list(by_layer))
            all_layers.update(layers)
            y = np.array([by_layer[layer] for layer in layers], dtype=np.float64)
            if stat in LOG_STATS:
                bad = ~(y > 0) | ~np.isfinite(y)
                if bad.any():
                    notes.setdefault(col, []).append(
                        f"{label(name)}: {kind} {stat} is 0 or not finite in {int(bad.sum())} of {len(y)} layers")
                y = np.where(bad, np.nan, y)
            fig.add_trace(go.Scatter(x=layers, y=y, mode="lines+markers", name=legend, legendgroup=legend,
                                     showlegend=not shown, line=dict(color=color, width=2),
                                     hovertemplate=f"{legend}<br>%{{x}}<br>{kind} {stat} %{{y:.3g}}<extra></extra>"),
                          row=1, col=col)
            shown = True
    order = depth_order(sorted(all_layers))
    for col, (kind, stat) in enumerate(panels, start=1):
        fig.update_xaxes(type="category", categoryorder="array", categoryarray=order, row=1, col=col)
        fig.update_yaxes(type="log" if stat in LOG_STATS else "linear", title_text=f"{kind} {stat}", row=1, col=col)
    for col, lines in notes.items():
        axis = "x" if col == 1 else f"x{col}"
        fig.add_annotation(text="<br>".join(lines[:6]), showarrow=False, xref=f"{axis} domain", yref="paper",
                           x=0, y=-0.32, xanchor="left", yanchor="top", align="left", font=dict(size=10))
    fig.update_layout(height=440 + 14 * max((len(v) for v in notes.values()), default=0),
                      margin=dict(l=60, r=20, t=90, b=110), uirevision=UIREVISION,
                      legend=dict(orientation="h", y=1.08, yanchor="bottom", x=0, xanchor="left"))
    return fig


def _at_step(frame: pd.DataFrame, step: int, panels: Sequence[tuple[str, str]]
             ) -> tuple[int | None, dict[tuple[str, str], dict[str, float]]]:
    """(the snapshot used, (kind, stat) -> {layer: value}) for the panels at the snapshot nearest `step`."""
    mask = pd.Series(False, index=frame.index)
    for kind, stat in panels:
        mask |= (frame["kind"] == kind) & (frame["stat"] == stat)
    wanted = frame[mask]
    used = nearest_step(wanted["step"].unique().tolist(), step) if len(wanted) else None
    if used is None:
        return None, {}
    at = wanted[wanted["step"] == used]
    values: dict[tuple[str, str], dict[str, float]] = {}
    for (kind, stat), rows in at.groupby(["kind", "stat"]):
        values[(kind, stat)] = dict(zip(rows["layer"], rows["value"].astype(float), strict=True))
    return used, values


def small_multiples(rows: pd.DataFrame, step: int, kind: str | None = None, columns: int = 4) -> go.Figure:
    """The histogram of every layer at `step` (of `kind`, when given; else every kind the rows have), one small
    bar chart per layer in depth order: bars at the bin centres, as wide as the bins, each panel on its own
    value axis (tanh saturating at +-1 shows as two spikes at the ends)."""
    problem = lacking(rows, HIST_COLUMNS, "the histogram rows lack")
    if problem is not None:
        return problem
    rows = _select(rows, kind, None)
    at = rows[rows["step"] == step]
    if at.empty:
        return empty(f"no {kind + ' ' if kind else ''}histogram at step {step}")
    panels = []
    for layer_kind in (sorted(at["kind"].unique()) if kind is None else [kind]):
        for name in depth_order(at.loc[at["kind"] == layer_kind, "layer"].unique().tolist()):
            row = at[(at["kind"] == layer_kind) & (at["layer"] == name)].iloc[-1]
            panels.append((name if kind is not None else f"{layer_kind} {name}", row))
    columns = max(1, min(columns, len(panels)))
    n_rows = math.ceil(len(panels) / columns)
    fig = make_subplots(rows=n_rows, cols=columns, subplot_titles=[label(title) for title, _ in panels],
                        horizontal_spacing=0.06, vertical_spacing=min(0.12, 0.5 / n_rows))
    for i, (title, row) in enumerate(panels):
        edges, counts = np.asarray(row["edges"], dtype=np.float64), np.asarray(row["counts"], dtype=np.float64)
        r, c = divmod(i, columns)
        if len(edges) != len(counts) + 1:
            continue
        fig.add_trace(go.Bar(x=(edges[:-1] + edges[1:]) / 2, y=counts, width=np.diff(edges), name=label(title),
                             showlegend=False, marker=dict(color=PALETTE[0], line=dict(width=0)),
                             hovertemplate="%{x:.3g}: %{y}<extra></extra>"), row=r + 1, col=c + 1)
    fig.update_layout(height=90 + 170 * n_rows, margin=dict(l=40, r=20, t=40, b=30), bargap=0,
                      uirevision=UIREVISION, title=dict(text=f"step {step}", font=dict(size=12)))
    fig.update_annotations(font=dict(size=11))
    return fig

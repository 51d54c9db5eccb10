"""The layers page: what every layer's weights, gradients and activations did over training.

`/layers/<run_id>`, optionally `?compare=<run id>[,<run id>...]` to put other runs beside it (zeros against He,
say): one line per run in the depth profile, one column per run for the histograms, bands and flags.

Controls: `kind` (the diagnostics kinds the run recorded; default act, the initialization lesson's kind),
`layer` ("all" or one layer), `view` (heatmap or ridgeline), `scale` (heat map colour: counts normalised per
snapshot, or log(1 + counts)), `step` (the position in the run's snapshot steps, 0 = the initialization: the
slider moves over snapshots, which are log-spaced early, rather than over raw steps), and `stat` (the
statistics of the depth profile, "kind/stat"; default activation std and gradient norm).

Histogram parts are read lazily: the heat map or ridgeline needs every part (at most MAX_HEATMAP_STEPS of them,
evenly chosen, first and last kept); the small multiples only the chosen step's. A part that cannot be read is
named in a notice and the rest is drawn.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from dash import dcc, html

from analysis.health import Flag, depth_order
from analysis.report import flat_point
from dashboard import ids
from dashboard.cache import CachedReader
from dashboard.components import control, message, run_link, section
from dashboard.figures import empty
from dashboard.figures.layers import (
    DEPTH_PANELS,
    depth_profile,
    histogram_heatmap,
    nearest_step,
    percentile_bands,
    ridgeline,
    small_multiples,
)
from tracking.layout import KINDS, PERCENTILE_NAMES, POINT_TAG, parse_diag_key
from tracking.reader import DataError

if TYPE_CHECKING:  # annotations only: MLflow is read and written through tracking.reader and tracking.writer
    from mlflow.entities import Run

PATH = "/layers/<run_id>"
TITLE = "Layers"

DEFAULT_KIND = "act"  # activations show the initialization lessons (collapse, saturation) most directly
PERCENTILE_STATS = (*PERCENTILE_NAMES, "mean", "std")
# One diagnostics read per run serves the bands and the depth profile (the reader caches it by this tuple).
STATS = (*PERCENTILE_STATS, "norm", "frac_dead", "frac_saturated", "update_ratio")
DEPTH_STATS = ("std", "norm", "mean", "frac_dead", "frac_saturated", "update_ratio")  # the `stat` control's choices
MAX_HEATMAP_STEPS = 60  # economy snapshots ~30 per run; a long `full` run is thinned to this many rows
NOT_LAYER_FLAGS = ("diverged", "loss_not_falling")  # run-level flags: the run page shows them
VIEWS = ("heatmap", "ridgeline")
SCALES = (("row", "count / row max"), ("log1p", "log(1 + count)"))
NO_DIAGNOSTICS = "this run has no diagnostics (diagnostics.preset: off)"


# -- what a run recorded ------------------------------------------------------------------------------

def recorded(run: Run) -> dict[str, set[str]]:
    """kind -> the layers with diagnostics scalars of that kind, from the run's metric keys (no query)."""
    found: dict[str, set[str]] = {}
    for key in run.data.metrics:
        parsed = parse_diag_key(key)
        if parsed:
            found.setdefault(parsed[0], set()).add(parsed[1])
    return found


def recorded_stats(run: Run) -> set[tuple[str, str]]:
    """The (kind, stat) pairs the run recorded."""
    return {(p[0], p[2]) for key in run.data.metrics if (p := parse_diag_key(key))}


def run_label(run: Run) -> str:
    """The run's name and, for a sweep trial, its searched values: "init-a1c29_00009 (init=he, activation=relu)"."""
    name = str(run.info.run_name or run.info.run_id[:8])
    try:
        point = json.loads(run.data.tags.get(POINT_TAG, "{}"))
    except ValueError:
        point = {}
    if isinstance(point, dict) and point:
        values = [f"{key.split('.')[-1]}={value:g}" if isinstance(value, float) else f"{key.split('.')[-1]}={value}"
                  for key, value in flat_point(point).items()]
        name += f" ({', '.join(values)})"
    return name


def snapshot_steps(reader: CachedReader, run_id: str) -> list[int]:
    """The run's snapshot steps: those with a histogram part, else those of its diagnostics scalars."""
    steps = reader.histogram_steps(run_id)
    if steps:
        return steps
    diag = reader.diagnostics(run_id, STATS)
    return sorted(int(s) for s in diag["step"].unique())


def evenly(steps: Sequence[int], most: int = MAX_HEATMAP_STEPS) -> list[int]:
    """At most `most` of `steps`, evenly spread over their positions, the first and the last kept."""
    steps = list(steps)
    if len(steps) <= most:
        return steps
    return [steps[i] for i in sorted(set(np.linspace(0, len(steps) - 1, most).round().astype(int).tolist()))]


def compare_ids(args: dict[str, Any], run_id: str) -> list[str]:
    """The run ids of `?compare=`, comma separated, in order, without repeats or the page's own run."""
    text = str(args.get("compare") or "")
    found = []
    for part in text.split(","):
        part = part.strip()
        if part and part != run_id and part not in found:
            found.append(part)
    return found


# -- controls ---------------------------------------------------------------------------------------

def _step_marks(steps: Sequence[int], most: int = 7) -> dict[int, str]:
    if not steps:
        return {0: "0"}
    return {int(i): str(steps[i]) for i in np.unique(np.linspace(0, len(steps) - 1, min(most, len(steps)))
                                                    .round().astype(int))}


def controls(reader: CachedReader, run_id: str, compare: str | None = None, kind: str | None = None,
             layer: str | None = None, at: str | None = None, **_: str) -> html.Div:
    """The page's header and controls for run `run_id` (kinds, layers and snapshot steps it recorded). `kind`,
    `layer` and `at` (a step: the snapshot nearest it) open the page where a finding points (`?kind=act&
    layer=hidden.5&at=0`); values the run did not record are ignored."""
    run = reader.run(run_id)
    kinds = recorded(run)
    header = [html.H1(f"Layers: {run_label(run)}"),
              html.P([run_link(run_id, "run page", "run"), " · ",
                      run_link(run_id, "gradient check", "gradcheck")])]
    others = compare_ids({"compare": compare}, run_id)
    if others:
        header.append(html.P(f"compared with {len(others)} other run(s): " + ", ".join(o[:8] for o in others)))
    if not kinds:
        return html.Div([*header, message(NO_DIAGNOSTICS, "info")], className="controls")
    present = [k for k in KINDS if k in kinds] or sorted(kinds)
    layers = depth_order(sorted(set().union(*kinds.values())))
    steps = snapshot_steps(reader, run_id)
    stats = recorded_stats(run)
    depth_options = [f"{k}/{s}" for k in present for s in DEPTH_STATS if (k, s) in stats]
    default_panels = [f"{k}/{s}" for k, s in DEPTH_PANELS if f"{k}/{s}" in depth_options]
    chosen_kind = kind if kind in present else (DEFAULT_KIND if DEFAULT_KIND in present else present[0])
    chosen_layer = layer if layer in layers else "all"
    try:
        wanted = int(at) if at is not None else None
    except ValueError:
        wanted = None
    nearest = nearest_step(steps, wanted) if wanted is not None else None
    chosen_step = steps.index(nearest) if nearest is not None else 0
    return html.Div([
        *header,
        html.Div([
            html.Label(["kind", dcc.RadioItems(id=control(ids.KIND), options=present, inline=True,
                                               value=chosen_kind)]),
            html.Label(["layer", dcc.Dropdown(id=control("layer"), clearable=False, value=chosen_layer,
                                              options=[{"label": "all layers", "value": "all"}]
                                              + [{"label": name, "value": name} for name in layers])]),
            html.Label(["view", dcc.RadioItems(id=control("view"), options=list(VIEWS), value="heatmap",
                                               inline=True)]),
            html.Label(["colour", dcc.RadioItems(id=control("scale"), inline=True, value="row",
                                                 options=[{"label": text, "value": v} for v, text in SCALES])]),
        ], className="control-row"),
        html.Label(["snapshot step", dcc.Slider(id=control(ids.STEP), min=0, max=max(len(steps) - 1, 0), step=1,
                                                value=chosen_step, marks=_step_marks(steps), allow_direct_input=False,
                                                disabled=len(steps) < 2)]),
        html.Label(["depth profile", dcc.Dropdown(id=control(ids.STAT), multi=True, options=depth_options,
                                                  value=default_panels)]),
    ], className="controls")


# -- content ----------------------------------------------------------------------------------------

def _panels(value: Any, options: set[tuple[str, str]]) -> list[tuple[str, str]]:
    chosen = value if isinstance(value, (list, tuple)) else ([value] if isinstance(value, str) else [])
    panels = []
    for item in chosen:
        kind, _, stat = str(item).partition("/")
        if (kind, stat) in options and (kind, stat) not in panels:
            panels.append((kind, stat))
    return panels or [p for p in DEPTH_PANELS if p in options] or list(DEPTH_PANELS)


def _index(value: Any, count: int) -> int:
    try:
        index = int(value)
    except (TypeError, ValueError):
        return 0
    return min(max(index, 0), max(count - 1, 0))


def _graph(figure: Any, **kwargs: Any) -> dcc.Graph:
    return dcc.Graph(figure=figure, config={"displaylogo": False}, **kwargs)


def _columns(children: list[Any]) -> html.Div:
    """Runs side by side: one column each."""
    return html.Div(children, className="run-columns",
                    style={"display": "grid", "gap": "1rem",
                           "gridTemplateColumns": f"repeat({len(children)}, minmax(0, 1fr))"})


def _flag_item(flag: Flag) -> html.Li:
    layers = list(flag.layers) or ([flag.layer] if flag.layer else [])
    where = ", ".join(layers[:3]) + (f" and {len(layers) - 3} more" if len(layers) > 3 else "")
    when = f"step {flag.step}" + (f" to {flag.last_step}" if flag.last_step not in (None, flag.step) else "")
    extra = "; ".join(f"{k.replace('_', ' ')} {v:.3g}" for k, v in flag.extra.items()
                      if isinstance(v, (int, float)) and math.isfinite(v))
    text = f" ({flag.quantity}) in {where or 'the network'}, {when}" + (f"; {extra}" if extra else "")
    return html.Li([html.Strong(f"{flag.severity}: {flag.name.replace('_', ' ')}"), text, html.Br(),
                    html.Span(f"{flag.explanation} {flag.action}", className="muted")])


def layer_flags(reader: CachedReader, run: Run) -> list[Flag]:
    """The run's health flags about its layers (not the run-level divergence or flat loss), cached per run."""
    flags = reader.flags(run)
    return [f for f in flags if f.name not in NOT_LAYER_FLAGS]


def _depth_summary(label: str, diag: pd.DataFrame, step: int) -> str | None:
    """"label: activation std last / first layer = r" at the snapshot nearest `step`, the depth lesson in one
    number (about 1: the signal keeps its size; far below 1: it dies out layer by layer)."""
    rows = diag[(diag["kind"] == "act") & (diag["stat"] == "std")]
    used = nearest_step(rows["step"].unique().tolist(), step)
    if used is None:
        return None
    at = rows[rows["step"] == used]
    values = dict(zip(at["layer"], at["value"].astype(float), strict=True))
    order = depth_order(list(values))
    if len(order) < 2:
        return None
    first, last = values[order[0]], values[order[-1]]
    ratio = last / first if first > 0 else math.nan
    shown = f"{ratio:.3g}" if math.isfinite(ratio) else "undefined (first layer's std is 0)"
    return f"{label}: activation std, last / first layer = {shown} at step {used}"


def content(reader: CachedReader, args: dict[str, Any], values: dict[str, Any]) -> html.Div:
    """Health flags, the depth profile at the chosen step, histograms over training, percentile bands and the
    histograms at the chosen step, for the page's run and every `compare` run."""
    run_id = str(args.get("run_id", ""))
    primary = reader.run(run_id)
    notices: list[Any] = []
    runs = [primary]
    for other in compare_ids(args, run_id):
        try:
            runs.append(reader.run(other))
        except DataError as err:
            notices.append(message(f"compare: {err}"))
    labels: dict[str, str] = {}
    for run in runs:  # legend names must be unique: two runs of one name get their id's start
        text = run_label(run)
        labels[run.info.run_id] = text if text not in labels.values() else f"{text} [{run.info.run_id[:8]}]"
    with_diag = []
    for run in runs:
        if recorded(run):
            with_diag.append(run)
        else:
            prefix = "" if len(runs) == 1 else f"{labels[run.info.run_id]}: "
            notices.append(message(prefix + NO_DIAGNOSTICS, "info"))
    if not with_diag:
        return html.Div(notices)

    kinds = recorded(primary) or recorded(with_diag[0])
    present = [k for k in KINDS if k in kinds] or sorted(kinds)
    kind = values.get(ids.KIND)
    if kind not in present:
        kind = DEFAULT_KIND if DEFAULT_KIND in present else present[0]
    layer = values.get("layer")
    layer = None if layer in (None, "", "all") else str(layer)
    view = values.get("view") if values.get("view") in VIEWS else "heatmap"
    scale = values.get("scale") if values.get("scale") in dict(SCALES) else "row"
    lead = primary if primary in with_diag else with_diag[0]
    steps = snapshot_steps(reader, lead.info.run_id)
    step = steps[_index(values.get(ids.STEP), len(steps))] if steps else 0
    options = set().union(*(recorded_stats(run) for run in with_diag))
    panels = _panels(values.get(ids.STAT), {p for p in options if p[1] in DEPTH_STATS})

    diags = {run.info.run_id: reader.diagnostics(run.info.run_id, STATS) for run in with_diag}
    depth = depth_profile({labels[rid]: diag for rid, diag in diags.items()}, step, panels)
    summaries = [s for rid, diag in diags.items() if (s := _depth_summary(labels[rid], diag, step))]

    over_training, bands, at_step, flag_lists = [], [], [], []
    for run in with_diag:
        rid = run.info.run_id
        part_steps = reader.histogram_steps(rid)
        chosen = nearest_step(part_steps, step)
        wanted = sorted(set(evenly(part_steps)) | ({chosen} if chosen is not None else set()))
        rows, problems = reader.histograms(rid, wanted) if part_steps else (None, [])
        notices.extend(message(p, "warning") for p in problems)
        title = html.H3([labels[rid], " ", run_link(rid, "(run page)", "run")])
        if rows is None:
            hist_fig = small_fig = empty(f"{labels[rid]}: no histogram parts recorded (diagnostics/hist-*.parquet)")
        else:
            heat_rows = rows[rows["step"].isin(evenly(part_steps))]
            hist_fig = (histogram_heatmap(heat_rows, kind, layer, scale) if view == "heatmap"
                        else ridgeline(heat_rows, kind, layer))
            small_fig = small_multiples(rows, chosen if chosen is not None else step, kind,
                                        columns=4 if len(with_diag) == 1 else 2)
        over_training.append(html.Div([title, _graph(hist_fig)]))
        bands.append(html.Div([html.H3(labels[rid]), _graph(percentile_bands(diags[rid], kind, layer))]))
        at_step.append(html.Div([html.H3(labels[rid] + (f" (step {chosen})" if chosen not in (None, step) else "")),
                                 _graph(small_fig)]))
        flags = layer_flags(reader, run)
        flag_lists.append(html.Div([html.H3(labels[rid]),
                                    html.Ul([_flag_item(f) for f in flags]) if flags
                                    else html.P("no layer health flags", className="muted")]))

    layer_text = layer or "every layer"
    return html.Div([
        *notices,
        section("Health flags", _columns(flag_lists)),
        section(f"Depth profile at step {step}", _graph(depth, id=ids.DEPTH_PROFILE),
                html.Ul([html.Li(s) for s in summaries])),
        section(f"{kind} histograms over training ({view}, {layer_text})",
                html.Div(_columns(over_training), id=ids.HISTOGRAMS)),
        section(f"{kind} percentiles over training ({layer_text})", _columns(bands)),
        section(f"{kind} histograms at step {step}, every layer", _columns(at_step)),
    ])


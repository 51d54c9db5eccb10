"""A sweep (its parent run): the trials in a table, how the dev error depends on each searched setting
(parallel coordinates, one plot per setting, importance), the trials on the bias/variance plane, and the
coarse-to-fine step `fitlens sweep refine` would take next."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

import pandas as pd
from dash import dash_table, dcc, html
from dash.dash_table import FormatTemplate
from dash.dash_table.Format import Format, Scheme, Trim

from analysis.gather import REFINE_TOP, gather_sweep_report
from analysis.report import reading, row_verdict, searched_settings
from analysis.thresholds import DEFAULT
from analysis.values import finite_or_none
from dashboard import ids
from dashboard.cache import CachedReader
from dashboard.components import VERDICT_LABELS, control, message, mlflow_link, run_link, section, verdict_badge
from dashboard.figures.sweeps import (
    bias_variance_scatter,
    hyperparameter_scatter,
    importance_bars,
    parallel_coordinates,
)
from tracking.reader import DataError, is_sweep

PATH = "/sweep/<run_id>"
TITLE = "Sweep"
ERROR_COLUMNS = ("train error", "dev error", "avoidable bias", "variance")


def controls(reader: CachedReader, run_id: str, **_: str) -> Any:
    """The sweep's name and links, and the setting that colours the bias/variance plot ("color_by")."""
    parent = _parent(reader, run_id)
    settings = searched_settings(reader.trials_frame(run_id))
    return html.Div([
        html.H1(f"Sweep {parent.info.run_name or run_id}"),
        html.P([f"status {parent.info.status}, run id ", html.Code(run_id), " · ",
                mlflow_link(reader.uri, parent.info.experiment_id, run_id), " · ",
                run_link(run_id, "regularization", "regularization"), " · ",
                run_link(run_id, "optimization", "optimization")]),
        html.Label(["colour the bias/variance plot by ",
                    dcc.Dropdown(id=control("color_by"), options=[{"label": s, "value": s} for s in settings],
                                 value=settings[0] if settings else None, clearable=True,
                                 placeholder="a searched setting", style={"minWidth": "16em"})],
                   className="control"),
    ], className="controls")


def content(reader: CachedReader, args: dict[str, str], values: dict[str, Any]) -> Any:
    """Everything data-driven: summary, runs table, figures, importance and the refined space."""
    parent_id = args["run_id"]
    parent = _parent(reader, parent_id)
    trials = reader.trials_frame(parent_id)
    if trials.empty:
        return message(f"sweep {parent_id} has no trials yet"
                       + (" (it is running: they appear as they start)" if parent.info.status == "RUNNING" else ""),
                       "info")
    notices = []
    scales: dict[str, str] = {}
    try:
        scales = {key: dist.scale for key, dist in reader.sweep(parent_id).space.items()}
    except Exception as err:  # an old sweep without search_space.yaml: numbers are drawn on linear axes
        notices.append(message(f"the sweep's search space could not be read ({type(err).__name__}: {err}); "
                               "every number is drawn on a linear axis", "warning"))
    report = None
    try:
        # `fitlens report`'s own: kept by a finished sweep, else computed from each trial's cached evidence
        report = reader.kept(parent_id, "report") or reader.cached(
            "sweep_report", reader.key(parent), lambda: gather_sweep_report(
                reader.client, parent, reader.trial_runs(parent_id), trials=trials, sweep=reader.sweep(parent_id),
                evidence=lambda run, _row: reader.evidence(run, trials)))
    except Exception as err:
        notices.append(message(f"the sweep report could not be computed ({type(err).__name__}: {err}); "
                               "importance, flags and the refined space are missing", "warning"))
    settings = searched_settings(trials)
    flags = {t["run_id"]: sorted({f["name"] for f in t["flags"]}) for t in (report or {}).get("trials", [])}
    causes = {t["run_id"]: t.get("primary_cause") for t in (report or {}).get("trials", [])}
    best_id = (report or {}).get("best_run_id")
    color_by = values.get("color_by")
    return html.Div([
        *notices,
        section("Summary", summary(trials, report)),
        section("Trials", runs_table(trials, settings, flags, best_id, causes)),
        section("Dev error across the searched settings",
                html.P("Each line is a trial, coloured by its dev error (yellow: the lowest); hover a line for "
                       "the trial. Settings searched log-uniformly are drawn as log10. To keep a range of a "
                       "setting, filter its column in the table above (e.g. < 0.01)."),
                dcc.Graph(id=ids.PARALLEL, figure=parallel_coordinates(trials, settings, scales)),
                dcc.Graph(figure=hyperparameter_scatter(trials, settings, scales))),
        section("Hyperparameter importance", *importance(report)),
        section("Bias and variance of the trials",
                html.P("Avoidable bias is train error minus the reference (human / Bayes) error; variance is dev "
                       f"minus train error. The dashed lines are the verdict's thresholds ({DEFAULT.high_bias:.0%}"
                       f" and {DEFAULT.high_variance:.0%})."),
                dcc.Graph(id=ids.BIAS_VARIANCE_SCATTER,
                          figure=bias_variance_scatter(trials, color_by if color_by in trials else None, scales))),
        section("Coarse to fine: the next sweep", *refinement(parent_id, report, reader, scales)),
    ])


def _parent(reader: CachedReader, run_id: str) -> Any:
    parent = reader.run(run_id)
    if not is_sweep(parent):
        raise DataError(f"run {run_id} is not a sweep's parent run; its own page is /run/{run_id}")
    return parent


# ---------------------------------------------------------------------------------------------------------

def summary(trials: pd.DataFrame, report: Mapping[str, Any] | None) -> Any:
    """How many trials in which state, and the best trial's bias/variance reading."""
    states = trials["status"].value_counts().to_dict()
    counts = ", ".join(f"{n} {str(state).lower()}" for state, n in states.items())
    stopped = int(trials["stopped_early"].notna().sum()) if "stopped_early" in trials else 0
    diverged = int(trials["diverged"].notna().sum()) if "diverged" in trials else 0
    lines: list[Any] = [html.P(f"{len(trials)} trials: {counts}"
                               + (f"; {stopped} stopped early" if stopped else "")
                               + (f"; {diverged} diverged" if diverged else ""))]
    best_id = (report or {}).get("best_run_id")
    if report is None or best_id is None:
        lines.append(html.P("no trial has a finite dev error yet"))
        return html.Div(lines)
    best = trials[trials["run_id"] == best_id]
    name = str(best["run_name"].iloc[0]) if not best.empty else best_id[:8]
    verdict_reading = html.Span()
    if report.get("verdict") is not None:
        verdict_reading = html.Span(reading(report))
    lines.append(html.P(["best trial by ", str(report.get("metric")), ": ", run_link(best_id, name), " ",
                         verdict_badge(report.get("verdict")), " ", verdict_reading, " (its page lists the recipe's "
                         "next steps)"]))
    return html.Div(lines)


def runs_table(trials: pd.DataFrame, settings: list[str], flags: Mapping[str, list[str]],
               best_id: str | None, causes: Mapping[str, str | None] | None = None) -> dash_table.DataTable:
    """The trials, filterable and sortable: name (a link to the run), status, each searched setting, the errors,
    verdict, stopped early (the scheduler's reason as tooltip), diverged, health flags, a link to its layers."""
    percent = FormatTemplate.percentage(1)
    columns = [{"id": "trial", "name": "trial", "presentation": "markdown"},
               {"id": "best", "name": "best"}, {"id": "status", "name": "status"},
               {"id": "cause", "name": "cause (first finding)"}]
    columns += [{"id": s, "name": s, "type": "numeric", "format": SETTING_FORMAT} if _numeric(trials[s])
                else {"id": s, "name": s, "type": "text"} for s in settings]
    columns += [{"id": c, "name": c, "type": "numeric", "format": percent} for c in ERROR_COLUMNS]
    columns += [{"id": "verdict", "name": "verdict"}, {"id": "stopped early", "name": "stopped early"},
                {"id": "diverged", "name": "diverged"}, {"id": "flags", "name": "health flags"},
                {"id": "layers", "name": "layers", "presentation": "markdown"}]
    data, tooltips = [], []
    for row in trials.to_dict("records"):
        run_id = row["run_id"]
        train, dev = finite_or_none(row.get("train_error")), finite_or_none(row.get("dev_error"))
        reference = finite_or_none(row.get("reference_error")) or 0.0
        verdict = row_verdict(row)
        stopped = row.get("stopped_early")
        data.append({
            "trial": f"[{markdown_text(row.get('run_name') or run_id)}](/run/{run_id})",
            "best": "best" if run_id == best_id else "",
            "status": str(row.get("status")),
            "cause": str((causes or {}).get(run_id) or "").replace("_", " "),
            **{s: _cell(row.get(s)) for s in settings},
            "train error": train, "dev error": dev,
            "avoidable bias": None if train is None else train - reference,
            "variance": None if train is None or dev is None else dev - train,
            "verdict": VERDICT_LABELS.get(verdict, str(verdict)),
            "stopped early": "yes" if isinstance(stopped, str) and stopped else "",
            "diverged": str(row["diverged"]) if isinstance(row.get("diverged"), str) else "",
            "flags": ", ".join(flags.get(run_id, [])),
            "layers": f"[layers](/layers/{run_id})",
        })
        tooltips.append({"stopped early": {"value": str(stopped), "type": "text"}}
                        if isinstance(stopped, str) and stopped else {})
    return dash_table.DataTable(
        id=ids.RUNS_TABLE, columns=columns, data=data, tooltip_data=tooltips, tooltip_duration=None,
        filter_action="native", sort_action="native", page_size=PAGE_ROWS,
        markdown_options={"html": False, "link_target": "_self"},
        style_table={"overflowX": "auto"}, style_cell={"textAlign": "left", "padding": "4px"},
        style_data_conditional=[{"if": {"filter_query": '{best} = "best"'}, "fontWeight": "bold"}],
    )


SETTING_FORMAT = Format(precision=4, scheme=Scheme.decimal_or_exponent, trim=Trim.yes)  # 0.008145, 106
PAGE_ROWS = 20  # rows the table draws at once: each costs the first paint, and most are below the fold anyway


MARKDOWN_SPECIALS = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~&])")


def markdown_text(text: Any) -> str:
    """`text` (a run name from the store) escaped so that Markdown shows it literally."""
    return MARKDOWN_SPECIALS.sub(r"\\\1", str(text)).replace("\n", " ")


def _numeric(column: pd.Series) -> bool:
    present = [v for v in column if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return bool(present) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present)


def _cell(value: Any) -> Any:
    """A setting's value as a table cell: numbers stay numbers (sorting), anything else becomes text."""
    if isinstance(value, bool) or value is None:
        return None if value is None else str(value)
    if isinstance(value, (int, float)):
        return value if math.isfinite(value) else None
    if isinstance(value, (list, dict)):
        return json.dumps(value, default=str)
    return str(value)


def importance(report: Mapping[str, Any] | None) -> list[Any]:
    """The importance bars and, when the ranking is not to be trusted yet, the caveat."""
    if report is None:
        return [message("no importance without the sweep report", "warning")]
    found = report.get("importance") or {}
    parts: list[Any] = [dcc.Graph(figure=importance_bars(found.get("scores") or {}, found.get("method")))]
    if found.get("caveat"):
        parts.insert(0, message(f"caveat: {found['caveat']}", "warning"))
    parts.append(html.P(f"from {found.get('n_trials', 0)} trials with a finite {report.get('metric', 'metric')}"))
    return parts


def refinement(parent_id: str, report: Mapping[str, Any] | None, reader: CachedReader,
               scales: Mapping[str, str]) -> list[Any]:
    """The space `fitlens sweep refine` would search next, beside the one searched, and the command."""
    command = f".venv/bin/fitlens sweep refine {parent_id} --top {REFINE_TOP}"
    explain = html.P(f"Coarse to fine: each numeric range is narrowed around the best {REFINE_TOP} trials on the "
                     "scale it was searched on (log for loguniform), widened by a quarter of the old range on each "
                     "side; categorical settings keep the values those trials had. Run it (add --dry-run to see "
                     "the sweep file first):")
    refined = (report or {}).get("refined_space")
    if not refined:
        return [explain, html.Pre(command),
                message("no refined space yet: it needs at least one trial with a finite metric", "info")]
    try:
        old = {key: dist.to_dict() for key, dist in reader.sweep(parent_id).space.items()}
    except Exception:
        old = {}
    header = html.Tr([html.Th(h) for h in ("setting", "scale", "searched", "next")])
    rows = [html.Tr([html.Td(html.Code(str(key))), html.Td(str(scales.get(key, ""))),
                     html.Td(_distribution_text(old.get(key))), html.Td(_distribution_text(value))])
            for key, value in refined.items()]
    return [explain, html.Pre(command), html.Table([html.Thead(header), html.Tbody(rows)], className="table")]


def _distribution_text(distribution: Any) -> str:
    """{kind: [args]} as one line: "loguniform 1e-05 .. 0.1", "grid relu, tanh"."""
    if not isinstance(distribution, Mapping) or len(distribution) != 1:
        return "" if distribution is None else json.dumps(distribution, default=str)
    (kind, values), = distribution.items()
    values = list(values) if isinstance(values, (list, tuple)) else [values]
    text = [json.dumps(v, default=str) if isinstance(v, (dict, list)) else f"{v:.4g}" if isinstance(v, float)
            else str(v) for v in values]
    if kind in ("loguniform", "loguniform_one_minus", "uniform", "randint") and len(text) == 2:
        return f"{kind} {text[0]} .. {text[1]}"
    return f"{kind} {', '.join(text)}"

"""One run: its train and dev curves (smoothed with the course's bias-corrected EMA), the bias/variance reading
with the basic recipe's next steps and the runs that already tried them, its health flags, and links to its
other pages. A run in progress shows its curves so far and is re-read on the live refresh."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import numpy as np
import pandas as pd
from dash import dcc, html

from analysis.bias_variance import pct, points
from analysis.diagnosis import Finding, recipe_waits
from analysis.health import Flag
from analysis.report import reading, run_report
from analysis.thresholds import DEFAULT
from dashboard import ids
from dashboard.cache import CachedReader
from dashboard.components import control, message, mlflow_link, run_link, section, verdict_badge
from dashboard.figures.curves import CURVE_KEYS, learning_curves, smoothing_beta
from tracking.layout import DIVERGED_TAG, ERROR_TAG, STOPPED_TAG, SWEEP_TAG
from tracking.reader import DataError, runs_frame

if TYPE_CHECKING:  # annotations only: MLflow is read and written through tracking.reader and tracking.writer
    from mlflow.entities import Run

PATH = "/run/<run_id>"
TITLE = "Run"
DEFAULT_BETA = 0.6  # smooths epoch-level noise without hiding where the dev curve turns
SEVERITY_COLORS = {"error": "#cf222e", "warning": "#9a6700"}  # still holding at the end / recovered
MAX_FLAG_NUMBERS = 8  # per-layer numbers shown per flag (a deep network has many layers)


def controls(reader: CachedReader, run_id: str, **_: str) -> Any:
    """The run's name and the curves' smoothing slider ("smoothing": the EMA's beta in [0, 0.99])."""
    run = reader.run(run_id)
    return html.Div([
        html.H1(f"Run {run.info.run_name or run_id}"),
        html.Label(["smoothing (beta of the exponentially weighted average; 0 = raw, 0.9 averages about "
                    "10 points)",
                    dcc.Slider(id=control("smoothing"), min=0.0, max=0.99, step=0.01, value=DEFAULT_BETA,
                               marks={0: "0 (raw)", 0.6: "0.6", 0.9: "0.9", 0.99: "0.99"},
                               tooltip={"placement": "bottom"})],
                   className="control"),
    ], className="controls")


def content(reader: CachedReader, args: dict[str, str], values: dict[str, Any]) -> Any:
    """Links, status notices, the curves, the bias/variance panel and the health flags of the run."""
    run_id = args["run_id"]
    run = reader.run(run_id)
    beta = smoothing_beta(values.get("smoothing"), DEFAULT_BETA)
    history = reader.history(run_id, CURVE_KEYS)
    flags = _flags(reader, run)
    findings = _findings(reader, run)
    report = run_report(runs_frame([run]).iloc[0].to_dict(), reader.siblings(run), flags or [], DEFAULT,
                        findings or [])
    return html.Div([
        links(reader, run),
        *notices(run, history),
        section("Diagnosis", *diagnosis_panel(run_id, report["findings"], findings is None)),
        section("Train and dev curves", dcc.Graph(id=ids.CURVES, figure=learning_curves(history, beta))),
        section("Bias and variance", *bias_variance_panel(report)),
        section("Health flags", *health_panel(flags, run.info.status == "RUNNING")),
    ])


def links(reader: CachedReader, run: Run) -> html.P:
    """The run's other pages: MLflow UI, layers, gradient check (when it has one), its sweep (for a trial)."""
    run_id = run.info.run_id
    parts: list[Any] = [f"status {run.info.status} · run id ", html.Code(run_id), " · ",
                        mlflow_link(reader.uri, run.info.experiment_id, run_id), " · ",
                        run_link(run_id, "layers", "layers")]
    try:
        has_gradcheck = reader.gradcheck(run_id) is not None
    except DataError:
        has_gradcheck = True  # a report that cannot be read: its page says why
    if has_gradcheck:
        parts += [" · ", run_link(run_id, "gradient check", "gradcheck")]
    parent = run.data.tags.get(SWEEP_TAG)
    if parent:
        try:
            name = reader.run(parent).info.run_name
        except DataError:  # a trial whose parent run was deleted: the link says so when followed
            name = None
        parts += [" · trial of the sweep ", run_link(parent, name, "sweep")]
    return html.P(parts)


def notices(run: Run, history: pd.DataFrame) -> list[html.Div]:
    """What the curves and numbers cannot say: no metrics yet, non-finite values, a failure, early stopping."""
    tags, found = run.data.tags, []
    running = run.info.status == "RUNNING"
    if history.empty:
        found.append(message(
            "no train/dev curves yet: the run is in progress, they appear after its first epoch" if running
            else "the run recorded no train or dev loss or error (it ended before its first epoch, or is no "
                 "training run)", "info" if running else "warning"))
    elif running:
        found.append(message("the run is in progress: the curves so far, refreshed live", "info"))
    for key, rows in history.groupby("key", sort=True):
        values = pd.to_numeric(rows["value"], errors="coerce").to_numpy(dtype=np.float64)
        bad = ~np.isfinite(values)
        if bad.any():
            step = int(rows["step"].to_numpy()[bad.argmax()])
            found.append(message(f"{key} is not finite (NaN or infinite) from step {step} on: the curve has a "
                                 "gap there", "warning"))
    if tags.get(DIVERGED_TAG):
        found.append(message(f"the run diverged: {tags[DIVERGED_TAG]}", "error"))
    if tags.get(ERROR_TAG):
        found.append(message(f"the run failed: {tags[ERROR_TAG]}", "error"))
    if tags.get(STOPPED_TAG):
        found.append(message(f"stopped early by the sweep's scheduler: {tags[STOPPED_TAG]}", "info"))
    return found


def diagnosis_panel(run_id: str, findings: Sequence[Mapping[str, Any]], failed: bool = False) -> list[Any]:
    """The findings of `analysis.diagnosis`, most important first, cause first: what it is, the evidence (each
    piece at a layer and step linked to the layers view there), what to change and the runs that already did."""
    if failed:
        return [message("the diagnosis could not be computed from this run's curves and diagnostics", "warning")]
    if not findings:
        return [html.P("no finding: the run has no finite errors or diagnostics to read yet")]
    items = []
    for rank, finding in enumerate(findings, 1):
        evidence = [html.Li([item["text"], *_layers_link(run_id, item)]) for item in finding["evidence"]]
        actions = [html.Li(html.Code(action["text"])) for action in finding["actions"]]
        tried = [html.Li([run_link(t["run_id"]), ": ", t["text"]]) for t in finding["tried"]]
        items.append(html.Li([
            html.Span(finding["severity"], className="badge",
                      style={"background": SEVERITY_COLORS.get(finding["severity"], "#6e7781")}),
            " ", html.Strong(finding["title"]), html.Span(f" ({finding['cause']})", className="muted"),
            html.P(finding["summary"]),
            html.Div([html.Span("evidence", className="muted"), html.Ul(evidence)]) if evidence else None,
            html.Div([html.Span("change", className="muted"), html.Ul(actions)]) if actions else None,
            html.Div([html.Span("tried beside it", className="muted"), html.Ul(tried)]) if tried else None,
        ], className="finding", **{"data-cause": finding["cause"], "data-rank": str(rank)}))
    return [html.Ol(items, className="findings")]


def _layers_link(run_id: str, evidence: Mapping[str, Any]) -> list[Any]:
    """ · at layer L, step S: a link to the layers view there, for evidence that names a layer or a step."""
    if evidence.get("layer") is None and evidence.get("step") is None:
        return []
    query = {"kind": evidence.get("kind"), "layer": evidence.get("layer"), "at": evidence.get("step")}
    text = " ".join(f"{name} {value}" for name, value in (("layer", evidence.get("layer")),
                                                          ("step", evidence.get("step"))) if value is not None)
    href = f"/layers/{run_id}?" + urlencode({k: v for k, v in query.items() if v is not None})
    return [" · ", dcc.Link(f"see {text} in the layers view", href=href)]


def bias_variance_panel(report: Mapping[str, Any]) -> list[Any]:
    """Train, dev and reference error, avoidable bias and variance, the verdict, and the recipe's steps in order,
    each with the runs beside this one (its sweep's trials, or its experiment's runs) that already tried it: the
    run's `analysis.report.run_report`."""
    if report.get("verdict") is None:
        return [message(f"no bias/variance verdict: {report.get('note', 'the run has no finite errors')}", "info")]
    numbers = html.Table(html.Tbody([
        html.Tr([html.Th(name), html.Td(text)]) for name, text in (
            ("train error", pct(report["train_error"])),
            ("dev error", pct(report["dev_error"])),
            ("reference (human / Bayes) error", pct(report["reference_error"])),
            ("avoidable bias (train - reference)", points(report["avoidable_bias"])),
            ("variance (dev - train)", points(report["variance"])),
            ("test error (measured once, at the end)", pct(report.get("test_error"))),
        )
    ]), className="table")
    parts: list[Any] = [html.P([verdict_badge(report["verdict"]), " ", reading(report)]), numbers]
    steps = []
    for step in report["recommendations"]:
        tried = [html.Li([run_link(e["run_id"]), ": ", e["text"]]) for e in step["evidence"]]
        steps.append(html.Li([html.Span(f"[{step['problem'].replace('_', ' ')}] "), step["text"],
                              html.Ul(tried) if tried else html.Span(" (no run beside this one tried it yet)",
                                                                      className="muted")]))
    if steps:
        parts += [html.H3("The basic recipe, in order"), *_recipe_waits(report),
                  html.Ol(steps)]
    else:
        parts.append(html.P("Low bias and low variance: the recipe has no next step for this run."))
    return parts


def _recipe_waits(report: Mapping[str, Any]) -> list[Any]:
    waits = recipe_waits(report.get("findings") or [])
    return [message(waits, "warning")] if waits else []


def health_panel(flags: Sequence[Flag] | None, running: bool = False) -> list[Any]:
    """The run's health flags (None: they could not be computed): severity, name, layer, steps, explanation,
    action and the numbers behind it."""
    if flags is None:
        return [message("the health flags could not be computed from this run's diagnostics", "warning")]
    if not flags:
        return [html.P("no health flag raised" + (" so far" if running else "")
                       + " (checked: the diagnostics recorded at every snapshot)")]
    header = html.Tr([html.Th(h) for h in ("severity", "flag", "layer", "steps", "what it means", "what to do",
                                           "numbers")])
    rows = []
    for flag in flags:
        rows.append(html.Tr([
            html.Td(html.Span(flag.severity, className="badge",
                              style={"background": SEVERITY_COLORS.get(flag.severity, "#6e7781")})),
            html.Td(flag.name),
            html.Td(flag.layer or "all"),
            html.Td(steps_text(flag.step, flag.last_step, flag.snapshots, flag.of_snapshots)),
            html.Td(flag.explanation),
            html.Td(flag.action),
            html.Td(numbers_text(flag.quantity, flag.values, flag.threshold, flag.extra)),
        ]))
    return [html.Table([html.Thead(header), html.Tbody(rows)], className="table")]


def steps_text(step: int | None, last_step: int | None, snapshots: int = 0, of_snapshots: int = 0) -> str:
    """Where a flag held: "step 0 to 16 (6 of 10 snapshots)", "step 4", or "-" for none."""
    if step is None:
        return "-"
    text = f"step {step}" + (f" to {last_step}" if last_step not in (None, step) else "")
    return text + (f" ({snapshots} of {of_snapshots} snapshots)" if of_snapshots else "")


def numbers_text(quantity: str, values: Mapping[str, float], threshold: float | None = None,
                 extra: Mapping[str, float] | None = None) -> str:
    """The numbers behind a flag: its quantity per layer (at most MAX_FLAG_NUMBERS), threshold, extras."""
    shown = [f"{layer} {_g(v)}" for layer, v in list(values.items())[:MAX_FLAG_NUMBERS]]
    if len(values) > MAX_FLAG_NUMBERS:
        shown.append(f"... ({len(values) - MAX_FLAG_NUMBERS} more)")
    text = f"{quantity}: {', '.join(shown)}" if shown else quantity
    if threshold is not None:
        text += f"; threshold {_g(threshold)}"
    for name, value in (extra or {}).items():
        text += f"; {name.replace('_', ' ')} {_g(value)}"
    return text


def _g(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


def _findings(reader: CachedReader, run: Run) -> list[Finding] | None:
    """The run's diagnosis, once per state of the run; None when it cannot be computed."""
    try:
        return reader.findings(run)
    except Exception:  # unreadable diagnostics must not take the curves and the verdict down with them
        return None


def _flags(reader: CachedReader, run: Run) -> list[Flag] | None:
    """The run's health flags, computed once per state of the run; None when its diagnostics cannot be read."""
    try:
        return reader.flags(run)
    except Exception:  # unreadable diagnostics must not take the curves and the verdict down with them
        return None


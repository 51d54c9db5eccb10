"""Gathering a diagnosis from the store: read a run (or a sweep and its trials) with `tracking.reader`, hand the
frames to the pure functions of `analysis`. What `fitlens report RUN_ID` prints, what the dashboard shows, what a
finished sweep keeps for the dashboard, and the next sweep of `fitlens sweep refine`."""

from __future__ import annotations

import dataclasses
import json
import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd

from analysis.diagnosis import DIAGNOSIS_STATS, RunEvidence, diagnose_run
from analysis.health import health_flags
from analysis.ranges import best_points, refined_space
from analysis.report import run_report, sweep_report
from analysis.thresholds import DEFAULT, Thresholds
from lightning_modules.config import ConfigError
from tracking import reader
from tracking.layout import (
    CAUSES_TAG,
    DIVERGED_TAG,
    KEPT_FILE,
    KIND_GRADCHECK,
    KIND_SWEEP,
    KIND_TAG,
    POINT_TAG,
    SWEEP_TAG,
)
from tracking.store import quiet_libraries
from tracking.sweep_config import SweepConfig
from tracking.writer import log_json, set_tags

if TYPE_CHECKING:  # annotations only: MLflow is read and written through tracking.reader and tracking.writer
    from mlflow.entities import Run
    from mlflow.tracking import MlflowClient

REFINE_TOP = 3  # as `fitlens sweep refine`'s default --top
KEPT_VERSION = 3  # of what a finished sweep keeps for the dashboard: bump when runs_frame or the sweep report change


# The per-epoch curves the diagnosis reads.
CURVE_KEYS = ("train/loss", "train/cost", "train/error", "dev/error", "dev/loss", "lr")


def gather_report(run_id: str, uri: str | None = None, thresholds: Thresholds = DEFAULT) -> dict[str, Any]:
    """The report of `run_id`: a sweep's parent run gets the sweep report, any other run the run report. Every
    run (a sweep's every trial) is diagnosed on its curves and on its diagnostics at every snapshot."""
    client = reader.open_client(uri)
    run = reader.get_run(client, run_id)
    if reader.is_sweep(run):
        return gather_sweep_report(client, run, reader.trial_runs(client, run), thresholds)
    siblings = reader.runs_frame(reader.sibling_runs(client, run))
    row = reader.runs_frame([run]).iloc[0].to_dict()
    evidence = gather_evidence(client, run, row, siblings, thresholds)
    return run_report(row, siblings, evidence.flags, thresholds, diagnose_run(evidence, thresholds))


def gather_evidence(client: MlflowClient, run: Run, row: Mapping[str, Any], siblings: pd.DataFrame,
                    thresholds: Thresholds = DEFAULT, diagnostics: pd.DataFrame | None = None,
                    curves: pd.DataFrame | None = None) -> RunEvidence:
    """Everything the diagnosis reads of one run: its per-epoch curves, its diagnostics at every snapshot (read
    here unless given), the health flags on them, the runs beside it (`siblings`, runs_frame rows) and, for a
    gradient check's run, its report."""
    if curves is None:
        curves = reader.metric_history(client, run.info.run_id, [k for k in CURVE_KEYS if k in run.data.metrics])
    if diagnostics is None:
        diagnostics = reader.diagnostics_frame(client, run, DIAGNOSIS_STATS)
    loss = curves[curves["key"] == "train/loss"]
    flags = health_flags(diagnostics, loss[["step", "value"]], run.data.tags.get(DIVERGED_TAG), thresholds)
    gradcheck = reader.gradcheck_report(client, run) if run.data.tags.get(KIND_TAG) == KIND_GRADCHECK else None
    return RunEvidence(row, curves, flags, diagnostics, siblings, gradcheck)


def gather_sweep_report(client: MlflowClient, parent: Run, runs: Sequence[Run], thresholds: Thresholds = DEFAULT,
                        trials: pd.DataFrame | None = None, sweep: SweepConfig | None = None,
                        evidence: Callable[[Run, Mapping[str, Any]], RunEvidence] | None = None) -> dict[str, Any]:
    """The report of the sweep `parent` over its trial `runs` (already read: the dashboard has them cached, with
    their `reader.runs_frame` as `trials`, the sweep it ran, and each trial's evidence cached by `evidence`)."""
    sweep = sweep or reader.sweep_config(client, parent.info.run_id)
    if trials is None:
        trials = reader.runs_frame(runs, sweep.metric)
    rows = {row["run_id"]: row for row in trials.to_dict("records")}
    if evidence is None:
        def evidence(run: Run, row: Mapping[str, Any]) -> RunEvidence:
            return gather_evidence(client, run, row, trials, thresholds)
    found = {run.info.run_id: evidence(run, rows[run.info.run_id]) for run in runs if run.info.run_id in rows}
    flags = {run_id: e.flags for run_id, e in found.items()}
    findings = {run_id: diagnose_run(e, thresholds) for run_id, e in found.items()}
    scored = [(row["metric"], row["point"]) for row in trials.to_dict("records") if not row.get("diverged")]
    try:
        refined = {key: dist.to_dict() for key, dist in
                   refined_space(sweep.space, best_points(scored, REFINE_TOP)).items()}
    except ValueError:
        refined = None  # no trial with a finite metric yet
    log_scale = [key for key, dist in sweep.space.items() if dist.kind.startswith("loguniform")]
    parent_row = {"run_id": parent.info.run_id, "run_name": parent.info.run_name, "status": parent.info.status}
    return sweep_report(parent_row, trials, flags, sweep.metric, log_scale, refined, thresholds, findings)


# ----------------------------------------------------------------------------------------------
# What a finished sweep keeps for the dashboard


def keep_sweep(uri: str | None, parent_run_id: str) -> None:
    """Keep in the FINISHED sweep's KEPT_FILE what the sweep page shows of it and takes a second or more to compute
    for hundreds of trials (parsing every param, each trial's diagnosis, the importance forest): its trials as
    `reader.runs_frame` rows and its report (default thresholds), which is `fitlens report`'s.
    `fitlens sweep` calls it once the sweep has finished and written its trials file; `kept_part` reads it
    back, while the sweep has the finish that file belongs to. Its trials counted by primary cause go in
    CAUSES_TAG, which the home page reads with the sweeps themselves (`reader.sweep_causes`)."""
    client = reader.open_client(uri)
    parent = reader.get_run(client, parent_run_id)
    runs = reader.trial_runs(client, parent)
    sweep = reader.sweep_config(client, parent_run_id)
    trials = reader.runs_frame(runs, sweep.metric)
    report = gather_sweep_report(client, parent, runs, trials=trials, sweep=sweep)
    doc = {"version": KEPT_VERSION, "thresholds": dataclasses.asdict(DEFAULT), "trials": trials.to_dict("records"),
           "report": report}
    log_json(client, parent_run_id, doc, KEPT_FILE)
    counts = Counter(trial.get("primary_cause") or "none" for trial in report["trials"])
    set_tags(client, parent_run_id, {CAUSES_TAG: json.dumps({"end_time": parent.info.end_time,
                                                             "counts": dict(counts.most_common())})})


def kept_part(kept: Any, part: str) -> Any:
    """`part` ("trials", the `runs_frame` rows, or "report") of what a finished sweep kept for the dashboard
    (`keep_sweep`), when it was kept by this KEPT_VERSION with the default thresholds; else None (the reader
    computes it)."""
    if not isinstance(kept, dict) or kept.get("version") != KEPT_VERSION \
            or kept.get("thresholds") != dataclasses.asdict(DEFAULT):
        return None
    return kept.get(part) if isinstance(kept.get(part), (list, dict)) else None


# ----------------------------------------------------------------------------------------------
# Coarse to fine: `fitlens sweep refine`


def refine(parent_run_id: str, top: int = REFINE_TOP, uri: str | None = None, margin: float = 0.25) -> SweepConfig:
    """The next sweep of coarse-to-fine search: the sweep of `parent_run_id` with every numeric range narrowed
    around its best `top` trials (on the scale the space used), categorical ones cut to the values they had."""
    quiet_libraries()
    if top < 1:
        raise ConfigError(f"--top = {top}: expected a number of trials >= 1")
    client = reader.open_client(uri)
    try:
        parent = reader.get_run(client, parent_run_id)
    except ConfigError:
        raise ConfigError(f"SWEEP_RUN_ID = {parent_run_id!r}: no such run in {client.tracking_uri}") from None
    if parent.data.tags.get(KIND_TAG) != KIND_SWEEP:
        raise ConfigError(f"SWEEP_RUN_ID = {parent_run_id!r} is not a sweep's parent run (a parent has the tag "
                          f"{KIND_TAG} = {KIND_SWEEP}; a trial's run names its parent in {SWEEP_TAG})")
    sweep = reader.sweep_config(client, parent_run_id)
    scored: list[tuple[float, dict[str, Any]]] = []
    for run in reader.trial_runs(client, parent):
        value = run.data.metrics.get(f"best/{sweep.metric}", run.data.metrics.get(sweep.metric))
        if value is not None and math.isfinite(value) and POINT_TAG in run.data.tags \
                and DIVERGED_TAG not in run.data.tags:
            scored.append((value, json.loads(run.data.tags[POINT_TAG])))
    if not scored:
        raise ConfigError(f"SWEEP_RUN_ID = {parent_run_id!r}: none of its trials has a finite {sweep.metric} to "
                          f"refine around")
    space = refined_space(sweep.space, best_points(scored, top), margin)
    return dataclasses.replace(sweep, space=space)

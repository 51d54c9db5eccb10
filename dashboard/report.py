"""Gathering a report: read a run (or a sweep and its trials) with `dashboard.data`, hand the frames to the
pure `dashboard.analysis.report`. What `fitlens report RUN_ID` prints, and what the dashboard shows."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import pandas as pd
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from dashboard import data
from dashboard.analysis.health import Flag, health_flags
from dashboard.analysis.ranges import best_points, refined_space
from dashboard.analysis.report import run_report, sweep_report
from dashboard.analysis.thresholds import DEFAULT, Thresholds
from tracking.layout import DIVERGED_TAG
from tracking.sweep_config import SweepConfig

REFINE_TOP = 3  # as `fitlens sweep refine`'s default --top


def build_report(run_id: str, uri: str | None = None, thresholds: Thresholds = DEFAULT,
                 every_snapshot: bool = True) -> dict[str, Any]:
    """The report of `run_id`: a sweep's parent run gets the sweep report, any other run the run report.

    A sweep's trials are flagged on every snapshot of their diagnostics (a query per statistic and trial),
    or with `every_snapshot=False` on their last snapshot only, read with the trials themselves: what the
    dashboard's table of hundreds of trials affords (a run's own page has every snapshot)."""
    client = data.open_client(uri)
    run = data.get_run(client, run_id)
    if data.is_sweep(run):
        return sweep_of(client, run, data.sweep_runs(client, run), thresholds, every_snapshot)
    siblings = data.runs_frame(data.sibling_runs(client, run))
    row = data.runs_frame([run]).iloc[0].to_dict()
    return run_report(row, siblings, run_flags(client, run, thresholds), thresholds)


def run_flags(client: MlflowClient, run: Run, thresholds: Thresholds = DEFAULT,
              diagnostics: pd.DataFrame | None = None) -> list[Flag]:
    """The health flags of one run, from its diagnostics (`data.diagnostics_frame`, read here unless given) and
    its training loss per epoch."""
    loss = data.metric_history(client, run.info.run_id, ["train/loss"])
    return health_flags(data.diagnostics_frame(client, run) if diagnostics is None else diagnostics,
                        loss[["step", "value"]], run.data.tags.get(DIVERGED_TAG), thresholds)


def page_flags(reader: data.Reader, run: Run) -> list[Flag]:
    """The run's health flags as its pages show them: from the diagnostics the reader has for the pages' figures,
    computed once per state of the run."""
    return reader.cached("run_flags", reader.key(run), lambda: run_flags(
        reader.client, run, diagnostics=reader.diagnostics(run.info.run_id, data.HEALTH_STATS)))


def sweep_of(client: MlflowClient, parent: Run, trial_runs: Sequence[Run], thresholds: Thresholds = DEFAULT,
             every_snapshot: bool = True, trials: pd.DataFrame | None = None,
             sweep: SweepConfig | None = None) -> dict[str, Any]:
    """The report of the sweep `parent` over its `trial_runs` (already read: the dashboard has them cached, with
    their `data.runs_frame` as `trials` and the sweep it ran)."""
    sweep = sweep or data.sweep_config(client, parent.info.run_id)
    if trials is None:
        trials = data.runs_frame(trial_runs, sweep.metric)
    flags = {run.info.run_id: run_flags(client, run, thresholds) if every_snapshot else
             health_flags(data.latest_diagnostics(run), None, run.data.tags.get(DIVERGED_TAG), thresholds)
             for run in trial_runs}
    scored = [(row["metric"], row["point"]) for row in trials.to_dict("records") if not row.get("diverged")]
    try:
        refined = {key: dist.to_dict() for key, dist in
                   refined_space(sweep.space, best_points(scored, REFINE_TOP)).items()}
    except ValueError:
        refined = None  # no trial with a finite metric yet
    log_scale = [key for key, dist in sweep.space.items() if dist.kind.startswith("loguniform")]
    parent_row = {"run_id": parent.info.run_id, "run_name": parent.info.run_name, "status": parent.info.status}
    return sweep_report(parent_row, trials, flags, sweep.metric, log_scale, refined, thresholds)


def keep_sweep(client: MlflowClient, parent: Run, trial_runs: Sequence[Run]) -> dict[str, Any]:
    """What the sweep page shows of the finished sweep `parent` and takes a second or more to compute for hundreds
    of trials (parsing every param, the flags, the importance forest): its trials as `data.runs_frame` rows and its
    report (flags on each trial's last snapshot, default thresholds). `fitlens sweep` keeps it in the sweep's
    trials file as the sweep finishes; `data.Reader.kept` reads it back."""
    sweep = data.sweep_config(client, parent.info.run_id)
    trials = data.runs_frame(trial_runs, sweep.metric)
    return {"version": data.KEPT_VERSION, "thresholds": dataclasses.asdict(DEFAULT),
            "trials": trials.to_dict("records"),
            "report": sweep_of(client, parent, trial_runs, every_snapshot=False, trials=trials, sweep=sweep)}

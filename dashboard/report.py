"""Gathering a report: read a run (or a sweep and its trials) with `dashboard.data`, hand the frames to the
pure `dashboard.analysis.report`. What `fitlens report RUN_ID` prints, and what the dashboard shows."""

from __future__ import annotations

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


def run_flags(client: MlflowClient, run: Run, thresholds: Thresholds = DEFAULT) -> list[Flag]:
    """The health flags of one run, from its diagnostics and its training loss per epoch."""
    loss = data.metric_history(client, run.info.run_id, ["train/loss"])
    return health_flags(data.diagnostics_frame(client, run), loss[["step", "value"]],
                        run.data.tags.get(DIVERGED_TAG), thresholds)


def sweep_of(client: MlflowClient, parent: Run, trial_runs: Sequence[Run], thresholds: Thresholds = DEFAULT,
             every_snapshot: bool = True, trials: pd.DataFrame | None = None) -> dict[str, Any]:
    """The report of the sweep `parent` over its `trial_runs` (already read: the dashboard has them cached, and
    their `data.runs_frame` as `trials`)."""
    sweep = data.sweep_config(client, parent.info.run_id)
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

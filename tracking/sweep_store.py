"""Sweeps read back from the store: the sweep a parent run ran, the unfinished one to resume, and the
coarse-to-fine narrowing of `fitlens sweep refine`. Only MLflow and the sweep file: no Ray, no torch,
so these commands answer (or refuse bad input) at once."""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml
from mlflow.entities import Metric, Param, Run, RunData, RunInfo, RunTag
from mlflow.tracking import MlflowClient

from dashboard.analysis.ranges import best_points, refined_space
from lightning_modules.config import ConfigError
from tracking.layout import (
    DIVERGED_TAG,
    KEPT_FILE,
    POINT_TAG,
    SEARCH_SPACE_FILE,
    SWEEP_KIND_TAG,
    SWEEP_TAG,
    TRIALS_FILE,
    TRIALS_TAG,
)
from tracking.store import client_for, latest_metrics, quiet_libraries, retrying, tracking_uri
from tracking.sweep_config import SweepConfig, sweep_from_dict


def unfinished_sweep(uri: str | None = None) -> SweepConfig:
    """The sweep of the most recent unfinished parent run in the store (`fitlens sweep --resume`)."""
    client = client_for(tracking_uri(uri))
    runs = retrying(client.search_runs, [e.experiment_id for e in client.search_experiments()], max_results=1,
                    order_by=["attributes.start_time DESC"],
                    filter_string=f"tags.`{SWEEP_KIND_TAG}` = 'sweep' and attributes.status != 'FINISHED'")
    if not runs:
        raise ConfigError(f"--resume: no unfinished sweep in {client.tracking_uri}; start one with "
                          f"fitlens sweep --study NAME")
    return sweep_of(client, runs[0].info.run_id)


def sweep_of(client: MlflowClient, parent_run_id: str) -> SweepConfig:
    """The sweep a parent run ran, as it ran it (its search_space.yaml artifact)."""
    with tempfile.TemporaryDirectory(prefix="fitlens-sweep-") as tmp:
        text = Path(retrying(client.download_artifacts, parent_run_id, SEARCH_SPACE_FILE, tmp)).read_text()
    return sweep_from_dict(yaml.safe_load(text))


def refine(parent_run_id: str, top: int = 3, uri: str | None = None, margin: float = 0.25) -> SweepConfig:
    """The next sweep of coarse-to-fine search: the sweep of `parent_run_id` with every numeric range narrowed
    around its best `top` trials (on the scale the space used), categorical ones cut to the values they had."""
    quiet_libraries()
    if top < 1:
        raise ConfigError(f"--top = {top}: expected a number of trials >= 1")
    client = client_for(tracking_uri(uri))
    try:
        parent = client.get_run(parent_run_id)
    except Exception:
        raise ConfigError(f"SWEEP_RUN_ID = {parent_run_id!r}: no such run in {client.tracking_uri}") from None
    if parent.data.tags.get(SWEEP_KIND_TAG) != "sweep":
        raise ConfigError(f"SWEEP_RUN_ID = {parent_run_id!r} is not a sweep's parent run (a parent has the tag "
                          f"fitlens.kind = sweep; a trial's run names its parent in {SWEEP_TAG})")
    sweep = sweep_of(client, parent_run_id)
    scored: list[tuple[float, dict[str, Any]]] = []
    for run in trial_runs(client, parent):
        value = run.data.metrics.get(f"best/{sweep.metric}", run.data.metrics.get(sweep.metric))
        if value is not None and math.isfinite(value) and POINT_TAG in run.data.tags \
                and DIVERGED_TAG not in run.data.tags:
            scored.append((value, json.loads(run.data.tags[POINT_TAG])))
    if not scored:
        raise ConfigError(f"SWEEP_RUN_ID = {parent_run_id!r}: none of its trials has a finite {sweep.metric} to "
                          f"refine around")
    space = refined_space(sweep.space, best_points(scored, top), margin)
    return dataclasses.replace(sweep, space=space)


# ----------------------------------------------------------------------------------------------
# A finished sweep's trials in one file: MLflow's search_runs rebuilds every run from its rows (~4 ms a run
# here, 2 s for 500 trials), which a dashboard opening a large sweep would pay on every start.

MAX_TRIALS = 5000
RUN_INFO_FIELDS = ("run_id", "experiment_id", "user_id", "status", "start_time", "end_time", "lifecycle_stage",
                   "artifact_uri", "run_name")


def search_trials(client: MlflowClient, parent: Run) -> list[Run]:
    """The trial runs of the sweep `parent`, oldest first, as the store holds them now."""
    return retrying(client.search_runs, [parent.info.experiment_id], max_results=MAX_TRIALS,
                    filter_string=f"tags.`{SWEEP_TAG}` = '{parent.info.run_id}'",
                    order_by=["attributes.start_time ASC"])


def trial_runs(client: MlflowClient, parent: Run) -> list[Run]:
    """The trial runs of the sweep `parent`, oldest first: from its trials file when the sweep finished and
    wrote one for that finish, else searched."""
    doc = finished_file(client, parent, TRIALS_FILE)
    if doc is not None:
        try:
            return [_run_from_doc(run) for run in doc["runs"]]
        except Exception:  # written by another version: the store has the runs themselves
            pass
    return search_trials(client, parent)


def finished_file(client: MlflowClient, parent: Run, name: str) -> dict[str, Any] | None:
    """The file `name` (TRIALS_FILE, KEPT_FILE) that the sweep `parent` wrote as it finished (`write_trials`),
    while the sweep has that finish (a resumed sweep ends anew); else None."""
    if parent.info.status == "FINISHED" and parent.data.tags.get(TRIALS_TAG) == str(parent.info.end_time):
        try:
            with tempfile.TemporaryDirectory(prefix="fitlens-trials-") as tmp:
                path = retrying(client.download_artifacts, parent.info.run_id, name, tmp)
                doc = json.loads(Path(path).read_text())
            return doc if isinstance(doc, dict) else None
        except Exception:  # removed, or not JSON: the store has the runs themselves
            pass
    return None


def write_trials(client: MlflowClient, parent_run_id: str) -> None:
    """Keep the trial runs of the FINISHED sweep `parent_run_id` in its TRIALS_FILE and what the dashboard shows of
    them in its KEPT_FILE, tagged with the sweep's end time: a reader trusts the files only while the parent has
    that end time (a resumed sweep ends anew)."""
    from dashboard.report import keep_sweep  # the dashboard's reading of the sweep (it imports this module)

    parent = retrying(client.get_run, parent_run_id)
    runs = search_trials(client, parent)
    files = {TRIALS_FILE: {"version": 1, "runs": [_run_doc(run) for run in runs]}}
    try:
        files[KEPT_FILE] = keep_sweep(client, parent, runs)
    except Exception as err:  # the runs alone still spare readers the search; the dashboard computes the rest
        print(f"fitlens sweep: the dashboard's reading of the sweep was not kept ({type(err).__name__}: {err})",
              file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="fitlens-trials-") as tmp:
        for name, doc in files.items():
            path = Path(tmp) / name
            path.write_text(json.dumps(doc))
            retrying(client.log_artifact, parent_run_id, str(path))
    retrying(client.set_tag, parent_run_id, TRIALS_TAG, str(parent.info.end_time))


def _run_doc(run: Run) -> dict[str, Any]:
    return {"info": {field: getattr(run.info, field) for field in RUN_INFO_FIELDS},
            "params": run.data.params, "tags": run.data.tags,
            "metrics": [[m.key, m.value, m.timestamp, m.step] for m in latest_metrics(run)]}


def _run_from_doc(doc: dict[str, Any]) -> Run:
    data = RunData(metrics=[Metric(*m) for m in doc["metrics"]],
                   params=[Param(k, v) for k, v in doc["params"].items()],
                   tags=[RunTag(k, v) for k, v in doc["tags"].items()])
    return Run(RunInfo(**doc["info"]), data)

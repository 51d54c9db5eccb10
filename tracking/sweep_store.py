"""Sweeps read back from the store: the sweep a parent run ran, the unfinished one to resume, and the
coarse-to-fine narrowing of `fitlens sweep refine`. Only MLflow and the sweep file: no Ray, no torch,
so these commands answer (or refuse bad input) at once."""

from __future__ import annotations

import dataclasses
import json
import math
import tempfile
from pathlib import Path
from typing import Any

import yaml
from mlflow.tracking import MlflowClient

from dashboard.analysis.ranges import best_points, refined_space
from lightning_modules.config import ConfigError
from tracking.layout import DIVERGED_TAG, POINT_TAG, SEARCH_SPACE_FILE, SWEEP_KIND_TAG, SWEEP_TAG
from tracking.store import client_for, quiet_libraries, retrying, tracking_uri
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
    for run in retrying(client.search_runs, [parent.info.experiment_id], max_results=5000,
                        filter_string=f"tags.`{SWEEP_TAG}` = '{parent_run_id}'"):
        value = run.data.metrics.get(f"best/{sweep.metric}", run.data.metrics.get(sweep.metric))
        if value is not None and math.isfinite(value) and POINT_TAG in run.data.tags \
                and DIVERGED_TAG not in run.data.tags:
            scored.append((value, json.loads(run.data.tags[POINT_TAG])))
    if not scored:
        raise ConfigError(f"SWEEP_RUN_ID = {parent_run_id!r}: none of its trials has a finite {sweep.metric} to "
                          f"refine around")
    space = refined_space(sweep.space, best_points(scored, top), margin)
    return dataclasses.replace(sweep, space=space)

"""The one module that reads MLflow: runs, sweeps and diagnostics as pandas frames for `dashboard.analysis`.

Everything else in the dashboard (and `fitlens report`) works on what these functions return. The run
layout they read is the one `tracking` writes (DESIGN.md, `tracking.layout`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pandas as pd
import yaml
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from lightning_modules.config import ConfigError
from tracking.layout import (
    DIVERGED_TAG,
    ERROR_TAG,
    M_TRAIN_TAG,
    POINT_TAG,
    STOPPED_TAG,
    SWEEP_KIND_TAG,
    SWEEP_TAG,
    parse_diag_key,
)
from tracking.store import client_for, retrying, tracking_uri
from tracking.sweep_config import SweepConfig
from tracking.sweep_store import sweep_of

RUN_COLUMNS = ("run_id", "run_name", "status", "train_error", "dev_error", "test_error", "metric", "reference_error",
               "m_train", "epochs", "weight_norm", "point", "diverged", "stopped_early", "error")
# The diagnostics statistics the health flags read (fetching every key's history would cost a query each).
HEALTH_STATS = ("norm", "std", "nonfinite", "frac_dead", "frac_saturated", "symmetry", "update_ratio")
MAX_RUNS = 5000


def open_client(uri: str | None = None) -> MlflowClient:
    """A client of the store `uri` (default: MLFLOW_TRACKING_URI, else the embedded ./mlflow.db)."""
    return client_for(tracking_uri(uri))


def get_run(client: MlflowClient, run_id: str) -> Run:
    """The run `run_id`; a ConfigError naming it when the store has no such run."""
    try:
        return retrying(client.get_run, run_id)
    except Exception:
        raise ConfigError(f"RUN_ID = {run_id!r}: no such run in {client.tracking_uri}") from None


def is_sweep(run: Run) -> bool:
    """Whether `run` is a sweep's parent run."""
    return run.data.tags.get(SWEEP_KIND_TAG) == "sweep"


def sweep_runs(client: MlflowClient, parent: Run) -> list[Run]:
    """The trial runs of a sweep's parent run, oldest first."""
    return retrying(client.search_runs, [parent.info.experiment_id], max_results=MAX_RUNS,
                    filter_string=f"tags.`{SWEEP_TAG}` = '{parent.info.run_id}'",
                    order_by=["attributes.start_time ASC"])


def sibling_runs(client: MlflowClient, run: Run) -> list[Run]:
    """The runs a run is compared with: its sweep's trials, or else every run of its experiment that is not a
    sweep's parent."""
    parent = run.data.tags.get(SWEEP_TAG)
    if parent is not None:
        return sweep_runs(client, get_run(client, parent))
    runs = retrying(client.search_runs, [run.info.experiment_id], max_results=MAX_RUNS,
                    order_by=["attributes.start_time ASC"])
    return [r for r in runs if not is_sweep(r)]


def parse_param(text: str) -> Any:
    """A param as logged (str(value)) back to its value: numbers, booleans, lists; otherwise the text."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return value if isinstance(value, (int, float, bool, list)) or value is None else text


def sweep_config(client: MlflowClient, parent_run_id: str) -> SweepConfig:
    """The sweep a parent run ran (its search_space.yaml)."""
    return sweep_of(client, parent_run_id)


def runs_frame(runs: Iterable[Run], metric: str = "dev/error") -> pd.DataFrame:
    """One row per run: RUN_COLUMNS, then one column per param (dotted config keys, values parsed).

    train_error and dev_error are those of the kept (best-dev) weights measured without dropout
    (`best/train/error`, `best/dev/error`), else the last epoch's; reference_error is the param
    data.reference_error (resolved at fit time), else the tag fitlens.reference_error, else 0 (the seeds'
    e* ~ 0); weight_norm is sqrt(sum over layers of ||W||^2) at the last snapshot, when recorded;
    metric is `metric` of the kept weights (best/<metric>), else its last value, as a sweep ranks trials.
    """
    rows = []
    for run in runs:
        metrics, tags = run.data.metrics, run.data.tags
        params = {key: parse_param(value) for key, value in run.data.params.items()}
        reference = params.get("data.reference_error", tags.get("fitlens.reference_error"))
        weight_norms = [v for k, v in metrics.items() if (p := parse_diag_key(k)) and p[0] == "weight" and
                        p[2] == "norm"]
        row = {
            "run_id": run.info.run_id,
            "run_name": run.info.run_name,
            "status": run.info.status,
            "train_error": metrics.get("best/train/error", metrics.get("train/error", math.nan)),
            "dev_error": metrics.get("best/dev/error", metrics.get("dev/error", math.nan)),
            "test_error": metrics.get("test/error", math.nan),
            "metric": metrics.get(f"best/{metric}", metrics.get(metric, math.nan)),
            "reference_error": _float(reference, 0.0),
            "m_train": _float(tags.get(M_TRAIN_TAG), math.nan),
            "epochs": metrics.get("epoch", math.nan),
            "weight_norm": math.sqrt(sum(v * v for v in weight_norms)) if weight_norms else math.nan,
            "point": json.loads(tags[POINT_TAG]) if POINT_TAG in tags else {},
            "diverged": tags.get(DIVERGED_TAG),
            "stopped_early": tags.get(STOPPED_TAG),
            "error": tags.get(ERROR_TAG),
        }
        # a top-level config key that names a run column (run_name) is the same thing, read from the run
        rows.append(row | {key: value for key, value in params.items() if key not in row})
    return pd.DataFrame(rows, columns=None if rows else list(RUN_COLUMNS))


def _float(value: Any, default: float) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def metric_history(client: MlflowClient, run_id: str, keys: Sequence[str]) -> pd.DataFrame:
    """Every point of `keys` (the ones the run has): columns key, step, value, sorted by key and step."""
    histories = _histories(client, run_id, keys)
    rows = [(key, m.step, m.value) for key, points in histories.items() for m in points]
    return pd.DataFrame(rows, columns=["key", "step", "value"]).sort_values(["key", "step"], ignore_index=True)


def diagnostics_frame(client: MlflowClient, run: Run, stats: Sequence[str] = HEALTH_STATS) -> pd.DataFrame:
    """The run's diagnostics scalars of `stats` at every snapshot: columns step, kind, layer, stat, value."""
    keys = [k for k in run.data.metrics if (p := parse_diag_key(k)) and p[2] in stats]
    histories = _histories(client, run.info.run_id, keys)
    rows = [(m.step, *parse_diag_key(key), m.value) for key, points in histories.items() for m in points]
    frame = pd.DataFrame(rows, columns=["step", "kind", "layer", "stat", "value"])
    return frame.sort_values(["step", "kind", "layer", "stat"], ignore_index=True)


def _histories(client: MlflowClient, run_id: str, keys: Sequence[str]) -> dict[str, list]:
    # One query per key; a few threads overlap them (a remote server answers each in a round trip).
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = pool.map(lambda key: retrying(client.get_metric_history, run_id, key), keys)
        return dict(zip(keys, results, strict=True))

"""Where runs are recorded: the MLflow tracking URI, a client of its store, and retrying while it is locked."""

from __future__ import annotations

import fcntl
import logging
import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from mlflow.entities import Metric, Run
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

EMBEDDED_DB = "mlflow.db"
EMBEDDED_ARTIFACTS = "mlartifacts"
LOCKED_WAIT_S = 120.0  # how long a write waits for other processes to release the embedded store

T = TypeVar("T")


def tracking_uri(explicit: str | None = None) -> str:
    """The URI to log to: `explicit`, else MLFLOW_TRACKING_URI, else the embedded store in the current directory.

    MLflow's own default moves between releases, so fitlens always names one.
    """
    if explicit:
        return explicit
    from_env = os.environ.get("MLFLOW_TRACKING_URI")
    if from_env:
        return from_env
    return f"sqlite:///{Path.cwd() / EMBEDDED_DB}"


def is_embedded(uri: str) -> bool:
    """True for a local SQLite store (artifacts then live in a folder beside the database)."""
    return uri.startswith("sqlite:")


def embedded_folder(uri: str) -> Path:
    """The folder of an embedded store's database (its artifacts and the sweeps' state live beside it)."""
    return Path(uri.removeprefix("sqlite:///")).parent


def client_for(uri: str) -> MlflowClient:
    """An MlflowClient for `uri`. An embedded store's folder is created first (SQLite will not), and the store
    is opened under a file lock: MLflow creates a new database's tables with migrations that fail when two
    processes run them at once ("table _alembic_tmp_experiments already exists"), leaving the store broken."""
    if not is_embedded(uri):
        return MlflowClient(tracking_uri=uri)
    db_path = Path(uri.removeprefix("sqlite:///"))
    db_path.parent.mkdir(parents=True, exist_ok=True)
    with open(db_path.with_name(db_path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        client = MlflowClient(tracking_uri=uri)
        retrying(client.search_experiments, max_results=1)  # opens the store: creates or upgrades its tables
    return client


def latest_metrics(run: Run) -> list[Metric]:
    """The run's latest point of each metric, with its step: the entities the store built the run from
    (`run.data.to_proto().metrics` builds a protobuf of each first: 1 ms a run of a few hundred keys)."""
    return run.data._metric_objs


def retrying(call: Callable[..., T], *args: object, **kwargs: object) -> T:
    """call(*args, **kwargs), again while the embedded store is locked by another process.

    SQLite serializes writers: MLflow waits 20 s for the lock (busy_timeout), but a transaction that
    read before writing is refused at once when another holds the write lock (SQLite's deadlock
    rule). Concurrent trials of a sweep meet both; neither is an error worth showing a user. Every
    call retried here is idempotent (MLflow drops a metric point identical to a stored one).
    """
    deadline = time.monotonic() + LOCKED_WAIT_S
    delay = 0.05
    while True:
        try:
            return call(*args, **kwargs)
        except MlflowException as err:
            if "database is locked" not in str(err) or time.monotonic() + delay > deadline:
                raise
            time.sleep(delay)
            delay = min(2 * delay, 2.0)


def quiet_libraries() -> None:
    """Silence what would drown the summary a user reads: Lightning's banners ("GPU available: ..."),
    its advice on DataLoader workers (useless for in-memory tensors on 2 cores), its own deprecation
    notices, and MLflow's database set-up messages."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric", "mlflow"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*is smaller than the logging interval.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*is deprecated.*")

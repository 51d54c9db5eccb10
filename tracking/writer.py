"""The one MLflow writer of fitlens: buffered metric points, artifacts and params, sent off the training
thread, and a Lightning logger over it.

As MLflow's own Lightning autolog (`BatchMetricsLogger`): the writer is handed its client and run id
(no global active run), logs from rank zero only, and sends points in batches, flushing at the end.
Unlike it, the sending happens on a background thread, so a training step never waits on the store.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from lightning_utilities.core.rank_zero import rank_zero_only
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient
from pytorch_lightning.loggers.logger import Logger

MAX_METRICS_PER_BATCH = 1000  # MLflow's log_batch limit
MAX_PARAMS_PER_BATCH = 100  # likewise, for params
MAX_PARAM_LENGTH = 6000  # longer values are refused by the store

log = logging.getLogger(__name__)


class RunWriter:
    """Sends the metric points, artifacts and params of one MLflow run; metrics and artifacts asynchronously."""

    def __init__(
        self, client: MlflowClient, run_id: str, flush_every_s: float = 2.0, retry_for_s: float = 120.0
    ) -> None:
        self.client = client
        self.run_id = run_id
        # Points wait at most this long, so a live view of the run stays current.
        self.flush_every_s = flush_every_s
        # A store that is briefly away (a restarting server) is retried this long before a job is dropped.
        self.retry_for_s = retry_for_s
        self.failures: list[str] = []
        self._pending: list[Metric] = []
        self._lock = threading.Lock()
        self._last_send = time.monotonic()
        self._jobs: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._worker = threading.Thread(target=self._work, name=f"fitlens-writer-{run_id[:8]}", daemon=True)
        self._worker.start()

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        """Queue one point per metric at `step`; sent when a batch is full or `flush_every_s` has passed."""
        now_ms = int(time.time() * 1000)
        points = [Metric(key, float(value), now_ms, int(step)) for key, value in metrics.items()]
        with self._lock:
            self._pending.extend(points)
            full = len(self._pending) >= MAX_METRICS_PER_BATCH
            due = full or time.monotonic() - self._last_send >= self.flush_every_s
        if due:
            self._send_pending()

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log params now, synchronously (they are few, fixed, and wanted before training starts)."""
        items = [Param(key, _param_text(value)) for key, value in params.items()]
        for start in range(0, len(items), MAX_PARAMS_PER_BATCH):
            self.client.log_batch(self.run_id, params=items[start : start + MAX_PARAMS_PER_BATCH])

    def submit(self, job: Callable[[], None]) -> None:
        """Run `job` on the writer's thread, after everything submitted before it."""
        self._jobs.put(job)

    def log_artifact(self, local_path: Path, artifact_path: str | None = None, delete: bool = False) -> None:
        """Upload a file on the writer's thread; `delete` removes the local file once it is stored."""

        def upload() -> None:
            self.client.log_artifact(self.run_id, str(local_path), artifact_path)
            if delete:
                Path(local_path).unlink(missing_ok=True)

        self.submit(upload)

    def flush(self) -> None:
        """Send every queued point and artifact, and wait until the store has them."""
        self._send_pending()
        self._jobs.join()

    def close(self) -> None:
        """Flush and stop the writer's thread."""
        self.flush()
        self._jobs.put(None)
        self._worker.join()

    def _send_pending(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, []
            self._last_send = time.monotonic()
        for start in range(0, len(pending), MAX_METRICS_PER_BATCH):
            batch = pending[start : start + MAX_METRICS_PER_BATCH]
            self.submit(lambda batch=batch: self.client.log_batch(self.run_id, metrics=batch))

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            try:
                if job is None:
                    return
                self._run_with_retries(job)
            finally:
                self._jobs.task_done()

    def _run_with_retries(self, job: Callable[[], None]) -> None:
        deadline = time.monotonic() + self.retry_for_s
        delay = 0.5
        while True:
            try:
                job()
                return
            except Exception as err:  # the store's errors are many and varied; all are worth a retry
                if time.monotonic() + delay > deadline:
                    self.failures.append(f"{type(err).__name__}: {err}")
                    log.error("fitlens: giving up on a write to run %s: %s", self.run_id, err)
                    return
                time.sleep(delay)
                delay = min(2 * delay, 5.0)


def _param_text(value: Any) -> str:
    text = "null" if value is None else str(value)
    return text if len(text) <= MAX_PARAM_LENGTH else text[: MAX_PARAM_LENGTH - 3] + "..."


class MlflowLogger(Logger):
    """A Lightning logger that hands metrics to a `RunWriter`; params are logged by the caller, once."""

    def __init__(self, writer: RunWriter) -> None:
        super().__init__()
        self.writer = writer
        self._last_epoch_point: tuple[float, int] | None = None

    @property
    def name(self) -> str:
        return "mlflow"

    @property
    def version(self) -> str:
        return self.writer.run_id

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        """Params are the resolved run config, logged by `tracking.train`; nothing to do here."""

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        # Lightning hands over floats with "epoch" among them, once per logging call: keep one epoch point a step.
        values = {key: float(value) for key, value in metrics.items()}
        step = step or 0
        if "epoch" in values:
            if (values["epoch"], step) == self._last_epoch_point:
                del values["epoch"]
            else:
                self._last_epoch_point = (values["epoch"], step)
        self.writer.log_metrics(values, step)

    @rank_zero_only
    def finalize(self, status: str) -> None:
        self.writer.flush()

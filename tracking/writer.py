"""The one MLflow writer of fitlens: buffered metric points, batched params, and a Lightning logger over it.

As MLflow's own Lightning autolog (`BatchMetricsLogger`): the writer is handed its
client and run id (no global active run), logs from rank zero only, and sends points
in batches, flushing at the end.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from lightning_utilities.core.rank_zero import rank_zero_only
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient
from pytorch_lightning.loggers.logger import Logger

MAX_METRICS_PER_BATCH = 1000  # MLflow's log_batch limit
MAX_PARAMS_PER_BATCH = 100  # likewise, for params
MAX_PARAM_LENGTH = 6000  # longer values are refused by the store


class RunWriter:
    """Sends the metric points and params of one MLflow run in batches."""

    def __init__(self, client: MlflowClient, run_id: str, flush_every_s: float = 2.0) -> None:
        self.client = client
        self.run_id = run_id
        # Points wait at most this long, so a live view of the run stays current.
        self.flush_every_s = flush_every_s
        self._pending: list[Metric] = []
        self._last_flush = time.monotonic()

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        """Queue one point per metric at `step`; sent when a batch is full or `flush_every_s` has passed."""
        now_ms = int(time.time() * 1000)
        for key, value in metrics.items():
            self._pending.append(Metric(key=key, value=float(value), timestamp=now_ms, step=int(step)))
        if len(self._pending) >= MAX_METRICS_PER_BATCH or time.monotonic() - self._last_flush >= self.flush_every_s:
            self.flush()

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log params now (they are few and fixed for the run), in batches of MLflow's limit."""
        items = [Param(key, _param_text(value)) for key, value in params.items()]
        for start in range(0, len(items), MAX_PARAMS_PER_BATCH):
            self.client.log_batch(self.run_id, params=items[start : start + MAX_PARAMS_PER_BATCH])

    def flush(self) -> None:
        """Send every queued point."""
        while self._pending:
            batch, self._pending = self._pending[:MAX_METRICS_PER_BATCH], self._pending[MAX_METRICS_PER_BATCH:]
            self.client.log_batch(self.run_id, metrics=batch)
        self._last_flush = time.monotonic()


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

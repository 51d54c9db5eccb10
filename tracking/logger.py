"""The Lightning logger of a fit: Lightning's metrics handed to the run's `RunWriter` (no torch in the writer)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lightning_utilities.core.rank_zero import rank_zero_only
from pytorch_lightning.loggers.logger import Logger

from tracking.writer import RunWriter


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

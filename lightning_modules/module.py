"""FitModule: the LightningModule that trains any classifier `nn.Module` with the course's cost J.

    J = cross_entropy(logits, y) + lambda_2/(2m) * sum ||W||_F^2 + lambda_1/(2m) * sum |W|

Metrics, all logged once per epoch (on_step=False, on_epoch=True):

    train/loss   the data cross-entropy (no penalty), comparable with dev/loss
    train/cost   J, only when reg.l2 or reg.l1 is on
    train/error  1 - accuracy over the epoch's training examples (with dropout etc. on: a
                 training-mode error; `evaluate` gives the clean one)
    lr           the learning rate of the first param group during the epoch (at its start)
    dev/loss, dev/error      at each validation pass
    test/loss, test/error    at `trainer.test`

Errors are exact: counts of wrong predictions over counts of examples (summed over DDP ranks),
not averages of per-batch averages. Losses are batch-size-weighted means over the epoch.
"""

from __future__ import annotations

import pickle
import re
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, TypeVar

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader
from torchmetrics import Metric  # a dependency of pytorch-lightning itself

from lightning_modules.config import ConfigError, OptimConfig, RegConfig
from lightning_modules.optim import build_optimizer, build_scheduler, check_optim_config
from lightning_modules.regularization import l1_penalty, l2_penalty

_Config = TypeVar("_Config", OptimConfig, RegConfig)


def count_wrong(logits: Tensor, y: Tensor) -> Tensor:
    """The number of examples whose arg-max class differs from the label y.  logits: (B, C), y: (B,)."""
    return (logits.argmax(dim=-1) != y).sum()


class ErrorRate(Metric):
    """Error = wrong / total over everything seen since the last reset, from integer counts.

    Integer states summed across processes keep the epoch error exact under DDP and with a last
    batch smaller than the others.
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    wrong: Tensor
    total: Tensor

    def __init__(self) -> None:
        super().__init__()
        self.add_state("wrong", default=torch.tensor(0), dist_reduce_fx="sum")
        self.add_state("total", default=torch.tensor(0), dist_reduce_fx="sum")

    def update(self, logits: Tensor, y: Tensor) -> None:
        """Count the wrong predictions of one batch.  logits: (B, C), y: (B,)."""
        self.wrong += count_wrong(logits, y)
        self.total += y.shape[0]

    def compute(self) -> Tensor:
        """wrong / total as a float tensor."""
        return self.wrong.double().div(self.total).float()


class CheckpointError(ValueError):
    """A checkpoint fitlens will not load: missing, not a PyTorch file, or holding more than tensors and values."""


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint at `path`, read onto the CPU with `torch.load(weights_only=True)`: tensors, numbers,
    strings and containers of them, never arbitrary objects, so reading cannot run code from the file (a
    pickle's __reduce__ calling os.system, say). Anything else raises CheckpointError naming the path and
    what the file asked for. Every path in fitlens that reads a checkpoint goes through here first."""
    shown = repr(str(path))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {shown} does not exist") from None
    except pickle.UnpicklingError as err:
        raise CheckpointError(f"checkpoint {shown} is refused: {_refusal(err)}; fitlens reads checkpoints with "
                              "torch.load(weights_only=True), which never runs code from the file") from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:  # cut short, not a zip, a folder, ...
        raise CheckpointError(f"checkpoint {shown} is not a PyTorch checkpoint ({type(err).__name__}: "
                              f"{str(err).splitlines()[0][:200] if str(err) else ''})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {shown} holds a {type(state).__name__}, not a dict of tensors")
    return state


def _refusal(err: pickle.UnpicklingError) -> str:
    """What a weights-only load refused, from torch's message: the global the file imports, or the opcode."""
    imported = re.search(r"GLOBAL (\S+)", str(err))
    if imported:
        return f"it asks to import {imported.group(1)}"
    opcode = re.search(r"Unsupported operand \S+", str(err))
    return f"it holds more than tensors and plain values ({opcode.group(0) if opcode else 'not a plain pickle'})"


def _as_config(cls: type[_Config], value: _Config | dict[str, Any]) -> _Config:
    # Checkpoints keep the configs as plain dicts (see FitModule.__init__); accept both forms.
    if isinstance(value, cls):
        return value
    if isinstance(value, dict):
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ConfigError(f"{cls.__name__} has no field(s) {unknown}; allowed: {sorted(known)}")
        return cls(**value)
    raise TypeError(f"expected a {cls.__name__} or a dict, got {type(value).__name__}")


class FitModule(pl.LightningModule):
    """Trains `net` (logits out) with cross-entropy plus the L2/L1 terms of `reg`, and logs the course's metrics.

    Args:
        net: any classifier; its output are logits of shape (B, C).
        optim: the optimizer and learning-rate schedule (checked at once: a bad config fails here,
            before any training).
        reg: the L2 / L1 strengths lambda of the cost.
        m_train: the training-set size m of lambda/(2m).
        max_epochs: the length of a cosine schedule.

    `self.hparams` holds optim and reg as plain dicts (and m_train, max_epochs), so a checkpoint loads
    with `torch.load(weights_only=True)`. To restore a checkpoint, rebuild the net and either call
    `FitModule.load_from_checkpoint(path, net=net)` or `module.load_weights(path)`; both read it with
    `load_checkpoint` (weights only) and refuse one that holds anything else.
    """

    def __init__(
        self,
        net: nn.Module,
        optim: OptimConfig | dict[str, Any],
        reg: RegConfig | dict[str, Any],
        m_train: int,
        max_epochs: int,
    ) -> None:
        super().__init__()
        optim = _as_config(OptimConfig, optim)
        reg = _as_config(RegConfig, reg)
        if m_train < 1:
            raise ConfigError(f"m_train = {m_train!r}: the training-set size must be >= 1")
        if max_epochs < 1:
            raise ConfigError(f"max_epochs = {max_epochs!r} must be >= 1")
        for name, lam in (("reg.l2", reg.l2), ("reg.l1", reg.l1)):
            if lam < 0:
                raise ConfigError(f"{name} = {lam!r}: the regularization strength lambda must be >= 0")
        check_optim_config(optim)
        self.net = net
        self.optim_config = optim
        self.reg_config = reg
        self.m_train = m_train
        self.max_epochs = max_epochs
        # Plain dicts rather than the dataclasses: dataclass objects in a checkpoint need
        # weights_only=False to load, and loggers flatten dicts into readable parameter names.
        self.save_hyperparameters(
            {"optim": asdict(optim), "reg": asdict(reg), "m_train": m_train, "max_epochs": max_epochs}
        )
        self.train_error = ErrorRate()
        self.dev_error = ErrorRate()
        self.test_error = ErrorRate()

    def forward(self, x: Tensor) -> Tensor:
        """The logits of `net`."""
        return self.net(x)

    def penalty(self) -> Tensor | None:
        """The regularization terms of J for the current weights, or None when reg is off (no cost at all)."""
        terms = []
        if self.reg_config.l2 > 0:
            terms.append(l2_penalty(self.net, self.reg_config.l2, self.m_train))
        if self.reg_config.l1 > 0:
            terms.append(l1_penalty(self.net, self.reg_config.l1, self.m_train))
        return sum(terms[1:], terms[0]) if terms else None

    def _log_epoch(self, name: str, value: Tensor | Metric | float, batch_size: int | None = None) -> None:
        # sync_dist only reduces at epoch end (on_step=False); for a Metric the counts sync themselves.
        self.log(name, value, on_step=False, on_epoch=True, batch_size=batch_size, sync_dist=True)

    def _eval_step(self, batch: tuple[Tensor, Tensor], stage: str, error: ErrorRate) -> Tensor:
        x, y = batch
        logits = self.net(x)  # (B, C)
        loss = F.cross_entropy(logits, y)
        error.update(logits.detach(), y)
        self._log_epoch(f"{stage}/loss", loss, batch_size=y.shape[0])
        self._log_epoch(f"{stage}/error", error)
        return loss

    def on_train_epoch_start(self) -> None:
        """Log the learning rate this epoch trains with (the scheduler steps at epoch end)."""
        lr = self.trainer.optimizers[0].param_groups[0]["lr"]
        self._log_epoch("lr", float(lr))

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        """One step on J = data loss + penalty; logs train/loss, train/error and (with a penalty) train/cost."""
        x, y = batch
        logits = self.net(x)  # (B, C)
        loss = F.cross_entropy(logits, y)
        penalty = self.penalty()
        cost = loss if penalty is None else loss + penalty
        self.train_error.update(logits.detach(), y)
        self._log_epoch("train/loss", loss, batch_size=y.shape[0])
        self._log_epoch("train/error", self.train_error)
        if penalty is not None:
            self._log_epoch("train/cost", cost, batch_size=y.shape[0])
        return cost

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        """Logs dev/loss and dev/error."""
        return self._eval_step(batch, "dev", self.dev_error)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        """Logs test/loss and test/error."""
        return self._eval_step(batch, "test", self.test_error)

    def configure_optimizers(self) -> dict[str, Any]:
        """The optimizer of `optim` over the net's parameters, and its per-epoch schedule if any."""
        optimizer = build_optimizer(self.net.parameters(), self.optim_config)
        scheduler = build_scheduler(optimizer, self.optim_config, self.max_epochs)
        if scheduler is None:
            return {"optimizer": optimizer}
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}

    @classmethod
    def load_from_checkpoint(  # type: ignore[override]
        cls, checkpoint_path: str | Path, map_location: Any = None, hparams_file: str | Path | None = None,
        strict: bool | None = None, weights_only: bool | None = True, **kwargs: Any,
    ) -> FitModule:
        """Lightning's load_from_checkpoint, with weights_only=True always (Lightning passes None on to
        torch.load, which the environment variable TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD turns into a full
        unpickling); the file is vetted by `load_checkpoint` first, for a clear CheckpointError."""
        if weights_only is False:
            raise CheckpointError("weights_only=False is not allowed: a FitModule checkpoint holds only tensors and "
                                  "plain values, and a file that needs more may run code when it is read")
        load_checkpoint(checkpoint_path)
        return super().load_from_checkpoint(checkpoint_path, map_location=map_location, hparams_file=hparams_file,
                                            strict=strict, weights_only=True, **kwargs)

    def load_weights(self, path: str | Path) -> None:
        """Load the net's weights from a Lightning checkpoint of a FitModule, or from a saved net state_dict."""
        state = load_checkpoint(path)
        if "state_dict" in state:  # a Lightning checkpoint: keys are "net.<name>"
            state = {k.removeprefix("net."): v for k, v in state["state_dict"].items() if k.startswith("net.")}
        self.net.load_state_dict(state)


def evaluate(net: nn.Module, dataloader: DataLoader | Any) -> dict[str, float]:
    """The mean cross-entropy and the error (wrong / total) of `net` over every (x, y) batch of `dataloader`.

    Runs in eval mode (dropout off, batch-norm running statistics) under no_grad, on the device of
    the net's parameters, and restores the net's previous mode afterwards. Sums are exact counts over
    examples, so an uneven last batch weighs what it holds.
    """
    param = next(net.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    was_training = net.training
    net.eval()
    loss_sum, wrong, total = 0.0, 0, 0
    try:
        with torch.no_grad():
            for x, y in dataloader:
                x, y = x.to(device), y.to(device)
                logits = net(x)  # (B, C)
                loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
                wrong += int(count_wrong(logits, y).item())
                total += y.shape[0]
    finally:
        net.train(was_training)
    if total == 0:
        raise ValueError("evaluate: the dataloader yielded no examples")
    return {"loss": loss_sum / total, "error": wrong / total}

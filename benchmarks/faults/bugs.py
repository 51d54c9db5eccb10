"""Code bugs of the fault zoo, as a user's own LightningModule or LightningDataModule would have them (`module:` and
`data.name: package.module:Class` in a run config). Each is the built-in FitModule or ArrayDataModule with one
line wrong."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_modules.config import DataConfig, ModelConfig, OptimConfig, RegConfig
from lightning_modules.data import ArrayDataModule
from lightning_modules.models import build_model
from lightning_modules.module import FitModule

MNIST1D = {"input_shape": (40,), "n_classes": 10, "m_train": 3200}


def _net(depth: int, width: int, activation: str = "relu", init: str = "he") -> nn.Module:
    return build_model(ModelConfig(depth=depth, width=width, activation=activation, init=init),
                       MNIST1D["input_shape"], MNIST1D["n_classes"])


class _Module(FitModule):
    def __init__(self, net: nn.Module, lr: float, max_epochs: int) -> None:
        super().__init__(net, OptimConfig(name="adam", lr=lr), RegConfig(), MNIST1D["m_train"], max_epochs)


class SoftmaxBeforeLoss(_Module):
    """The network ends in a softmax, and the loss takes the cross-entropy of its outputs: softmax twice."""

    def __init__(self, depth: int = 2, width: int = 100, lr: float = 1e-3, max_epochs: int = 10) -> None:
        super().__init__(nn.Sequential(_net(depth, width), nn.Softmax(dim=-1)), lr, max_epochs)


class FrozenLayer(_Module):
    """The first hidden layer is frozen (requires_grad False), as left over from fine-tuning."""

    def __init__(self, depth: int = 3, width: int = 100, lr: float = 1e-3, max_epochs: int = 10) -> None:
        net = _net(depth, width)
        for parameter in net.hidden[0].parameters():
            parameter.requires_grad_(False)
        super().__init__(net, lr, max_epochs)


class _AlwaysDropout(nn.Module):
    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, a: Tensor) -> Tensor:
        return F.dropout(a, self.p, training=True)  # the bug: training=self.training


class DropoutAtEval(_Module):
    """Dropout that stays on in evaluation (F.dropout(..., training=True)): dev and test see a thinned network."""

    def __init__(self, depth: int = 2, width: int = 100, p: float = 0.5, lr: float = 1e-3,
                 max_epochs: int = 10) -> None:
        net = _net(depth, width)
        for block in net.hidden:
            block.drop = _AlwaysDropout(p)
        super().__init__(net, lr, max_epochs)


class ShuffledLabels(ArrayDataModule):
    """MNIST-1D whose training labels are shuffled against their inputs (a join on the wrong key)."""

    def __init__(self, train_fraction: float = 1.0, seed: int = 0, **fields: Any) -> None:
        super().__init__(DataConfig(name="mnist1d", train_fraction=train_fraction, seed=seed, **fields))

    def setup(self, stage: str | None = None) -> None:
        if self._is_setup:
            return
        super().setup(stage)
        x, y = self.train_set.tensors
        order = torch.randperm(len(y), generator=torch.Generator().manual_seed(self.cfg.seed))
        self.train_set = TensorDataset(x, y[order])


class SortedBatches(ArrayDataModule):
    """MNIST-1D served in label order, never shuffled: every batch holds one or two classes."""

    def __init__(self, seed: int = 0, **fields: Any) -> None:
        super().__init__(DataConfig(name="mnist1d", seed=seed, **fields))

    def train_dataloader(self) -> DataLoader:
        x, y = self.train_set.tensors
        order = torch.argsort(y, stable=True)
        return DataLoader(TensorDataset(x[order], y[order]), batch_size=self.cfg.batch_size, shuffle=False)

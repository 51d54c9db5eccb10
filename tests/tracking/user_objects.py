"""A user's own LightningModule and LightningDataModule, named by import path in the tests."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset


class BlobsData(pl.LightningDataModule):
    """Two Gaussian blobs far apart: any sensible classifier separates them."""

    def __init__(self, n: int = 200, features: int = 4) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        y = torch.arange(n) % 2
        x = torch.randn(n, features, generator=generator) + 4.0 * y[:, None].float()
        self.splits = {"train": (x[: n // 2], y[: n // 2]), "dev": (x[n // 2 :], y[n // 2 :])}

    def setup(self, stage: str | None = None) -> None:
        self.input_shape, self.n_classes, self.m_train = (4,), 2, len(self.splits["train"][1])

    def _loader(self, split: str) -> DataLoader:
        return DataLoader(TensorDataset(*self.splits[split]), batch_size=50)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("dev")

    def test_dataloader(self) -> DataLoader:
        return self._loader("dev")


class LinearModule(pl.LightningModule):
    """Logs dev/error, the one metric fitlens needs from a user's module."""

    def __init__(self, features: int = 4, lr: float = 0.1) -> None:
        super().__init__()
        self.layer = nn.Linear(features, 2)
        self.lr = lr

    def _error(self, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = batch
        logits = self.layer(x)
        return F.cross_entropy(logits, y), (logits.argmax(1) != y).float().mean()

    def training_step(self, batch, batch_idx):
        loss, error = self._error(batch)
        self.log_dict({"train/loss": loss, "train/error": error}, on_epoch=True, on_step=False)
        return loss

    def validation_step(self, batch, batch_idx):
        loss, error = self._error(batch)
        self.log_dict({"dev/loss": loss, "dev/error": error})

    def test_step(self, batch, batch_idx):
        loss, error = self._error(batch)
        self.log_dict({"test/loss": loss, "test/error": error})

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr)


class ErrorAsLossModule(LinearModule):
    """Returns the error rate as its loss: computed through argmax, it has no gradient to check."""

    def training_step(self, batch, batch_idx):
        _, error = self._error(batch)
        return error

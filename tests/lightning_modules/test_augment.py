"""Tests of lightning_modules.augment: the ops each kind of input allows, each op against a slow reference, and
augmentation on training batches only."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch

from lightning_modules.augment import AUGMENT_OPS, MAX_SHIFT, augment_batch
from lightning_modules.config import ConfigError, DataConfig
from lightning_modules.data import ArrayDataModule, build_datamodule
from tests.lightning_modules.datamodules import setup_datamodule as _setup

# ---------------------------------------------------------------------------------------------- augmentation


def test_augment_ops_per_data_set_and_their_errors() -> None:
    assert ArrayDataModule(DataConfig(name="mnist1d", augment=True)).augment_ops == ("shift", "scale", "noise")
    digits = ArrayDataModule(DataConfig(name="digits", augment=True)).augment_ops
    assert "flip" not in digits and set(digits) == {"rotate", "translate", "contrast", "noise"}
    assert ArrayDataModule(DataConfig(name="moons", augment=True)).augment_ops == ("noise",)
    assert ArrayDataModule(DataConfig(name="digits", augment=["flip"])).augment_ops == ("flip",)
    assert ArrayDataModule(DataConfig(name="moons", augment=False)).augment_ops == ()
    with pytest.raises(ConfigError, match=r"data\.augment = \['flip'\].*mnist1d.*allowed ops: shift, noise, scale"):
        ArrayDataModule(DataConfig(name="mnist1d", augment=["flip"]))
    with pytest.raises(ConfigError, match=r"data\.augment = \['rotate'\].*allowed ops: noise"):
        ArrayDataModule(DataConfig(name="digits", layout="flat", augment=["rotate"]))
    with pytest.raises(ConfigError, match=r"'blur'.*allowed ops: flip, rotate, translate, contrast, noise"):
        ArrayDataModule(DataConfig(name="digits", augment=["rotate", "blur"]))
    with pytest.raises(ConfigError, match=r"data\.augment = 'noise' must be true, false or a list"):
        ArrayDataModule(DataConfig(name="moons", augment="noise"))  # type: ignore[arg-type]


def test_shift_and_scale_against_slow_references() -> None:
    torch.manual_seed(0)
    x = torch.randn(64, 40)
    shifted = augment_batch(x, ["shift"], "sequence")
    for row, out in zip(x, shifted, strict=True):
        assert any(torch.equal(out, torch.roll(row, k)) for k in range(-MAX_SHIFT, MAX_SHIFT + 1))
    scaled = augment_batch(x, ["scale"], "sequence")
    ratio = scaled / x
    assert torch.allclose(ratio, ratio[:, :1].expand_as(ratio), atol=1e-5)  # one factor per example
    assert ((ratio[:, 0] >= 0.9 - 1e-6) & (ratio[:, 0] <= 1.1 + 1e-6)).all()


def test_translate_moves_whole_pixels_and_fills_blank() -> None:
    torch.manual_seed(0)
    images = torch.rand(32, 8, 8) + 1.0  # no zeros, so blank fill is visible

    def zero_filled_shift(image: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
        out = torch.zeros_like(image)
        rows_out, rows_in = slice(max(dy, 0), 8 + min(dy, 0)), slice(max(-dy, 0), 8 + min(-dy, 0))
        cols_out, cols_in = slice(max(dx, 0), 8 + min(dx, 0)), slice(max(-dx, 0), 8 + min(-dx, 0))
        out[rows_out, cols_out] = image[rows_in, cols_in]
        return out

    moved = augment_batch(images, ["translate"], "image")
    for image, out in zip(images, moved, strict=True):
        candidates = [zero_filled_shift(image, dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
        assert any(torch.allclose(out, c, atol=1e-5) for c in candidates)


def test_augmentation_keeps_shapes_and_normalized_scale() -> None:
    torch.manual_seed(0)
    mean, std = torch.full((8, 8), 3.0), torch.full((8, 8), 2.0)
    x = torch.randn(16, 8, 8)
    for kind, ops in AUGMENT_OPS.items():
        if kind == "image":
            batch, out = x, augment_batch(x, ops, kind, mean=mean, std=std)
        else:
            batch = x.flatten(1)
            out = augment_batch(batch, ops, kind)
        assert out.shape == batch.shape and out.dtype == torch.float32
        assert not torch.equal(out, batch)
    noisy = augment_batch(x.flatten(1), ["noise"], "tabular")
    assert (noisy - x.flatten(1)).std().item() == pytest.approx(0.05, rel=0.1)
    # A blank raw image (normalized: -mean/std) stays blank under rotation, translation and contrast.
    blank = ((torch.zeros(4, 8, 8) - mean) / std).expand(4, 8, 8)
    geometric = augment_batch(blank, ["rotate", "translate", "contrast"], "image", mean=mean, std=std)
    torch.testing.assert_close(geometric, blank)


def test_on_after_batch_transfer_augments_only_while_training() -> None:
    dm = _setup(name="mnist1d", augment=True)
    batch = next(iter(dm.train_eval_dataloader()))
    dm.trainer = SimpleNamespace(training=False)  # type: ignore[assignment]
    x, y = dm.on_after_batch_transfer(batch, 0)
    assert x is batch[0] and y is batch[1]
    dm.trainer = SimpleNamespace(training=True)  # type: ignore[assignment]
    x, y = dm.on_after_batch_transfer(batch, 0)
    assert x.shape == batch[0].shape and torch.equal(y, batch[1]) and not torch.equal(x, batch[0])


class _Recorder(pl.LightningModule):
    """A linear model that records the batches Lightning hands to each step."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(2, 2)
        self.seen: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {"train": [], "val": []}

    def training_step(self, batch, batch_idx):
        self.seen["train"].append((batch[0].clone(), batch[1].clone()))
        return torch.nn.functional.cross_entropy(self.layer(batch[0]), batch[1])

    def validation_step(self, batch, batch_idx):
        self.seen["val"].append((batch[0].clone(), batch[1].clone()))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def test_trainer_augments_training_batches_but_not_dev_batches() -> None:
    dm = build_datamodule(DataConfig(name="moons", n_samples=200, batch_size=50, augment=True))
    model = _Recorder()
    trainer = pl.Trainer(
        max_epochs=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(model, datamodule=dm)
    val_x = torch.cat([b[0] for b in model.seen["val"]])
    torch.testing.assert_close(val_x, dm.dev_set.tensors[0])  # dev: untouched, in order
    train_x = torch.cat([b[0] for b in model.seen["train"]])
    train_y = torch.cat([b[1] for b in model.seen["train"]])
    clean_x, clean_y = dm.train_set.tensors
    assert train_x.shape == clean_x.shape
    assert sorted(train_y.tolist()) == sorted(clean_y.tolist())  # labels preserved
    assert not (torch.cdist(train_x, clean_x).min(dim=1).values < 1e-6).any()  # every input perturbed...
    assert torch.cdist(train_x, clean_x).min(dim=1).values.max() < 0.5  # ... slightly



"""Tests of lightning_modules.data: splits, normalization, the data module's loaders, names and fields."""

from __future__ import annotations

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from sklearn.datasets import load_breast_cancer, load_digits

from lightning_modules.config import ConfigError, DataConfig
from lightning_modules.data import build_datamodule, make_splits
from tests.lightning_modules.datamodules import setup_datamodule as _setup

# ---------------------------------------------------------------------------------------------- splits


def test_splits_are_disjoint_cover_all_rows_and_have_the_configured_sizes() -> None:
    dm = _setup(name="moons", n_samples=1000, test_fraction=0.2, dev_fraction=0.25)
    train, dev, test = (set(dm.split_indices[s].tolist()) for s in ("train", "dev", "test"))
    assert not train & dev and not train & test and not dev & test
    assert train | dev | test == set(range(1000))
    # test = 20% of 1000; dev = 25% of the remaining 800; train the rest.
    assert (dm.m_test, dm.m_dev, dm.m_train) == (200, 200, 600)
    assert len(dm.train_set) == 600 and len(dm.dev_set) == 200 and len(dm.test_set) == 200


def test_splits_are_stratified() -> None:
    y = np.repeat(np.arange(4), [100, 200, 300, 400])
    splits = make_splits(y, seed=3, dev_fraction=0.25, test_fraction=0.2)
    for rows, n in ((splits["test"], 200), (splits["dev"], 200), (splits["train"], 600)):
        expected = n * np.array([0.1, 0.2, 0.3, 0.4])
        assert np.abs(np.bincount(y[rows], minlength=4) - expected).max() <= 1


def test_splits_are_seeded() -> None:
    a = _setup(name="breast_cancer", seed=1).split_indices
    b = _setup(name="breast_cancer", seed=1).split_indices
    c = _setup(name="breast_cancer", seed=2).split_indices
    for split in ("train", "dev", "test"):
        np.testing.assert_array_equal(a[split], b[split])
        assert not np.array_equal(a[split], c[split])


def test_train_fraction_keeps_a_nested_subset_and_leaves_dev_and_test_unchanged() -> None:
    full = _setup(name="breast_cancer", seed=0)
    quarter = _setup(name="breast_cancer", seed=0, train_fraction=0.25)
    half = _setup(name="breast_cancer", seed=0, train_fraction=0.5)
    assert full.m_train == 364  # 569 rows - 114 test - 91 dev
    assert quarter.m_train == round(0.25 * 364) == len(quarter.train_set) == 91
    assert half.m_train == 182
    assert set(quarter.split_indices["train"]) < set(half.split_indices["train"]) < set(full.split_indices["train"])
    for split in ("dev", "test"):
        np.testing.assert_array_equal(quarter.split_indices[split], full.split_indices[split])
    # Still stratified: the class ratio of the kept quarter matches the full training split.
    y = load_breast_cancer().target
    ratio = lambda rows: y[rows].mean()  # noqa: E731
    assert abs(ratio(quarter.split_indices["train"]) - ratio(full.split_indices["train"])) < 0.02


def test_setup_is_idempotent() -> None:
    dm = _setup(name="moons", n_samples=200)
    train_set = dm.train_set
    dm.setup("fit")
    dm.setup("test")
    assert dm.train_set is train_set


def test_loaders_batch_dtype_and_seeded_shuffle() -> None:
    dm = _setup(name="moons", n_samples=200, batch_size=32)
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (32, 2) and x.dtype == torch.float32 and y.dtype == torch.int64
    first = torch.cat([b[1] for b in dm.train_dataloader()])
    again = torch.cat([b[1] for b in dm.train_dataloader()])
    torch.testing.assert_close(first, again)  # same seed, same order
    clean = torch.cat([b[0] for b in dm.train_eval_dataloader()])
    torch.testing.assert_close(clean, dm.train_set.tensors[0])  # unshuffled
    torch.testing.assert_close(torch.cat([b[0] for b in dm.val_dataloader()]), dm.dev_set.tensors[0])
    torch.testing.assert_close(torch.cat([b[0] for b in dm.test_dataloader()]), dm.test_set.tensors[0])


# ---------------------------------------------------------------------------------------------- normalization


def test_normalization_uses_training_rows_only() -> None:
    dm = _setup(name="breast_cancer", seed=5)
    raw = load_breast_cancer().data
    train, dev, test = (dm.split_indices[s] for s in ("train", "dev", "test"))
    mean, std = raw[train].mean(axis=0), raw[train].std(axis=0)
    np.testing.assert_allclose(dm.feature_mean.numpy(), mean, rtol=1e-6)
    np.testing.assert_allclose(dm.feature_std.numpy(), std, rtol=1e-6)
    # Statistics over all rows differ: the dev and test rows did not leak into them.
    assert not np.allclose(dm.feature_mean.numpy(), raw.mean(axis=0), rtol=1e-3)
    # Dev and test are transformed with the training statistics.
    np.testing.assert_allclose(dm.dev_set.tensors[0].numpy(), (raw[dev] - mean) / std, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(dm.test_set.tensors[0].numpy(), (raw[test] - mean) / std, rtol=1e-4, atol=1e-5)
    # The training split itself ends up standardized.
    x_train = dm.train_set.tensors[0].numpy()
    np.testing.assert_allclose(x_train.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(x_train.std(axis=0), 1.0, atol=1e-4)


def test_normalization_after_train_fraction_and_constant_features() -> None:
    dm = _setup(name="digits", train_fraction=0.5)
    images = load_digits().images
    train = dm.split_indices["train"]
    std = images[train].std(axis=0)
    assert dm.feature_std.shape == (8, 8)
    np.testing.assert_allclose(dm.feature_mean.numpy(), images[train].mean(axis=0), rtol=1e-5)
    constant = std == 0
    assert constant.any()  # digits' blank corner pixels
    assert (dm.feature_std.numpy()[constant] == 1.0).all()
    assert np.isfinite(dm.dev_set.tensors[0].numpy()).all()


def test_normalize_false_keeps_raw_values() -> None:
    dm = _setup(name="breast_cancer", normalize=False)
    raw = load_breast_cancer().data
    np.testing.assert_allclose(dm.train_set.tensors[0].numpy(), raw[dm.split_indices["train"]], rtol=1e-6)
    assert (dm.feature_mean == 0).all() and (dm.feature_std == 1).all()


# ---------------------------------------------------------------------------------------------- names and fields


class TinyDataModule(pl.LightningDataModule):
    """A user's datamodule, imported by path in the tests below."""

    def __init__(self, size: int = 3) -> None:
        super().__init__()
        self.size = size


def test_user_datamodule_by_import_path() -> None:
    dm = build_datamodule(DataConfig(name=f"{__name__}:TinyDataModule", args={"size": 7}))
    assert isinstance(dm, TinyDataModule) and dm.size == 7 and dm.reference_error == 0.0
    dm = build_datamodule(DataConfig(name=f"{__name__}:TinyDataModule", reference_error=0.2))
    assert dm.reference_error == 0.2


@pytest.mark.parametrize(
    ("name", "args", "message"),
    [
        ("no_such_pkg.mod:Thing", {}, r"data\.name = 'no_such_pkg\.mod:Thing': cannot import module"),
        (f"{__name__}:Missing", {}, r"data\.name = .*:Missing'.*has no attribute 'Missing'"),
        ("tests.lightning_modules.test_augment:_Recorder", {}, r"is not a LightningDataModule"),
        (f"{__name__}:TinyDataModule", {"colour": 1}, r"data\.args = \{'colour': 1\} do not fit"),
        ("pkg:", {}, r"data\.name = 'pkg:': expected an import path"),
    ],
)
def test_import_path_errors(name: str, args: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_datamodule(DataConfig(name=name, args=args))


def test_unknown_name_and_invalid_fields() -> None:
    with pytest.raises(ConfigError, match=r"data\.name = 'mnist'.*allowed: mnist1d, digits, breast_cancer"):
        build_datamodule(DataConfig(name="mnist"))
    with pytest.raises(ConfigError, match=r"data\.dev_fraction = 1\.5 is out of range; allowed: > 0\.0 and < 1\.0"):
        build_datamodule(DataConfig(name="moons", dev_fraction=1.5))
    with pytest.raises(ConfigError, match=r"data\.layout = 'image' applies only to data\.name = digits"):
        build_datamodule(DataConfig(name="moons", layout="image"))
    with pytest.raises(ConfigError, match=r"data\.layout = 'square'"):
        build_datamodule(DataConfig(name="digits", layout="square"))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"data\.test_fraction = 0\.01 of 20 rows gives 0 test rows"):
        build_datamodule(DataConfig(name="moons", n_samples=20, test_fraction=0.01)).setup()



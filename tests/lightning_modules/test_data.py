"""Tests of lightning_modules.data, .datasets and .augment: splits, normalization, the registry's reference errors and
shapes, tables, augmentation."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import pytorch_lightning as pl
import torch
from scipy import integrate, stats
from sklearn.datasets import load_breast_cancer, load_digits

from lightning_modules.augment import AUGMENT_OPS, MAX_SHIFT, augment_batch
from lightning_modules.config import ConfigError, DataConfig
from lightning_modules.data import ArrayDataModule, build_datamodule, make_splits
from lightning_modules.datasets import DATASETS, curves_bayes_error, make_teacher, make_teacher_student


def _setup(**fields: object) -> ArrayDataModule:
    dm = build_datamodule(DataConfig(**fields))
    assert isinstance(dm, ArrayDataModule)
    dm.setup("fit")
    return dm


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


# ---------------------------------------------------------------------------------------------- data sets


def test_mnist1d_shapes_split_and_reference_error() -> None:
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    dm = _setup(name="mnist1d", dev_fraction=0.2)
    np.testing.assert_array_equal(np.random.get_state()[1], before)  # make_dataset's reseed was undone
    assert dm.input_shape == (40,) and dm.n_classes == 10
    assert dm.m_train + dm.m_dev == 4000 and dm.m_dev == 800 and dm.m_test == 1000
    np.testing.assert_array_equal(dm.split_indices["test"], np.arange(4000, 5000))
    assert dm.reference_error == 0.04
    assert set(dm.train_set.tensors[1].unique().tolist()) == set(range(10))
    assert _setup(name="mnist1d", reference_error=0.1).reference_error == 0.1


def test_digits_layouts() -> None:
    image = _setup(name="digits")
    flat = _setup(name="digits", layout="flat")
    assert image.input_shape == (8, 8) and image.kind == "image"
    assert flat.input_shape == (64,) and flat.kind == "tabular"
    assert image.n_classes == 10 and image.reference_error == 0.0
    assert image.m_train + image.m_dev + image.m_test == 1797


def test_teacher_student_label_noise_rate_and_reference_error() -> None:
    sample = make_teacher_student(20_000, n_features=10, n_classes=4, noise=0.15, seed=0)
    flipped = sample.y != sample.y_clean
    assert abs(flipped.mean() - 0.15) < 0.01  # binomial std ~ 0.0025
    # The clean labels really are the teacher's argmax, and the classes are about balanced.
    np.testing.assert_array_equal(make_teacher(10, 4, 0).labels(sample.x.astype(np.float64)), sample.y_clean)
    assert np.abs(np.bincount(sample.y_clean, minlength=4) / 20_000 - 0.25).max() < 0.05
    # A flipped label is a uniformly random *other* class.
    offsets = (sample.y[flipped] - sample.y_clean[flipped]) % 4
    assert set(offsets.tolist()) == {1, 2, 3}
    assert np.abs(np.bincount(offsets, minlength=4)[1:] / flipped.sum() - 1 / 3).max() < 0.03
    dm = _setup(name="teacher_student", noise=0.15, n_features=10, n_classes=4)
    assert dm.reference_error == 0.15 and dm.input_shape == (10,) and dm.n_classes == 4


def test_teacher_student_rejects_noise_above_bayes_limit() -> None:
    with pytest.raises(ConfigError, match=r"data\.noise = 0\.5.*\(K-1\)/K = 0\.5"):
        build_datamodule(DataConfig(name="teacher_student", n_classes=2, noise=0.5))


def test_moons_bayes_error_is_plausible_reproducible_and_grows_with_noise() -> None:
    errors = [curves_bayes_error("moons", noise) for noise in (0.0, 0.1, 0.3, 0.5)]
    assert errors[0] == 0.0
    assert errors[1] < 0.01  # the moons barely overlap at noise 0.1
    assert 0.05 < errors[2] < 0.12
    assert errors[1] < errors[2] < errors[3] < 0.25
    curves_bayes_error.cache_clear()
    assert curves_bayes_error("moons", 0.3) == errors[2]
    assert _setup(name="moons", noise=0.3, n_samples=200).reference_error == errors[2]


@pytest.mark.parametrize("noise", [0.2, 0.3])
def test_circles_bayes_error_matches_the_rice_distribution(noise: float) -> None:
    # Slow exact twin: a noisy circle of radius R has a Rice(R / sigma, scale sigma) radius, so with
    # equal priors the Bayes error is 1/2 * integral of min(p_outer(r), p_inner(r)) dr.
    outer, inner = stats.rice(1.0 / noise, scale=noise).pdf, stats.rice(0.5 / noise, scale=noise).pdf
    overlap, _ = integrate.quad(lambda r: min(outer(r), inner(r)), 0, 5, limit=200, points=[0.5, 0.75, 1.0])
    assert curves_bayes_error("circles", noise) == pytest.approx(0.5 * overlap, abs=0.012)


# ---------------------------------------------------------------------------------------------- csv / parquet


def _table(n: int = 60) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "a": rng.standard_normal(n),
            "b": rng.integers(0, 5, n),
            "species": rng.choice(["setosa", "virginica", "versicolor"], n),
        }
    )


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_table_round_trip(tmp_path, fmt: str) -> None:
    frame = _table()
    path = tmp_path / f"table.{fmt}"
    frame.to_csv(path, index=False) if fmt == "csv" else frame.to_parquet(path)
    dm = _setup(name=fmt, path=str(path), target="species", normalize=False)
    assert dm.input_shape == (2,) and dm.n_classes == 3
    assert dm.class_names == ["setosa", "versicolor", "virginica"]  # sorted -> 0, 1, 2
    codes = frame["species"].map({"setosa": 0, "versicolor": 1, "virginica": 2}).to_numpy()
    for split, data in (("train", dm.train_set), ("dev", dm.dev_set), ("test", dm.test_set)):
        rows = dm.split_indices[split]
        np.testing.assert_allclose(data.tensors[0].numpy(), frame[["a", "b"]].to_numpy()[rows], rtol=1e-6)
        np.testing.assert_array_equal(data.tensors[1].numpy(), codes[rows])
    assert dm.reference_error == 0.0


def test_table_errors(tmp_path) -> None:
    path = tmp_path / "t.csv"
    frame = _table()
    frame.to_csv(path, index=False)
    with pytest.raises(ConfigError, match=r"data\.path is required for data\.name = csv"):
        build_datamodule(DataConfig(name="csv", target="species"))
    with pytest.raises(ConfigError, match=r"data\.path = .*nope\.parquet.*no such file"):
        build_datamodule(DataConfig(name="parquet", path=str(tmp_path / "nope.parquet"), target="y"))
    with pytest.raises(ConfigError, match=r"data\.target .*required"):
        build_datamodule(DataConfig(name="csv", path=str(path)))
    with pytest.raises(ConfigError, match=r"data\.target = 'label'.*available columns: a, b, species"):
        build_datamodule(DataConfig(name="csv", path=str(path), target="label")).setup("fit")
    frame.assign(colour=["red"] * len(frame)).to_csv(path, index=False)
    with pytest.raises(ConfigError, match=r"non-numeric feature columns colour"):
        build_datamodule(DataConfig(name="csv", path=str(path), target="species")).setup("fit")
    (tmp_path / "bad.parquet").write_text("not parquet")
    with pytest.raises(ConfigError, match=r"could not be read as parquet"):
        build_datamodule(DataConfig(name="parquet", path=str(tmp_path / "bad.parquet"), target="y")).setup()


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
        (f"{__name__}:_Recorder", {}, r"is not a LightningDataModule"),
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


# ---------------------------------------------------------------------------------------------- the registry


@pytest.mark.parametrize("name", list(DATASETS))
def test_every_registered_data_set_loads_with_its_kind_shape_reference_error_and_augmentations(name, tmp_path) -> None:
    fields: dict[str, object] = {"name": name, "n_samples": 200, "augment": True}
    if name in ("csv", "parquet"):
        frame = pd.DataFrame({"a": np.arange(40.0), "b": np.arange(40.0) ** 2, "label": ["x", "y"] * 20})
        path = tmp_path / f"table.{name}"
        frame.to_csv(path, index=False) if name == "csv" else frame.to_parquet(path)
        fields |= {"path": str(path), "target": "label"}
    entry, cfg = DATASETS[name], DataConfig(**fields)
    dm = _setup(**fields)
    assert dm.kind == entry.kind_of(cfg)
    assert dm.input_shape == (entry.shape_of(cfg) or (2,))  # the table above has two feature columns
    assert dm.reference_error == pytest.approx(entry.reference_error_of(cfg))
    assert dm.augment_ops and set(dm.augment_ops) <= set(AUGMENT_OPS[dm.kind])


def test_digits_flat_is_a_table_of_64_features_without_image_augmentations() -> None:
    dm = _setup(name="digits", layout="flat", augment=True)
    assert (dm.kind, dm.input_shape, dm.augment_ops) == ("tabular", (64,), ("noise",))
    image = _setup(name="digits", augment=True)
    assert (image.kind, image.input_shape) == ("image", (8, 8)) and "flip" not in image.augment_ops

"""Tests of lightning_modules.datasets: every registry entry, the data sets' shapes and reference errors (the Bayes
errors of the synthetic sets checked against their generating process), tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, stats

from lightning_modules.augment import AUGMENT_OPS
from lightning_modules.config import ConfigError, DataConfig
from lightning_modules.data import build_datamodule
from lightning_modules.datasets import DATASETS, curves_bayes_error, make_teacher, make_teacher_student
from tests.lightning_modules.datamodules import setup_datamodule as _setup

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

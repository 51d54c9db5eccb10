"""The built-in data sets: one registry entry each (`DATASETS`), with everything fitlens knows of it: its
loader, the kind of input (which augmentations keep its labels), its input shape, its reference (human / Bayes)
error, and the fields only it constrains. Adding a data set is adding an entry here.

Nothing is downloaded: MNIST-1D is generated locally by the `mnist1d` package, digits and breast cancer ship with
scikit-learn, moons, circles and teacher-student are synthesized, csv and parquet are a user's own table.
"""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from lightning_modules.augment import AUGMENT_OPS, Kind
from lightning_modules.config import ConfigError, DataConfig

MNIST1D_TRAIN = 4000  # the paper's split: the first 4000 of make_dataset's 5000 ...
MNIST1D_TEST = 1000  # ... and the last 1000
MNIST1D_REFERENCE = 0.04  # the MNIST-1D paper reports roughly 96% accuracy for a human expert
CIRCLES_FACTOR = 0.5  # the inner circle's radius relative to the outer one
TEACHER_HIDDEN = 64  # teacher width: wide enough for a curved decision boundary, small enough to learn


class RawData(NamedTuple):
    """A data set as loaded, before it is split and normalized."""

    x: np.ndarray  # (N, *input_shape)
    y: np.ndarray  # (N,) int labels 0..K-1
    class_names: list[str]
    n_fixed_test: int  # > 0: the last rows are the data set's own test split


@dataclass(frozen=True)
class DataSet:
    """A built-in data set. `kind`, `shape` and `reference_error` may depend on the config (digits' layout, the
    noise of a synthetic set): each is a value or a function of the DataConfig."""

    load: Callable[[DataConfig], RawData]
    kind: Kind | Callable[[DataConfig], Kind]
    # One example's shape, or None where it depends on the data (a table's columns).
    shape: tuple[int, ...] | None | Callable[[DataConfig], tuple[int, ...] | None]
    # e*: a fixed number where one is known, 0 where none is (the course's e* ~ 0: docs/conventions.md), or the
    # Bayes error of a synthetic set's generating process.
    reference_error: float | Callable[[DataConfig], float]
    # What `augment: true` runs, per kind of input where it is not every op the kind allows.
    default_augment: dict[Kind, tuple[str, ...]] = field(default_factory=dict)
    check: Callable[[DataConfig], None] = field(default=lambda cfg: None)  # fields only this data set constrains

    def kind_of(self, cfg: DataConfig) -> Kind:
        return self.kind(cfg) if callable(self.kind) else self.kind

    def shape_of(self, cfg: DataConfig) -> tuple[int, ...] | None:
        return self.shape(cfg) if callable(self.shape) else self.shape

    def reference_error_of(self, cfg: DataConfig) -> float:
        return float(self.reference_error(cfg) if callable(self.reference_error) else self.reference_error)

    def default_augment_of(self, cfg: DataConfig) -> tuple[str, ...]:
        kind = self.kind_of(cfg)
        return self.default_augment.get(kind, AUGMENT_OPS[kind])


# ----------------------------------------------------------------------------------------------
# Loaders


def _load_mnist1d(cfg: DataConfig) -> RawData:
    x, y = _mnist1d_arrays()
    return RawData(x, y, [str(k) for k in range(10)], MNIST1D_TEST)


@functools.cache
def _mnist1d_arrays() -> tuple[np.ndarray, np.ndarray]:
    """MNIST-1D generated locally (no download): 5000 x 40 inputs, the last 1000 its test set.

    Cached per process: generation takes ~2 s. The arrays are read-only because they are shared.
    """
    from mnist1d.data import get_dataset_args, make_dataset

    # make_dataset reseeds the global numpy and `random` generators; keep the caller's streams.
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        data = make_dataset(get_dataset_args())
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    x = np.concatenate([data["x"], data["x_test"]]).astype(np.float32)
    y = np.concatenate([data["y"], data["y_test"]]).astype(np.int64)
    assert len(data["y"]) == MNIST1D_TRAIN and len(data["y_test"]) == MNIST1D_TEST
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


@functools.cache
def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled 8x8 digits (pixel values 0..16), read-only."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x, y = bunch.images.astype(np.float32), bunch.target.astype(np.int64)
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


def _load_digits(cfg: DataConfig) -> RawData:
    x, y = _digits_arrays()
    if cfg.layout == "flat":
        x = x.reshape(len(x), -1)
    return RawData(x, y, [str(k) for k in range(10)], 0)


def _load_breast_cancer(cfg: DataConfig) -> RawData:
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer()
    return RawData(bunch.data, bunch.target, [str(n) for n in bunch.target_names], 0)


def _load_curves(cfg: DataConfig) -> RawData:
    x, y = _make_curves(cfg.name, cfg.n_samples, cfg.noise, cfg.seed)
    return RawData(x, y, ["0", "1"], 0)


def _load_teacher_student(cfg: DataConfig) -> RawData:
    sample = make_teacher_student(cfg.n_samples, cfg.n_features, cfg.n_classes, cfg.noise, cfg.seed)
    return RawData(sample.x, sample.y, [str(k) for k in range(cfg.n_classes)], 0)


def _make_curves(name: str, n_samples: int, noise: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two moons or two circles with Gaussian noise of std `noise` (scikit-learn's generators)."""
    from sklearn.datasets import make_circles, make_moons

    if name == "moons":
        return make_moons(n_samples, noise=noise, random_state=seed)
    return make_circles(n_samples, noise=noise, factor=CIRCLES_FACTOR, random_state=seed)


def _load_table(cfg: DataConfig) -> RawData:
    """A user's CSV or Parquet table: the target column gives the labels, all others the features."""
    import pandas as pd

    assert cfg.path is not None and cfg.target is not None  # checked by _check_table
    try:
        frame = pd.read_csv(cfg.path) if cfg.name == "csv" else pd.read_parquet(cfg.path)
    except Exception as err:  # pandas and pyarrow raise many types for a malformed file
        raise ConfigError(f"data.path = {cfg.path!r} could not be read as {cfg.name}: {err}") from err
    columns = [str(c) for c in frame.columns]
    frame.columns = columns
    if cfg.target not in columns:
        raise ConfigError(
            f"data.target = {cfg.target!r} is not a column of {cfg.path}; available columns: {', '.join(columns)}"
        )
    features = frame.drop(columns=[cfg.target])
    if features.shape[1] == 0:
        raise ConfigError(f"data.path = {cfg.path!r} has no feature columns besides data.target = {cfg.target!r}")
    non_numeric = [c for c in features.columns if not pd.api.types.is_numeric_dtype(features[c])]
    if non_numeric:
        raise ConfigError(
            f"data.path = {cfg.path!r}: non-numeric feature columns {', '.join(non_numeric)}; "
            "encode them as numbers or drop them (only data.target may hold strings)"
        )
    with_missing = [c for c in features.columns if features[c].isna().any()]
    if with_missing:
        raise ConfigError(f"data.path = {cfg.path!r}: feature columns with missing values: {', '.join(with_missing)}")
    target = frame[cfg.target]
    if target.isna().any():
        raise ConfigError(f"data.target = {cfg.target!r} has {int(target.isna().sum())} missing values")
    codes, classes = pd.factorize(target, sort=True)  # distinct values, sorted, -> 0..K-1
    if len(classes) < 2:
        raise ConfigError(f"data.target = {cfg.target!r} has {len(classes)} distinct value(s); at least 2 needed")
    x = features.to_numpy(dtype=np.float32)
    return RawData(x, codes.astype(np.int64), [str(c) for c in classes], 0)


# ----------------------------------------------------------------------------------------------
# Fields only some data sets constrain


def _check_table(cfg: DataConfig) -> None:
    if not cfg.path:
        raise ConfigError(f"data.path is required for data.name = {cfg.name}")
    path = Path(cfg.path)
    if not path.is_file():
        raise ConfigError(f"data.path = {cfg.path!r}: no such file ({path.resolve()})")
    if not cfg.target:
        raise ConfigError(f"data.target (the label column) is required for data.name = {cfg.name}")


def _check_teacher_student(cfg: DataConfig) -> None:
    max_noise = (cfg.n_classes - 1) / cfg.n_classes
    if cfg.noise >= max_noise:
        raise ConfigError(
            f"data.noise = {cfg.noise} is too large for data.name = teacher_student with "
            f"data.n_classes = {cfg.n_classes}: allowed 0 <= noise < (K-1)/K = {max_noise:.4g} "
            "(beyond it the teacher's label is no longer the most likely one, so the Bayes error "
            "would not be data.noise)"
        )


# ----------------------------------------------------------------------------------------------
# Synthetic data: teacher-student


class TeacherStudentSample(NamedTuple):
    """Inputs, the (noisy) labels and the teacher's clean labels of a teacher-student set."""

    x: np.ndarray  # (N, F) float32
    y: np.ndarray  # (N,) int64, the labels a student learns from
    y_clean: np.ndarray  # (N,) int64, argmax of the teacher


@dataclass(frozen=True)
class TeacherNetwork:
    """A fixed random 2-layer tanh MLP: logits = tanh(x W1 + b1) W2 + b2."""

    w1: np.ndarray  # (F, H)
    b1: np.ndarray  # (H,)
    w2: np.ndarray  # (H, K)
    b2: np.ndarray  # (K,)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """The teacher's logits for inputs `x` of shape (N, F) -> (N, K)."""
        return np.tanh(x @ self.w1 + self.b1) @ self.w2 + self.b2

    def labels(self, x: np.ndarray) -> np.ndarray:
        """The clean labels argmax_k logits_k, shape (N,)."""
        return self(x).argmax(axis=1)


@functools.cache
def make_teacher(n_features: int, n_classes: int, seed: int) -> TeacherNetwork:
    """The teacher of (n_features, n_classes, seed): Gaussian weights, output biases balanced.

    Weights are N(0, 1/fan_in) (Xavier-like, so tanh is neither linear nor saturated). A random
    network's argmax favours some classes; the output biases are then tuned on a calibration
    sample until the classes are about equally frequent (a label set dominated by one class
    would make every diagnosis trivial). The bias is part of the fixed function, so the Bayes
    argument of `make_teacher_student` is unaffected.
    """
    rng = np.random.default_rng([seed, 7])
    w1 = rng.standard_normal((n_features, TEACHER_HIDDEN)) / math.sqrt(n_features)
    b1 = 0.5 * rng.standard_normal(TEACHER_HIDDEN)  # offsets so hidden units do not all cross at x = 0
    w2 = rng.standard_normal((TEACHER_HIDDEN, n_classes)) / math.sqrt(TEACHER_HIDDEN)
    logits = np.tanh(rng.standard_normal((8192, n_features)) @ w1 + b1) @ w2  # calibration sample
    b2 = -logits.mean(axis=0)
    step = 0.1 * logits.std()
    best_b2, best_gap = b2, math.inf
    for _ in range(50):  # raise the bias of rare classes, lower that of common ones; keep the best
        freq = np.bincount((logits + b2).argmax(axis=1), minlength=n_classes) / len(logits)
        gap = float(np.abs(freq - 1 / n_classes).max())
        if gap < best_gap:
            best_b2, best_gap = b2, gap
        b2 = b2 - step * np.log(np.maximum(freq, 1e-3) * n_classes)
    return TeacherNetwork(w1, b1, w2, best_b2)


def make_teacher_student(
    n_samples: int, n_features: int, n_classes: int, noise: float, seed: int
) -> TeacherStudentSample:
    """Gaussian inputs labelled by a fixed random teacher, with label noise of rate `noise`.

    x ~ N(0, I_F); the clean label is c(x) = argmax_k teacher(x)_k. With probability `noise`
    the label is replaced by one of the K-1 *other* classes, uniformly. Hence, for every x,

        P(y = c(x) | x) = 1 - noise,    P(y = k | x) = noise / (K-1) for each k != c(x).

    The Bayes classifier predicts the most probable label. c(x) is the most probable one iff
    1 - noise > noise / (K-1), i.e. noise < (K-1)/K; then the Bayes rule is c(x) itself and its
    error is P(y != c(x)) = noise, exactly, whatever the teacher. (A larger noise would make
    the other classes likelier than c(x); it is rejected as a ConfigError.)
    """
    if not 0.0 <= noise < (n_classes - 1) / n_classes:
        raise ConfigError(f"data.noise = {noise}; allowed for teacher_student: 0 <= noise < (K-1)/K")
    teacher = make_teacher(n_features, n_classes, seed)
    rng = np.random.default_rng([seed, 8])
    x = rng.standard_normal((n_samples, n_features))
    y_clean = teacher.labels(x)
    flip = rng.random(n_samples) < noise
    # An offset in 1..K-1 added modulo K picks each other class with probability 1/(K-1).
    offset = rng.integers(1, n_classes, size=n_samples)
    y = np.where(flip, (y_clean + offset) % n_classes, y_clean)
    return TeacherStudentSample(x.astype(np.float32), y.astype(np.int64), y_clean.astype(np.int64))


@functools.cache
def curves_bayes_error(name: str, noise: float, n_mc: int = 10_000, seed: int = 0) -> float:
    """Monte Carlo Bayes error of scikit-learn's moons or circles (factor 0.5) at Gaussian `noise`.

    Each class is a noiseless curve plus N(0, noise^2 I). Its density p(x | c) is the Gaussian
    density averaged over a dense grid of points on the curve (the curve parameter is uniform).
    With equal priors the Bayes rule is argmax_c p(x | c); its error is estimated on `n_mc`
    fresh samples of the generator: mean(argmax_c p(x | c) != y) (standard error <= 0.005).
    The result is a property of the process, so it does not depend on data.seed; cached.
    """
    if noise == 0.0:
        return 0.0  # the two noiseless curves do not touch
    x, y = _make_curves(name, n_mc, noise, seed)
    # Grid spacing well under the noise std, so the averaged density is smooth (curves are <= 2*pi long).
    n_grid = int(min(max(math.ceil(4 * 2 * math.pi / noise), 256), 2048))
    grid, grid_y = _make_curves(name, 2 * n_grid, 0.0, 0)
    points = torch.from_numpy(x)
    log_density = []
    for label in (0, 1):
        curve = torch.from_numpy(grid[grid_y == label])
        sq_dist = torch.cdist(points, curve).square()  # (n_mc, n_grid)
        # log mean_g N(x; g, noise^2 I), up to a constant shared by both classes.
        log_density.append(torch.logsumexp(-sq_dist / (2 * noise**2), dim=1) - math.log(len(curve)))
    bayes_prediction = (log_density[1] > log_density[0]).numpy().astype(np.int64)
    return float(np.mean(bayes_prediction != y))


# ----------------------------------------------------------------------------------------------
# The registry

DATASETS: dict[str, DataSet] = {
    "mnist1d": DataSet(_load_mnist1d, "sequence", (40,), MNIST1D_REFERENCE),
    # 8x8 images, or 64 features with layout: flat. augment: true leaves out flip: a mirrored 2, 3, 5 or 7 is not
    # that digit.
    "digits": DataSet(_load_digits, lambda cfg: "tabular" if cfg.layout == "flat" else "image",
                      lambda cfg: (64,) if cfg.layout == "flat" else (8, 8), 0.0,
                      default_augment={"image": ("rotate", "translate", "contrast", "noise")}),
    "breast_cancer": DataSet(_load_breast_cancer, "tabular", (30,), 0.0),
    "moons": DataSet(_load_curves, "tabular", (2,), lambda cfg: curves_bayes_error("moons", cfg.noise)),
    "circles": DataSet(_load_curves, "tabular", (2,), lambda cfg: curves_bayes_error("circles", cfg.noise)),
    # data.noise is the label-noise rate, which is exactly the Bayes error (make_teacher_student)
    "teacher_student": DataSet(_load_teacher_student, "tabular", lambda cfg: (cfg.n_features,),
                               lambda cfg: float(cfg.noise), check=_check_teacher_student),
    "csv": DataSet(_load_table, "tabular", None, 0.0, check=_check_table),
    "parquet": DataSet(_load_table, "tabular", None, 0.0, check=_check_table),
}

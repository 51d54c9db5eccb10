"""Data for fitlens: the built-in data sets behind one array-backed LightningDataModule.

`build_datamodule(cfg)` is the single entry point. A built-in name gives an `ArrayDataModule`;
a name "package.module:Class" imports a user's own LightningDataModule. Everything a user can
get wrong is reported as a `ConfigError` when the module is built, or at `setup()` at the
latest, naming the field (`data.target`), the value given and what is allowed.

The course's conventions, implemented here:
- train / dev / test come from one distribution (seeded, stratified splits); test is only
  touched at the end;
- inputs are standardized with the mean and std of the *training split only*, and the same
  statistics are reused for dev and test;
- `train_fraction` keeps a nested, stratified subset of the training split (learning curves
  over training-set size), leaving dev and test unchanged;
- every data set carries a reference (human / Bayes) error e* for the bias/variance diagnosis;
- label-preserving augmentation runs on the device, for training batches only.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple, get_args

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from lightning_modules.config import BUILTIN_DATASETS, ConfigError, DataConfig, Layout, check_range, import_object

Kind = Literal["sequence", "image", "tabular"]

# ----------------------------------------------------------------------------------------------
# Augmentation ops

# The ops that keep a label, per kind of input (the seeds: 1-D shift, noise, scale;
# 2-D flip, rotation, translation, contrast, noise; a table's columns have no geometry).
AUGMENT_OPS: dict[Kind, tuple[str, ...]] = {
    "sequence": ("shift", "noise", "scale"),
    "image": ("flip", "rotate", "translate", "contrast", "noise"),
    "tabular": ("noise",),
}
# `augment: true` takes these. Digits leave out flip: a mirrored 2, 3, 5 or 7 is not that digit.
DEFAULT_AUGMENT_OPS: dict[Kind, tuple[str, ...]] = {
    "sequence": ("shift", "noise", "scale"),
    "image": ("rotate", "translate", "contrast", "noise"),
    "tabular": ("noise",),
}
# The order ops run in, whatever order the config lists them: geometry first, then amplitude,
# then noise, so that noise is never rotated or rescaled.
_OP_ORDER = ("flip", "rotate", "translate", "shift", "scale", "contrast", "noise")

MAX_SHIFT = 3  # positions; MNIST-1D's digits are 12-point templates in 40, a few steps keep them whole
NOISE_STD = 0.05  # in normalized units: small next to the unit spread of every feature
SCALE_RANGE = (0.9, 1.1)  # amplitude factor; a digit at 90% or 110% height is the same digit
MAX_ROTATION_DEG = 10.0  # handwriting tilts this much without changing the digit
MAX_TRANSLATE = 1  # pixel; on an 8x8 digit, 2 pixels already push strokes off the image
CONTRAST_RANGE = (0.8, 1.2)  # factor on the deviation from the image's own mean intensity

# ----------------------------------------------------------------------------------------------
# Per-data-set facts

# Which kind of input each built-in data set gives (digits: "image" unless data.layout = flat).
_KINDS: dict[str, Kind] = {
    "mnist1d": "sequence",
    "digits": "image",
    "breast_cancer": "tabular",
    "moons": "tabular",
    "circles": "tabular",
    "teacher_student": "tabular",
    "csv": "tabular",
    "parquet": "tabular",
}

# Reference (human / Bayes) errors e* where a fixed number is right; moons, circles and
# teacher_student compute theirs from the generating process (see `default_reference_error`).
_FIXED_REFERENCE_ERRORS: dict[str, float] = {
    # The MNIST-1D paper reports roughly 96% accuracy for a human expert.
    "mnist1d": 0.04,
    # No estimate exists for these: the seeds' convention e* ~ 0 (override with data.reference_error).
    "digits": 0.0,
    "breast_cancer": 0.0,
    "csv": 0.0,
    "parquet": 0.0,
}

MNIST1D_TRAIN = 4000  # the paper's split: the first 4000 of make_dataset's 5000 ...
MNIST1D_TEST = 1000  # ... and the last 1000
CIRCLES_FACTOR = 0.5  # the inner circle's radius relative to the outer one
TEACHER_HIDDEN = 64  # teacher width: wide enough for a curved decision boundary, small enough to learn


# ----------------------------------------------------------------------------------------------
# Public entry point


def build_datamodule(cfg: DataConfig) -> pl.LightningDataModule:
    """Build the LightningDataModule that `cfg` names.

    A built-in name (`BUILTIN_DATASETS`) gives an `ArrayDataModule`; a name containing ":" is the
    import path "package.module:Class" of a user's LightningDataModule, instantiated with
    `**cfg.args`. A user's module that has no `reference_error` attribute gets one:
    `cfg.reference_error`, or 0.0 (the seeds' e* ~ 0 convention); a given `cfg.reference_error`
    overrides the module's own.

    Raises:
        ConfigError: an unknown name, an import path that does not resolve, arguments the
            user's class does not accept, or any invalid field of a built-in data set.
    """
    if ":" in cfg.name:
        return _import_datamodule(cfg)
    return ArrayDataModule(cfg)


def _import_datamodule(cfg: DataConfig) -> pl.LightningDataModule:
    cls = import_object(cfg.name, "data.name")  # the project's one import-path resolver
    if not (isinstance(cls, type) and issubclass(cls, pl.LightningDataModule)):
        raise ConfigError(f"data.name = {cfg.name!r}: {cls!r} is not a LightningDataModule subclass")
    # Check the arguments against the signature first, so that a TypeError raised by a bug
    # inside the user's __init__ is not mistaken for a configuration error.
    try:
        inspect.signature(cls).bind(**cfg.args)
    except TypeError as err:
        raise ConfigError(f"data.args = {cfg.args!r} do not fit {cfg.name}{inspect.signature(cls)}: {err}") from err
    datamodule = cls(**cfg.args)
    if cfg.reference_error is not None:
        datamodule.reference_error = cfg.reference_error
    elif not hasattr(datamodule, "reference_error"):
        datamodule.reference_error = 0.0
    return datamodule


# ----------------------------------------------------------------------------------------------
# The datamodule


class ArrayDataModule(pl.LightningDataModule):
    """One in-memory data set (any built-in) split into train / dev / test tensors.

    The config is checked when the module is built; the data are loaded, split and normalized
    by the first `setup()` (later calls return at once). After `setup()`:

    Attributes:
        input_shape: one example's shape without the batch dimension: (40,) for mnist1d,
            (8, 8) for digits (layout auto/image), (64,) for flat digits, (F,) for tables.
        n_classes: number of classes K; labels are 0..K-1.
        class_names: the original label of each class index, as strings.
        m_train: training-set size after `train_fraction` (the m of the L2 term lambda/(2m)).
        m_dev, m_test: dev and test set sizes.
        reference_error: e*, `cfg.reference_error` or the data set's default.
        feature_mean, feature_std: float32 tensors of shape `input_shape`, the training split's
            per-feature mean and std (std 0 replaced by 1); zeros and ones if not normalizing.
        split_indices: row indices of "train", "dev" and "test" into the full data set
            (for mnist1d rows 0..3999 are its training set, 4000..4999 its test set).
        train_set, dev_set, test_set: TensorDatasets of (float32 inputs, int64 labels).

    Before `setup()`, `kind` ("sequence", "image" or "tabular") and `augment_ops` are known.
    """

    def __init__(self, cfg: DataConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.kind: Kind = _validate(cfg)
        self.augment_ops: tuple[str, ...] = _resolve_augment(cfg, self.kind)
        self._is_setup = False
        self.input_shape: tuple[int, ...]
        self.n_classes: int
        self.class_names: list[str]
        self.m_train: int
        self.m_dev: int
        self.m_test: int
        self.reference_error: float
        self.feature_mean: torch.Tensor
        self.feature_std: torch.Tensor
        self.split_indices: dict[str, np.ndarray]
        self.train_set: TensorDataset
        self.dev_set: TensorDataset
        self.test_set: TensorDataset

    def setup(self, stage: str | None = None) -> None:
        """Load, split and normalize every split once; all stages share them (the data are small)."""
        if self._is_setup:
            return
        cfg = self.cfg
        raw = _load(cfg)
        splits = make_splits(
            raw.y,
            seed=cfg.seed,
            dev_fraction=cfg.dev_fraction,
            test_fraction=cfg.test_fraction,
            train_fraction=cfg.train_fraction,
            n_fixed_test=raw.n_fixed_test,
        )
        x = raw.x.astype(np.float64)  # statistics in float64, tensors in float32
        x_train = x[splits["train"]]
        if cfg.normalize:
            mean, std = normalization_stats(x_train)
        else:
            mean, std = np.zeros(x.shape[1:]), np.ones(x.shape[1:])

        def dataset(rows: np.ndarray) -> TensorDataset:
            inputs = torch.from_numpy(((x[rows] - mean) / std).astype(np.float32))
            return TensorDataset(inputs, torch.from_numpy(raw.y[rows].astype(np.int64)))

        self.split_indices = splits
        self.train_set = dataset(splits["train"])
        self.dev_set = dataset(splits["dev"])
        self.test_set = dataset(splits["test"])
        self.input_shape = tuple(int(d) for d in x.shape[1:])
        self.n_classes = len(raw.class_names)
        self.class_names = list(raw.class_names)
        self.m_train, self.m_dev, self.m_test = (len(splits[s]) for s in ("train", "dev", "test"))
        self.feature_mean = torch.from_numpy(mean.astype(np.float32))
        self.feature_std = torch.from_numpy(std.astype(np.float32))
        self.reference_error = (
            float(cfg.reference_error) if cfg.reference_error is not None else default_reference_error(cfg)
        )
        self._is_setup = True

    def summary(self) -> dict[str, Any]:
        """Sizes and facts of the data set after `setup()`, e.g. to log as run parameters."""
        return {
            "name": self.cfg.name,
            "kind": self.kind,
            "input_shape": list(self.input_shape),
            "n_classes": self.n_classes,
            "m_train": self.m_train,
            "m_dev": self.m_dev,
            "m_test": self.m_test,
            "reference_error": self.reference_error,
            "augment_ops": list(self.augment_ops),
        }

    def train_dataloader(self) -> DataLoader:
        """The training split, reshuffled every epoch by a generator seeded with `data.seed`."""
        generator = torch.Generator().manual_seed(self.cfg.seed)
        return self._loader(self.train_set, shuffle=True, generator=generator)

    def val_dataloader(self) -> DataLoader:
        """The dev set, in a fixed order."""
        return self._loader(self.dev_set)

    def test_dataloader(self) -> DataLoader:
        """The test set, in a fixed order (touch only at the end)."""
        return self._loader(self.test_set)

    def train_eval_dataloader(self) -> DataLoader:
        """The training split, unshuffled and never augmented: the clean train error."""
        return self._loader(self.train_set)

    def _loader(
        self, dataset: TensorDataset, shuffle: bool = False, generator: torch.Generator | None = None
    ) -> DataLoader:
        # num_workers=0: the tensors are in memory and tiny; worker processes cost more than they save.
        return DataLoader(dataset, batch_size=self.cfg.batch_size, shuffle=shuffle, generator=generator, num_workers=0)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Augment training batches on the device; dev, test and train-eval batches pass unchanged."""
        trainer = self.trainer
        if not self.augment_ops or trainer is None or not trainer.training:
            return batch
        x, y = batch
        mean = self.feature_mean.to(x.device)
        std = self.feature_std.to(x.device)
        x = augment_batch(x, self.augment_ops, self.kind, mean=mean, std=std)
        return (x, y) if isinstance(batch, tuple) else [x, y]


# ----------------------------------------------------------------------------------------------
# Validation (no data loaded)


def _validate(cfg: DataConfig) -> Kind:
    """Check every field that can be checked without loading data; return the kind of input."""
    if cfg.name not in BUILTIN_DATASETS:
        raise ConfigError(
            f"data.name = {cfg.name!r} is not a built-in data set; allowed: {', '.join(BUILTIN_DATASETS)}, "
            "or the import path 'package.module:Class' of a LightningDataModule"
        )
    _check_ranges(cfg)
    if cfg.layout not in get_args(Layout):
        raise ConfigError(f"data.layout = {cfg.layout!r}; allowed: {', '.join(get_args(Layout))}")
    if cfg.name != "digits" and cfg.layout == "image":
        raise ConfigError(
            f"data.layout = 'image' applies only to data.name = digits (got data.name = {cfg.name!r}); "
            "allowed here: auto, flat"
        )
    if cfg.name in ("csv", "parquet"):
        if not cfg.path:
            raise ConfigError(f"data.path is required for data.name = {cfg.name}")
        path = Path(cfg.path)
        if not path.is_file():
            raise ConfigError(f"data.path = {cfg.path!r}: no such file ({path.resolve()})")
        if not cfg.target:
            raise ConfigError(f"data.target (the label column) is required for data.name = {cfg.name}")
    if cfg.name == "teacher_student":
        max_noise = (cfg.n_classes - 1) / cfg.n_classes
        if cfg.noise >= max_noise:
            raise ConfigError(
                f"data.noise = {cfg.noise} is too large for data.name = teacher_student with "
                f"data.n_classes = {cfg.n_classes}: allowed 0 <= noise < (K-1)/K = {max_noise:.4g} "
                "(beyond it the teacher's label is no longer the most likely one, so the Bayes error "
                "would not be data.noise)"
            )
    if cfg.name == "digits" and cfg.layout == "flat":
        return "tabular"
    return _KINDS[cfg.name]


def _check_ranges(cfg: DataConfig) -> None:
    """Check the numeric bounds that the schema declares in its field metadata (for configs built in code)."""
    for f in dataclasses.fields(cfg):
        value, bounds = getattr(cfg, f.name), f.metadata.get("range")
        if bounds and value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise ConfigError(f"data.{f.name} = {value!r} must be a number")
        check_range(value, bounds, f"data.{f.name}")


def _resolve_augment(cfg: DataConfig, kind: Kind) -> tuple[str, ...]:
    """The augmentation ops to run (canonical order), or () when augmentation is off."""
    allowed = AUGMENT_OPS[kind]
    augment = cfg.augment
    if isinstance(augment, bool):
        augment = list(DEFAULT_AUGMENT_OPS[kind]) if augment else []
    if isinstance(augment, str) or not isinstance(augment, Sequence):
        raise ConfigError(
            f"data.augment = {augment!r} must be true, false or a list of ops; "
            f"allowed ops for data.name = {cfg.name}: {', '.join(allowed)}"
        )
    unknown = [op for op in augment if op not in allowed]
    if unknown:
        raise ConfigError(
            f"data.augment = {list(augment)!r}: {', '.join(map(repr, unknown))} not available for "
            f"data.name = {cfg.name} ({kind} inputs); allowed ops: {', '.join(allowed)}"
        )
    return tuple(op for op in _OP_ORDER if op in augment)


# ----------------------------------------------------------------------------------------------
# Loading


class _RawData(NamedTuple):
    x: np.ndarray  # (N, *input_shape)
    y: np.ndarray  # (N,) int labels 0..K-1
    class_names: list[str]
    n_fixed_test: int  # > 0: the last rows are the data set's own test split


def _load(cfg: DataConfig) -> _RawData:
    name = cfg.name
    if name == "mnist1d":
        x, y = _mnist1d_arrays()
        return _RawData(x, y, [str(k) for k in range(10)], MNIST1D_TEST)
    if name == "digits":
        x, y = _digits_arrays()
        if cfg.layout == "flat":
            x = x.reshape(len(x), -1)
        return _RawData(x, y, [str(k) for k in range(10)], 0)
    if name == "breast_cancer":
        from sklearn.datasets import load_breast_cancer

        bunch = load_breast_cancer()
        return _RawData(bunch.data, bunch.target, [str(n) for n in bunch.target_names], 0)
    if name in ("moons", "circles"):
        x, y = _make_curves(name, cfg.n_samples, cfg.noise, cfg.seed)
        return _RawData(x, y, ["0", "1"], 0)
    if name == "teacher_student":
        sample = make_teacher_student(cfg.n_samples, cfg.n_features, cfg.n_classes, cfg.noise, cfg.seed)
        return _RawData(sample.x, sample.y, [str(k) for k in range(cfg.n_classes)], 0)
    return _load_table(cfg)


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


def _make_curves(name: str, n_samples: int, noise: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two moons or two circles with Gaussian noise of std `noise` (scikit-learn's generators)."""
    from sklearn.datasets import make_circles, make_moons

    if name == "moons":
        return make_moons(n_samples, noise=noise, random_state=seed)
    return make_circles(n_samples, noise=noise, factor=CIRCLES_FACTOR, random_state=seed)


def _load_table(cfg: DataConfig) -> _RawData:
    """A user's CSV or Parquet table: the target column gives the labels, all others the features."""
    import pandas as pd

    assert cfg.path is not None and cfg.target is not None  # checked by _validate
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
    return _RawData(x, codes.astype(np.int64), [str(c) for c in classes], 0)


# ----------------------------------------------------------------------------------------------
# Splits and normalization (pure)


def stratified_order(y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random order of the indices of `y` in which every prefix is (nearly) stratified.

    Each class is shuffled; its j-th member of n_c gets the key (j + u) / n_c, u ~ U(0, 1), and
    the indices are sorted by key. Any prefix of length n then holds n * n_c / N members of
    class c, give or take one, and a shorter prefix is contained in a longer one: subsets for
    learning curves are nested, so their curves differ by data size, not by luck of the draw.
    """
    keys = np.empty(len(y))
    for label in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == label))
        keys[members] = (np.arange(len(members)) + rng.random(len(members))) / len(members)
    return np.argsort(keys, kind="stable")


def make_splits(
    y: np.ndarray,
    *,
    seed: int,
    dev_fraction: float,
    test_fraction: float,
    train_fraction: float = 1.0,
    n_fixed_test: int = 0,
) -> dict[str, np.ndarray]:
    """Seeded, stratified, disjoint index arrays "train", "dev" and "test" into `y`.

    Test is `test_fraction` of all rows, or the last `n_fixed_test` rows for a data set with its
    own test split; dev is `dev_fraction` of the rest; train is what remains, of which
    `train_fraction` is kept (nested across fractions). Dev and test do not depend on
    `train_fraction`. Each step has its own random stream derived from `seed`.
    """
    n = len(y)
    if n_fixed_test:
        test = np.arange(n - n_fixed_test, n)
        pool = np.arange(n - n_fixed_test)
    else:
        n_test = round(test_fraction * n)
        if not 1 <= n_test <= n - 2:
            raise ConfigError(
                f"data.test_fraction = {test_fraction} of {n} rows gives {n_test} test rows; "
                f"allowed: at least 1 and leaving 2 for train and dev"
            )
        order = stratified_order(y, np.random.default_rng([seed, 0]))
        test, pool = np.sort(order[:n_test]), order[n_test:]
    n_dev = round(dev_fraction * len(pool))
    if not 1 <= n_dev <= len(pool) - 1:
        raise ConfigError(
            f"data.dev_fraction = {dev_fraction} of {len(pool)} rows gives {n_dev} dev rows; "
            "allowed: at least 1 and leaving 1 for train"
        )
    order = pool[stratified_order(y[pool], np.random.default_rng([seed, 1]))]
    dev, train = np.sort(order[:n_dev]), order[n_dev:]
    n_keep = max(1, round(train_fraction * len(train)))
    order = train[stratified_order(y[train], np.random.default_rng([seed, 2]))]
    return {"train": np.sort(order[:n_keep]), "dev": dev, "test": test}


def normalization_stats(x_train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and std (ddof 0) over the training rows; a constant feature gets std 1.

    Constant features (digits' always-blank corner pixels) would otherwise divide by zero;
    with std 1 they become 0 after centering, which is what they carry: nothing.
    """
    mean = x_train.mean(axis=0)
    std = x_train.std(axis=0)
    return mean, np.where(std > 0, std, 1.0)


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


# ----------------------------------------------------------------------------------------------
# Reference errors


def default_reference_error(cfg: DataConfig) -> float:
    """The data set's own e*, used when `data.reference_error` is not given.

    mnist1d: 0.04 (human expert); teacher_student: data.noise (exact Bayes error); moons and
    circles: the Bayes error of their generator at data.noise (Monte Carlo); digits,
    breast_cancer, csv, parquet: 0.0 (no estimate; the seeds' e* ~ 0 convention).
    """
    if cfg.name == "teacher_student":
        return float(cfg.noise)  # exact: see make_teacher_student
    if cfg.name in ("moons", "circles"):
        return curves_bayes_error(cfg.name, cfg.noise)
    return _FIXED_REFERENCE_ERRORS[cfg.name]


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
# Augmentation (pure, on whatever device the batch is on)


def augment_batch(
    x: torch.Tensor,
    ops: Sequence[str],
    kind: Kind,
    mean: torch.Tensor | None = None,
    std: torch.Tensor | None = None,
) -> torch.Tensor:
    """Apply label-preserving augmentation ops to a batch of normalized inputs.

    x: (B, L) sequences, (B, H, W) images or (B, F) tables, normalized with `mean` and `std`
    (shape x.shape[1:]; None = not normalized). Geometric and amplitude ops act on the raw
    values (a rotated image must rotate pixels, not per-pixel z-scores whose scales differ);
    noise is added afterwards in normalized units. Ops run in a fixed order (`_OP_ORDER`);
    randomness comes from torch's global generator (seeded by the trainer).
    """
    allowed = AUGMENT_OPS[kind]
    bad = [op for op in ops if op not in allowed]
    if bad:
        raise ConfigError(f"data.augment = {list(ops)!r}: {bad} not available for {kind} inputs; allowed: {allowed}")
    if not ops:
        return x
    mean = torch.zeros((), device=x.device) if mean is None else mean
    std = torch.ones((), device=x.device) if std is None else std
    raw = x * std + mean
    ordered = [op for op in _OP_ORDER if op in ops]
    for op in ordered:
        if op != "noise":
            raw = _RAW_OPS[op](raw)
    out = (raw - mean) / std
    if "noise" in ordered:
        out = out + NOISE_STD * torch.randn_like(out)
    return out


def _uniform(batch: int, low: float, high: float, like: torch.Tensor) -> torch.Tensor:
    return torch.empty(batch, device=like.device, dtype=like.dtype).uniform_(low, high)


def _shift_1d(x: torch.Tensor) -> torch.Tensor:
    """Circularly shift each sequence (B, L) by its own random offset in [-MAX_SHIFT, MAX_SHIFT]."""
    batch, length = x.shape[0], x.shape[-1]
    offset = torch.randint(-MAX_SHIFT, MAX_SHIFT + 1, (batch, 1), device=x.device)
    index = (torch.arange(length, device=x.device) - offset) % length  # (B, L)
    return torch.gather(x, -1, index.expand_as(x))


def _scale(x: torch.Tensor) -> torch.Tensor:
    """Multiply each example by its own amplitude factor ~ U(SCALE_RANGE)."""
    factor = _uniform(x.shape[0], *SCALE_RANGE, like=x)
    return x * factor.view(-1, *([1] * (x.dim() - 1)))


def _flip(x: torch.Tensor) -> torch.Tensor:
    """Mirror each image (B, H, W) left-right with probability 1/2."""
    mirror = torch.rand(x.shape[0], device=x.device) < 0.5
    return torch.where(mirror.view(-1, 1, 1), x.flip(-1), x)


def _affine(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Resample images (B, H, W) through affine maps theta (B, 2, 3); outside pixels are 0 (blank)."""
    images = x.unsqueeze(1)  # (B, 1, H, W)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False).squeeze(1)


def _rotate(x: torch.Tensor) -> torch.Tensor:
    """Rotate each image by its own angle ~ U(-MAX_ROTATION_DEG, MAX_ROTATION_DEG)."""
    angle = torch.deg2rad(_uniform(x.shape[0], -MAX_ROTATION_DEG, MAX_ROTATION_DEG, like=x))
    cos, sin, zero = torch.cos(angle), torch.sin(angle), torch.zeros_like(angle)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)  # (B, 2, 3)
    return _affine(x, theta)


def _translate(x: torch.Tensor) -> torch.Tensor:
    """Shift each image by whole pixels in [-MAX_TRANSLATE, MAX_TRANSLATE] along each axis, blank-filled."""
    batch, height, width = x.shape
    pixels = torch.randint(-MAX_TRANSLATE, MAX_TRANSLATE + 1, (batch, 2), device=x.device).to(x.dtype)
    theta = torch.zeros(batch, 2, 3, device=x.device, dtype=x.dtype)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0
    # With align_corners=False one pixel is 2/size in grid units; sampling at -shift moves content by +shift.
    theta[:, 0, 2] = -2.0 * pixels[:, 0] / width
    theta[:, 1, 2] = -2.0 * pixels[:, 1] / height
    return _affine(x, theta)


def _contrast(x: torch.Tensor) -> torch.Tensor:
    """Scale each image's deviation from its own mean intensity by a factor ~ U(CONTRAST_RANGE)."""
    factor = _uniform(x.shape[0], *CONTRAST_RANGE, like=x).view(-1, 1, 1)
    image_mean = x.mean(dim=(-2, -1), keepdim=True)
    return image_mean + factor * (x - image_mean)


_RAW_OPS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "shift": _shift_1d,
    "scale": _scale,
    "flip": _flip,
    "rotate": _rotate,
    "translate": _translate,
    "contrast": _contrast,
}

"""Data for fitlens: the built-in data sets (`lightning_modules.datasets`) behind one array-backed
LightningDataModule.

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
- label-preserving augmentation (`lightning_modules.augment`) runs on the device, for training batches only.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Sequence
from typing import Any, get_args

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from lightning_modules.augment import AUGMENT_OPS, Kind, augment_batch, in_order
from lightning_modules.config import ConfigError, DataConfig, Layout, check_range, import_object
from lightning_modules.datasets import DATASETS

# ----------------------------------------------------------------------------------------------
# Public entry point


def build_datamodule(cfg: DataConfig) -> pl.LightningDataModule:
    """Build the LightningDataModule that `cfg` names.

    A built-in name (`lightning_modules.datasets.DATASETS`) gives an `ArrayDataModule`; a name containing ":" is the
    import path "package.module:Class" of a user's LightningDataModule, instantiated with
    `**cfg.args`. A user's module that has no `reference_error` attribute gets one:
    `cfg.reference_error`, or 0.0 (the course's e* ~ 0: docs/conventions.md); a given `cfg.reference_error`
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
        majority_fraction: the fraction of the training split in its most frequent class (1/K when the
            classes are balanced; always predicting that class has the error 1 - majority_fraction).
        input_std: the std of every training input entry as the network sees it (about 1 when normalized).
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
        self.majority_fraction: float
        self.input_std: float
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
        entry = DATASETS[cfg.name]
        raw = entry.load(cfg)
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
        self.majority_fraction = float(np.bincount(raw.y[splits["train"]]).max() / self.m_train)
        self.input_std = float(self.train_set.tensors[0].double().std()) if self.m_train > 1 else 0.0
        self.feature_mean = torch.from_numpy(mean.astype(np.float32))
        self.feature_std = torch.from_numpy(std.astype(np.float32))
        expected = entry.shape_of(cfg)
        if expected is not None and self.input_shape != expected:
            raise ConfigError(f"data.name = {cfg.name}: its examples have shape {self.input_shape}, the registry "
                              f"says {expected}")
        self.reference_error = (
            float(cfg.reference_error) if cfg.reference_error is not None else entry.reference_error_of(cfg)
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
            "majority_fraction": self.majority_fraction,
            "input_std": self.input_std,
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
    if cfg.name not in DATASETS:
        raise ConfigError(
            f"data.name = {cfg.name!r} is not a built-in data set; allowed: {', '.join(DATASETS)}, "
            "or the import path 'package.module:Class' of a LightningDataModule"
        )
    _check_ranges(cfg)
    if cfg.layout not in get_args(Layout):
        raise ConfigError(f"data.layout = {cfg.layout!r}; allowed: {', '.join(get_args(Layout))}")
    dataset = DATASETS[cfg.name]
    if cfg.layout == "image" and dataset.kind_of(cfg) != "image":
        images = [name for name, d in DATASETS.items() if d.kind_of(cfg) == "image"]
        raise ConfigError(
            f"data.layout = 'image' applies only to data.name = {', '.join(images)} (got data.name = "
            f"{cfg.name!r}); allowed here: auto, flat"
        )
    dataset.check(cfg)
    return dataset.kind_of(cfg)


def _check_ranges(cfg: DataConfig) -> None:
    """Check the numeric bounds that the schema declares in its field metadata (for configs built in code)."""
    for f in dataclasses.fields(cfg):
        value, bounds = getattr(cfg, f.name), f.metadata.get("range")
        if bounds and value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise ConfigError(f"data.{f.name} = {value!r} must be a number")
        check_range(value, bounds, f"data.{f.name}")


def _resolve_augment(cfg: DataConfig, kind: Kind) -> tuple[str, ...]:
    """The augmentation ops to run (in the order they run), or () when augmentation is off."""
    allowed = AUGMENT_OPS[kind]
    augment = cfg.augment
    if isinstance(augment, bool):
        augment = list(DATASETS[cfg.name].default_augment_of(cfg)) if augment else []
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
    return in_order(augment)


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

"""Typed run configuration: the one schema that models, data, training and tracking share.

Plain dataclasses (as nanoGPT's GPTConfig): the defaults *are* the default run, an
MLP on MNIST-1D. Loading YAML, overrides and validation live in `tracking.config`;
field metadata here says what is allowed (`ge`, `gt`, `le`, `lt`), and `Literal`
types list the allowed names.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Any, Literal

Activation = Literal["sigmoid", "tanh", "relu", "leaky_relu", "elu", "gelu", "mish", "maxout"]
Init = Literal["zeros", "constant", "normal", "uniform", "xavier", "glorot", "he", "default"]
Arch = Literal["mlp", "cnn1d", "cnn2d"]
Schedule = Literal["none", "step", "exponential", "inverse_time", "cosine"]
Layout = Literal["auto", "flat", "image"]
DiagnosticsKind = Literal["weight", "bias", "grad", "preact", "act", "update"]
DiagnosticsPreset = Literal["off", "economy", "default", "full"]


class ConfigError(ValueError):
    """A user's configuration is invalid; the message names the field, the value and what is allowed."""


def allowed_range(**bounds: float) -> dict[str, Any]:
    """A field's metadata saying which numbers it allows (`ge`, `gt`, `le`, `lt`): `check_range` reads it."""
    return {"range": bounds}


# Compared as the numbers they are: float() of a 400-digit integer would overflow.
_BOUND_TESTS = {"ge": (operator.ge, ">="), "gt": (operator.gt, ">"), "le": (operator.le, "<="),
                "lt": (operator.lt, "<")}
MAX_SEED = 2**32 - 1  # numpy's and Lightning's seeds are unsigned 32-bit


def check_range(value: Any, bounds: dict[str, float] | None, dotted: str) -> None:
    """Raise ConfigError when `value` (a number or a list of numbers) breaks the field's `range` metadata."""
    if not bounds or value is None:
        return
    for item in value if isinstance(value, list) else [value]:
        if not isinstance(item, int | float) or isinstance(item, bool):
            continue  # the type check names non-numbers
        for name, bound in bounds.items():
            if not _BOUND_TESTS[name][0](item, bound):
                allowed = " and ".join(f"{_BOUND_TESTS[n][1]} {b}" for n, b in bounds.items())
                shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
                raise ConfigError(f"{dotted} = {shown} is out of range; allowed: {allowed}")


@dataclass
class ModelConfig:
    arch: Arch = "mlp"
    # Hidden layers; 0 is logistic (binary) / softmax regression.
    depth: int = field(default=2, metadata=allowed_range(ge=0, le=64))
    # One width for every hidden layer, or a list with one entry per hidden layer.
    width: int | list[int] = field(default=100, metadata=allowed_range(ge=1))
    activation: Activation = "relu"
    maxout_pieces: int = field(default=2, metadata=allowed_range(ge=2, le=16))
    leaky_slope: float = field(default=0.01, metadata=allowed_range(ge=0.0, lt=1.0))
    init: Init = "he"
    init_std: float = field(default=0.01, metadata=allowed_range(gt=0.0))  # for init=normal
    init_value: float = 0.0  # for init=constant
    init_bound: float = field(default=0.05, metadata=allowed_range(gt=0.0))  # for init=uniform: U(-bound, bound)
    batch_norm: bool = False
    # Inverted dropout: probability of keeping a unit, one value or one per hidden layer (1 = off).
    keep_prob: float | list[float] = field(default=1.0, metadata=allowed_range(gt=0.0, le=1.0))
    input_keep_prob: float = field(default=1.0, metadata=allowed_range(gt=0.0, le=1.0))
    # DropConnect: probability of keeping each weight of a hidden layer (1 = off).
    dropconnect_keep_prob: float = field(default=1.0, metadata=allowed_range(gt=0.0, le=1.0))
    # CNNs: one conv block per entry (configs/mnist1d_cnn.yaml: the MNIST-1D paper's three of 25 channels).
    channels: list[int] = field(default_factory=lambda: [32, 32, 32], metadata=allowed_range(ge=1))
    kernel_size: int = field(default=5, metadata=allowed_range(ge=1, le=15))
    stride: int = field(default=2, metadata=allowed_range(ge=1, le=4))

    def widths(self) -> list[int]:
        """The width of each hidden layer."""
        return list(self.width) if isinstance(self.width, list) else [self.width] * self.depth

    def keep_probs(self) -> list[float]:
        """The keep_prob of each hidden layer."""
        return list(self.keep_prob) if isinstance(self.keep_prob, list) else [self.keep_prob] * self.depth


@dataclass
class DataConfig:
    # A built-in data set, or the import path "package.module:Class" of a LightningDataModule.
    name: str = "mnist1d"
    args: dict[str, Any] = field(default_factory=dict)  # keyword arguments of a user's LightningDataModule
    path: str | None = None  # csv / parquet file
    target: str | None = None  # csv / parquet label column
    layout: Layout = "auto"  # digits: "image" (8x8, default) or "flat" (64)
    seed: int = field(default=0, metadata=allowed_range(ge=0, le=MAX_SEED))
    n_samples: int = field(default=2000, metadata=allowed_range(ge=20))  # moons, circles, teacher_student
    n_features: int = field(default=20, metadata=allowed_range(ge=1))  # teacher_student
    n_classes: int = field(default=4, metadata=allowed_range(ge=2))  # teacher_student
    # moons / circles: std of the Gaussian noise; teacher_student: the label-noise rate (= Bayes error).
    noise: float = field(default=0.1, metadata=allowed_range(ge=0.0, lt=1.0))
    dev_fraction: float = field(default=0.2, metadata=allowed_range(gt=0.0, lt=1.0))
    test_fraction: float = field(default=0.2, metadata=allowed_range(gt=0.0, lt=1.0))  # sets without a fixed test split
    train_fraction: float = field(default=1.0, metadata=allowed_range(gt=0.0, le=1.0))  # for learning curves
    batch_size: int = field(default=100, metadata=allowed_range(ge=1))  # the MNIST-1D paper's
    normalize: bool = True  # standardize with the training split's mean and std
    # Label-preserving augmentation: false, true (the data set's default ops) or a list of ops.
    augment: bool | list[str] = False
    # Human / Bayes error; null takes the data set's own estimate.
    reference_error: float | None = field(default=None, metadata=allowed_range(ge=0.0, le=1.0))


@dataclass
class OptimConfig:
    # sgd, rmsprop, adam, adamw, or the name of any other torch.optim class (e.g. Adagrad).
    name: str = "adam"
    lr: float = field(default=1e-2, metadata=allowed_range(gt=0.0))  # the MNIST-1D paper's, for Adam
    momentum: float = field(default=0.0, metadata=allowed_range(ge=0.0, lt=1.0))  # sgd
    nesterov: bool = False  # sgd, needs momentum > 0
    beta1: float = field(default=0.9, metadata=allowed_range(ge=0.0, lt=1.0))  # adam, adamw
    beta2: float = field(default=0.999, metadata=allowed_range(ge=0.0, lt=1.0))  # adam, adamw; rmsprop's decay
    eps: float = field(default=1e-8, metadata=allowed_range(gt=0.0))
    # Decoupled weight decay (AdamW): not the L2 term of the cost, which is reg.l2.
    weight_decay: float = field(default=0.0, metadata=allowed_range(ge=0.0))
    kwargs: dict[str, Any] = field(default_factory=dict)  # extra arguments of the torch.optim class
    schedule: Schedule = "none"
    step_size: int = field(default=10, metadata=allowed_range(ge=1))  # step: epochs between decays
    gamma: float = field(default=0.5, metadata=allowed_range(gt=0.0, le=1.0))  # step, exponential
    decay_rate: float = field(default=1.0, metadata=allowed_range(ge=0.0))  # inverse_time: lr / (1 + rate * epoch)
    min_lr: float = field(default=0.0, metadata=allowed_range(ge=0.0))  # cosine


@dataclass
class RegConfig:
    # The cost J gains lambda/(2m) * sum ||W||_F^2 (l2) and lambda/(2m) * sum |W| (l1), weights only.
    l2: float = field(default=0.0, metadata=allowed_range(ge=0.0))
    l1: float = field(default=0.0, metadata=allowed_range(ge=0.0))


@dataclass
class TrainConfig:
    max_epochs: int = field(default=150, metadata=allowed_range(ge=1))  # a cap: early stopping ends most runs sooner
    early_stopping: bool = True
    # Epochs without a better dev error; MNIST-1D's dev error is noisy, and 10 stops too soon.
    patience: int = field(default=20, metadata=allowed_range(ge=1))
    seed: int = field(default=0, metadata=allowed_range(ge=0, le=MAX_SEED))
    accelerator: str = "auto"
    devices: int = 1  # one process on one device; data-parallel workers are not available yet
    precision: str = "32-true"
    # CPU threads for torch; null = every core but one, which is left to the MLflow sender process
    # (on 2 cores a second torch thread gains small networks nothing and fights the sender for the core).
    threads: int | None = field(default=None, metadata=allowed_range(ge=1))
    # Cap on batches per epoch (0 = all): the smoke-test switch.
    limit_batches: int = field(default=0, metadata=allowed_range(ge=0))


@dataclass
class DiagnosticsConfig:
    """What the diagnostics callback records; null fields take the preset's value (tracking/diagnostics.py)."""

    preset: DiagnosticsPreset = "default"
    kinds: list[DiagnosticsKind] | None = None
    every: int | None = field(default=None, metadata=allowed_range(ge=1))  # steps between snapshots
    log_spaced: bool | None = None  # also snapshot at steps 1, 2, 4, 8, ... below `every`
    bins: int | None = field(default=None, metadata=allowed_range(ge=2, le=1024))
    # Layer names (as in named_modules) matched with shell-style patterns; empty include = every
    # parametrized leaf module.
    include: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)


@dataclass
class RunConfig:
    experiment: str = "fitlens"
    run_name: str | None = None
    # The import path "package.module:Class" of a user's LightningModule (null: the built-in one).
    module: str | None = None
    module_args: dict[str, Any] = field(default_factory=dict)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    reg: RegConfig = field(default_factory=RegConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    diagnostics: DiagnosticsConfig = field(default_factory=DiagnosticsConfig)


def import_object(path: str, field_name: str) -> Any:
    """The object named by "package.module:Name" (the current directory is importable, as with `python -m`)."""
    import importlib
    import os
    import sys

    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"{field_name} = {path!r}: expected an import path like 'package.module:ClassName'")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ConfigError(f"{field_name} = {path!r}: cannot import module {module_name!r} ({err})") from None
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ConfigError(f"{field_name} = {path!r}: module {module_name!r} has no attribute {attr!r}") from None

"""Sweep files: a base run config, a search space over its dotted keys, and how to search it.

The groundwork of `fitlens sweep` (Ray Tune), kept pure and without Ray: loading and validating a sweep
file, narrowing its space around the best trials (coarse to fine) and building each trial's run config.
`tracking.sweep.space` turns the space into Ray Tune's search space.

A sweep file (YAML)::

    name: lr                     # the experiment the trials go to (unless base sets `experiment`)
    description: one paragraph, the lesson the study shows
    base: {model: {depth: 2}, train: {max_epochs: 20}}     # a run config: overrides of the defaults
    space:                       # dotted run-config keys -> one distribution each
      optim.lr: {loguniform: [1.0e-4, 1.0e-1]}
      optim.beta1: {loguniform_one_minus: [0.8, 0.999]}
      model.width: {randint: [16, 256]}                    # integers, both bounds included
      model.activation: {choice: [relu, tanh]}
      optim: {grid: [{name: sgd}, {name: sgd, momentum: 0.9}, {name: adam}]}   # a section: bundles
    search: random               # random | grid | tpe
    scheduler: fifo              # fifo | asha | pbt
    num_samples: 8               # random draws; each is crossed with every grid combination
    max_concurrent: 2
    resources: {cpus: 1, gpus: 0, workers: 1}    # workers > 1: cpus and gpus are per worker
    metric: dev/error            # minimized
    grace_period: 1              # ASHA: epochs before a trial may be stopped
    reduction_factor: 3          # ASHA: keep the best third at each rung
    perturbation_interval: 2     # PBT: epochs between exploit/explore steps
    max_failures: 2              # a trial whose process dies is retried from its checkpoint this often
    smoke: {num_samples: 1, base: {train: {max_epochs: 1, limit_batches: 2}}}   # what --smoke changes

A space key may name a section (`optim`, `model`): its values are then mappings merged into that
section, for settings that only make sense together (`init: normal` with its `init_std`). Keys are
applied shallowest first, so `optim.lr` wins over an `lr` inside an `optim` bundle.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml

from lightning_modules.config import ConfigError, RunConfig, allowed_range
from tracking.config import (
    INT64,
    as_float,
    build_dataclass,
    check_tree,
    config_to_dict,
    parse_override,
    read_yaml,
    set_dotted,
    show_value,
)

__all__ = [
    "DISTRIBUTIONS", "Distribution", "Resources", "SmokeConfig", "SweepConfig", "apply",
    "dump_sweep", "list_studies", "load_sweep", "override_sweep", "sweep_from_dict", "with_smoke",
]

Search = Literal["random", "grid", "tpe"]  # tpe: Optuna's tree-structured Parzen estimator
Scheduler = Literal["fifo", "asha", "pbt"]
# Every one is minimized; never the test set's (choosing on it would leak it into the estimate).
Metric = Literal["dev/error", "dev/loss", "train/error", "train/loss"]
Scale = Literal["log", "log_one_minus", "linear", "categorical", "grid"]

# Distribution name -> its scale. The right scale is the lesson: log-uniform for a learning rate,
# log-uniform in 1 - beta for momentum betas (0.9 -> 0.99 averages ten times as many steps).
DISTRIBUTIONS: dict[str, Scale] = {
    "loguniform": "log",
    "loguniform_one_minus": "log_one_minus",
    "uniform": "linear",
    "randint": "linear",
    "choice": "categorical",
    "grid": "grid",
}
_NUMERIC = ("loguniform", "loguniform_one_minus", "uniform", "randint")


@dataclass(frozen=True)
class Distribution:
    """One dimension of the search space: `kind` (a key of DISTRIBUTIONS) and its `args`.

    Numeric kinds hold `(low, high)`: loguniform and uniform draw from [low, high] (the upper
    end is reached with probability zero), randint from the integers low..high, both included.
    choice and grid hold their values; Tune crosses grid values instead of drawing them.
    """

    kind: str
    args: tuple[Any, ...]

    @property
    def scale(self) -> Scale:
        """"log", "log_one_minus", "linear", "categorical" or "grid"."""
        return DISTRIBUTIONS[self.kind]

    @property
    def bounds(self) -> tuple[Any, ...]:
        """(low, high) for the numeric kinds; the values for choice and grid."""
        return self.args

    @property
    def values(self) -> list[Any]:
        """Every value this distribution can produce, or its extremes for the numeric kinds."""
        if self.kind == "randint":
            return [int(self.args[0]), int(self.args[1])]
        if self.kind in _NUMERIC:
            return [float(self.args[0]), float(self.args[1])]
        return list(self.args)

    def narrow(self, values: Sequence[Any], margin: float = 0.25) -> Distribution:
        """Coarse to fine: the same kind around `values` (the best trials'), within the old bounds.

        Numeric kinds span [min(values), max(values)] widened on each side by `margin` times the
        old range, measured on the distribution's own scale: on the log scale that is the factor
        f = (high / low) ** margin, giving [min / f, max * f]; on log_one_minus the same on 1 - beta;
        randint rounds outwards. choice and grid keep the values seen, in their old order.
        """
        if not values:
            raise ValueError("narrow() needs at least one value (the best trials' values)")
        if not margin >= 0:
            raise ValueError(f"margin = {margin!r}: expected a number >= 0")
        if self.kind in ("choice", "grid"):
            unknown = [v for v in values if v not in self.args]
            if unknown:
                raise ValueError(f"values {unknown!r} are not among the {self.kind} values {list(self.args)!r}")
            return Distribution(self.kind, tuple(v for v in self.args if v in values))
        low, high = self.args
        outside = [v for v in values if not low <= v <= high]
        if outside:
            raise ValueError(f"values {outside!r} lie outside the bounds [{low!r}, {high!r}]")
        to_scale, from_scale = _SCALE_MAPS[self.kind]
        # On log_one_minus the map reverses the order (a larger beta is a smaller 1 - beta).
        ends = sorted([to_scale(low), to_scale(high)])
        seen = sorted(to_scale(v) for v in values)
        pad = margin * (ends[1] - ends[0])
        new = sorted(from_scale(max(ends[0], min(ends[1], x))) for x in (seen[0] - pad, seen[-1] + pad))
        if self.kind == "randint":
            # floor/ceil with a tolerance: exp/log round trips land a hair off an integer
            new = [max(low, math.floor(new[0] + 1e-9)), min(high, math.ceil(new[1] - 1e-9))]
        else:
            new = [max(low, new[0]), min(high, new[1])]  # the round trip may step a hair outside
        return Distribution(self.kind, tuple(new))

    def to_dict(self) -> dict[str, list[Any]]:
        """The YAML form, `{kind: [args]}`, that `sweep_from_dict` reads back."""
        return {self.kind: list(self.args)}


_SCALE_MAPS = {
    "loguniform": (math.log, math.exp),
    "loguniform_one_minus": (lambda b: math.log1p(-b), lambda x: -math.expm1(x)),
    "uniform": (float, float),
    "randint": (float, float),
}


@dataclass
class Resources:
    """What one trial holds (Ray's resources_per_trial); with workers > 1, what each worker holds."""

    cpus: float = field(default=1.0, metadata=allowed_range(gt=0.0))
    gpus: float = field(default=0.0, metadata=allowed_range(ge=0.0))  # a fraction shares one GPU between trials
    workers: int = field(default=1, metadata=allowed_range(ge=1))  # > 1: data-parallel workers per trial


@dataclass
class SmokeConfig:
    """What `--smoke` changes: the same path in seconds (Ray Tune's examples' smoke-test switch)."""

    num_samples: int | None = field(default=1, metadata=allowed_range(ge=1))  # null keeps the sweep's
    base: dict[str, Any] = field(default_factory=lambda: {"train": {"max_epochs": 1, "limit_batches": 2}})


@dataclass
class SweepConfig:
    """A validated sweep file. `base` is a full run config; `space` maps dotted keys to distributions."""

    name: str = "sweep"
    description: str = ""
    base: RunConfig = field(default_factory=RunConfig)
    space: dict[str, Distribution] = field(default_factory=dict)
    search: Search = "random"  # random rather than grid (docs/conventions.md)
    scheduler: Scheduler = "fifo"
    num_samples: int = field(default=8, metadata=allowed_range(ge=1))
    max_concurrent: int = field(default=2, metadata=allowed_range(ge=1))  # 2 CPU cores: one trial each
    resources: Resources = field(default_factory=Resources)
    metric: Metric = "dev/error"
    # ASHA: a trial may be stopped from epoch grace_period on, at rungs grace_period x rf^k epochs,
    # unless it is in the best 1/reduction_factor of the trials that reached the rung.
    grace_period: int = field(default=1, metadata=allowed_range(ge=1))
    reduction_factor: float = field(default=3.0, metadata=allowed_range(gt=1.0))
    perturbation_interval: int = field(default=2, metadata=allowed_range(ge=1))  # PBT: epochs between exploits
    max_failures: int = field(default=2, metadata=allowed_range(ge=0))  # retries of a trial whose process died
    smoke: SmokeConfig = field(default_factory=SmokeConfig)

    @property
    def grid_size(self) -> int:
        """Combinations of the grid keys (1 without any)."""
        return math.prod(len(d.args) for d in self.space.values() if d.kind == "grid")

    @property
    def num_trials(self) -> int:
        """num_samples x grid_size, as Ray Tune counts them."""
        return self.num_samples * self.grid_size

    def to_dict(self) -> dict[str, Any]:
        """Plain dicts and lists that `sweep_from_dict` reads back to an equal sweep."""
        out = dataclasses.asdict(self)
        if not out["description"]:
            del out["description"]  # optional in a file, but never an empty string
        out["space"] = {key: dist.to_dict() for key, dist in self.space.items()}
        return out


# ----------------------------------------------------------------------------------------------
# loading and validation


def list_studies() -> list[str]:
    """The names of the packaged studies (tracking/studies/*.yaml)."""
    folder = resources.files("tracking.studies")
    return sorted(p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_sweep(path_or_name: str | Path, overrides: Sequence[str] = ()) -> SweepConfig:
    """The sweep in a YAML file, or the packaged study of that name, updated by `key=value` overrides.

    Overrides are dotted: `num_samples=4`, `base.train.max_epochs=3`, `resources.gpus=0.5`; a space
    key takes the rest after `space.` whole: `space.optim.lr={loguniform: [1e-3, 1e-1]}`, and
    `space.optim.lr=null` removes it.
    """
    return _overridden(read_yaml(_sweep_path(path_or_name)), overrides)


def override_sweep(sweep: SweepConfig, overrides: Sequence[str]) -> SweepConfig:
    """`sweep` updated by `key=value` overrides, as `load_sweep` reads them."""
    return _overridden(sweep.to_dict(), overrides) if overrides else sweep


def _overridden(raw: Any, overrides: Sequence[str]) -> SweepConfig:
    if not isinstance(raw, dict):
        return sweep_from_dict(raw)  # names what the file holds instead
    for override in overrides:
        key, value = parse_override(override)
        if key.startswith("space."):
            space = raw.setdefault("space", {})
            if not isinstance(space, dict):
                raise ConfigError(f"space = {show_value(space)} must be a mapping of dotted keys to distributions")
            if value is None:
                space.pop(key.removeprefix("space."), None)
            else:
                space[key.removeprefix("space.")] = value
        else:
            set_dotted(raw, key, value)
    return sweep_from_dict(raw)


def _sweep_path(path_or_name: str | Path) -> Path:
    path = Path(path_or_name)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return path  # read_yaml names a missing file
    names = list_studies()
    if str(path_or_name) not in names:
        close = difflib.get_close_matches(str(path_or_name), names, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"sweep {str(path_or_name)!r} is neither a file nor a packaged study{hint}; "
                          f"the studies are: {', '.join(names)}")
    return Path(str(resources.files("tracking.studies") / f"{path_or_name}.yaml"))


def sweep_from_dict(raw: Mapping[str, Any]) -> SweepConfig:
    """Build and check a `SweepConfig` from a nested mapping: every error names its field."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"a sweep file must hold a mapping (name, base, space, ...), got {show_value(raw)}")
    check_tree(raw, "the sweep")
    raw = dict(raw)
    space_raw = raw.pop("space", None)
    base_raw = raw.get("base") or {}
    if isinstance(base_raw, Mapping) and "experiment" not in base_raw and "name" in raw:
        raw["base"] = {**base_raw, "experiment": raw["name"]}  # the sweep's trials go to its experiment
    sweep: SweepConfig = build_dataclass(SweepConfig, raw, prefix="")
    space = _parse_space(space_raw, sweep.base)
    sweep = dataclasses.replace(sweep, space=space)
    _check_search(sweep)
    with_smoke(sweep)  # the smoke overrides must build a valid run config too
    return sweep


def _parse_space(raw: Any, base: RunConfig) -> dict[str, Distribution]:
    if not isinstance(raw, Mapping) or not raw:
        raise ConfigError(f"space = {show_value(raw)}: expected a non-empty mapping of dotted run-config keys to "
                          f"distributions, e.g. optim.lr: {{loguniform: [1.0e-4, 1.0e-1]}}")
    base_dict = config_to_dict(base)
    space = {}
    for key, spec in raw.items():
        if not isinstance(key, str) or not key.isprintable():
            raise ConfigError(f"space: the key {show_value(key)} is not a dotted run-config key such as optim.lr or "
                              f"model.width")
        dist = _parse_distribution(key, spec)
        for value in dist.values:
            try:
                _apply_dict(base_dict, {key: value})
            except ConfigError as err:
                raise ConfigError(f"space.{key} = {show_value(spec)}: the value {show_value(value)} does not fit "
                                  f"the run config: {err}") from None
        space[str(key)] = dist
    return space


def _parse_distribution(key: str, spec: Any) -> Distribution:
    where = f"space.{key} = {show_value(spec)}"
    kinds = ", ".join(DISTRIBUTIONS)
    if not isinstance(spec, Mapping) or len(spec) != 1:
        raise ConfigError(f"{where}: expected one distribution, {{name: [arguments]}}, with name one of: {kinds}")
    ((kind, args),) = spec.items()
    if kind not in DISTRIBUTIONS:
        close = difflib.get_close_matches(str(kind), list(DISTRIBUTIONS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"{where}: unknown distribution {kind!r}{hint}; choose one of: {kinds}")
    if kind in ("choice", "grid"):
        if not isinstance(args, list) or not args:
            raise ConfigError(f"{where}: {kind} takes a non-empty list of values")
        return Distribution(kind, tuple(args))
    if not isinstance(args, list) or len(args) != 2:
        raise ConfigError(f"{where}: {kind} takes a list of two bounds, [low, high]")
    if kind == "randint":
        if not all(isinstance(a, int) and not isinstance(a, bool) for a in args):
            raise ConfigError(f"{where}: randint bounds must be integers (both included)")
        low, high = args
        if low > high:
            raise ConfigError(f"{where}: the bounds are reversed; expected low <= high")
        if low < INT64[0] or high >= INT64[1]:  # Ray draws from [low, high + 1): that must fit in 64 bits too
            raise ConfigError(f"{where}: randint bounds must lie from {INT64[0]} to {INT64[1] - 1}")
        return Distribution(kind, (low, high))
    low, high = (as_float(a, f"space.{key}") for a in args)
    if not low < high:
        raise ConfigError(f"{where}: the bounds are reversed or equal; expected low < high")
    if kind == "uniform" and not math.isfinite(high - low):
        raise ConfigError(f"{where}: the range high - low overflows (it must be at most {sys.float_info.max:.4g})")
    if kind == "loguniform" and low <= 0:
        raise ConfigError(f"{where}: loguniform bounds must be > 0 (the log of {low:g} is undefined)")
    if kind == "loguniform_one_minus" and not (0 <= low and high < 1):
        raise ConfigError(f"{where}: loguniform_one_minus bounds must lie in [0, 1) (it is log-uniform in "
                          f"1 - value)")
    return Distribution(kind, (low, high))


def _check_search(sweep: SweepConfig) -> None:
    kinds = {key: d.kind for key, d in sweep.space.items()}
    if sweep.search == "grid":
        drawn = [k for k, kind in kinds.items() if kind != "grid"]
        if drawn:
            raise ConfigError(f"search = 'grid' needs every space entry to be a grid; space.{drawn[0]} is "
                              f"{kinds[drawn[0]]} (use search: random to draw it, crossed with the grid keys)")
    if sweep.search == "tpe":
        grids = [k for k, kind in kinds.items() if kind == "grid"]
        if grids:
            raise ConfigError(f"search = 'tpe' cannot cross grid values (space.{grids[0]} is a grid); use choice, "
                              f"or search: random")
    if sweep.scheduler == "asha" and sweep.grace_period > sweep.base.train.max_epochs:
        raise ConfigError(f"grace_period = {sweep.grace_period}: ASHA cannot stop a trial before epoch grace_period, "
                          f"and base.train.max_epochs is {sweep.base.train.max_epochs}; use 1..max_epochs")
    if sweep.scheduler == "pbt" and sweep.resources.workers > 1:
        raise ConfigError(f"scheduler = 'pbt' with resources.workers = {sweep.resources.workers}: population based "
                          f"training restores trials from checkpoints, which data-parallel trials do not keep; use "
                          f"workers: 1, or scheduler: asha or fifo")
    if sweep.scheduler == "pbt" and sweep.search != "random":
        raise ConfigError(f"scheduler = 'pbt' with search = {sweep.search!r}: population based training explores "
                          f"by mutating trials; use search: random")


def with_smoke(sweep: SweepConfig) -> SweepConfig:
    """The sweep as `--smoke` runs it: `smoke.base` merged into the base, `smoke.num_samples` trials."""
    merged = _merge(config_to_dict(sweep.base), sweep.smoke.base)
    base = build_dataclass(RunConfig, merged, prefix="smoke.base.")
    num_samples = sweep.smoke.num_samples or sweep.num_samples
    return dataclasses.replace(sweep, base=base, num_samples=num_samples)


# ----------------------------------------------------------------------------------------------
# sampling and trial configs


def apply(base: RunConfig, point: Mapping[str, Any]) -> RunConfig:
    """The trial's run config: `base` with each dotted key of `point` set (sections merged), checked."""
    return _apply_dict(config_to_dict(base), point)


def _apply_dict(base_dict: dict[str, Any], point: Mapping[str, Any]) -> RunConfig:
    from tracking.config import config_from_dict

    raw = copy.deepcopy(base_dict)
    for key in sorted(point, key=lambda k: k.count(".")):  # shallowest first: optim.lr beats optim's lr
        value = copy.deepcopy(point[key])
        *parents, leaf = key.split(".")
        node = raw
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and isinstance(node.get(leaf), dict) and isinstance(value, Mapping):
            node[leaf] = _merge(node[leaf], value)  # a section: a bundle of settings
        else:
            set_dotted(raw, key, value)
    return config_from_dict(raw)


def _merge(tree: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(tree)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)  # `data: {}` changes nothing
        else:
            out[key] = copy.deepcopy(value)
    return out


def dump_sweep(sweep: SweepConfig) -> str:
    """The sweep as YAML text that `sweep_from_dict` reads back to an equal sweep."""
    return yaml.safe_dump(sweep.to_dict(), sort_keys=False)

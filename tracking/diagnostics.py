"""Deciding what the diagnostics callback records: presets, the snapshot schedule and the layers.

As in Cockpit, deciding is separate from computing (`tracking.stats`) and storing
(`tracking.histograms`, `tracking.writer`): a schedule is a callable step -> bool.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from torch import nn

from lightning_modules.config import ConfigError, DiagnosticsConfig
from lightning_modules.layers import ChannelMaxout
from tracking.layout import KINDS


@dataclass(frozen=True)
class Settings:
    """A resolved diagnostics config: every field set."""

    kinds: tuple[str, ...]
    every: int
    log_spaced: bool
    bins: int
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()

    @property
    def enabled(self) -> bool:
        return bool(self.kinds)


# Named presets instead of dozens of flags. "default" is cheap enough to leave on (make bench measures
# it); "full" is for a close look at a short run.
PRESETS: dict[str, Settings] = {
    "off": Settings(kinds=(), every=1, log_spaced=False, bins=64),
    "economy": Settings(kinds=("weight", "grad", "act"), every=500, log_spaced=True, bins=32),
    "default": Settings(kinds=KINDS, every=100, log_spaced=True, bins=64),
    "full": Settings(kinds=KINDS, every=10, log_spaced=True, bins=128),
}


def resolve(cfg: DiagnosticsConfig) -> Settings:
    """The preset of `cfg`, with the fields `cfg` sets explicitly taking precedence."""
    base = PRESETS[cfg.preset]
    kinds = base.kinds if cfg.kinds is None else tuple(dict.fromkeys(cfg.kinds))
    return Settings(
        kinds=kinds,
        every=base.every if cfg.every is None else cfg.every,
        log_spaced=base.log_spaced if cfg.log_spaced is None else cfg.log_spaced,
        bins=base.bins if cfg.bins is None else cfg.bins,
        include=tuple(cfg.include),
        exclude=tuple(cfg.exclude),
    )


class SnapshotSchedule:
    """Snapshot at step 0 (before the first update: the initialization check), every `every` steps,
    and, with `log_spaced`, at steps 1, 2, 4, 8, ... below `every`, where early training moves fastest."""

    def __init__(self, every: int, log_spaced: bool = True) -> None:
        if every < 1:
            raise ValueError(f"every = {every} is not allowed; it must be an integer >= 1")
        self.every = every
        self.log_spaced = log_spaced

    def __call__(self, step: int) -> bool:
        if step % self.every == 0:
            return True
        return self.log_spaced and step < self.every and step & (step - 1) == 0


# Modules whose output is an activation a = g(z); their input is the pre-activation z. A softmax is one too: a
# network that ends in one hands probabilities to a loss that wants logits (the diagnosis reads its outputs).
ACTIVATION_MODULES: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.LeakyReLU, nn.ELU, nn.GELU, nn.Mish, nn.Tanh, nn.Sigmoid, nn.SiLU, nn.Softplus, nn.Hardtanh,
    nn.Softmax, ChannelMaxout,
)
SATURATING = {nn.Tanh: "tanh", nn.Sigmoid: "sigmoid"}


def select_layers(
    root: nn.Module, include: tuple[str, ...] = (), exclude: tuple[str, ...] = ()
) -> dict[str, nn.Module]:
    """The layers to watch: every parametrized leaf module of `root` (by its name in named_modules),
    filtered by shell-style include / exclude patterns. Raises ConfigError when nothing matches."""
    leaves = {
        name: module
        for name, module in root.named_modules()
        if name and not any(True for _ in module.children()) and any(True for _ in module.parameters(recurse=False))
    }
    chosen = {
        name: module
        for name, module in leaves.items()
        if (not include or any(fnmatch.fnmatchcase(name, p) for p in include))
        and not any(fnmatch.fnmatchcase(name, p) for p in exclude)
    }
    if leaves and not chosen:
        raise ConfigError(
            f"diagnostics.include = {list(include)!r} / exclude = {list(exclude)!r} leave no layer to watch; "
            f"the layers are: {', '.join(leaves)}"
        )
    return chosen


def activation_modules(root: nn.Module) -> dict[str, nn.Module]:
    """Every activation module of `root`, by name."""
    return {name: m for name, m in root.named_modules() if name and isinstance(m, ACTIVATION_MODULES)}


def saturation_name(module: nn.Module) -> str | None:
    """"tanh" or "sigmoid" for the activations that saturate, else None."""
    return next((name for cls, name in SATURATING.items() if isinstance(module, cls)), None)

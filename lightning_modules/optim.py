"""Optimizers and learning-rate decay schedules from an `OptimConfig`.

Built-ins (the course's solvers), each also given `cfg.kwargs`:

    sgd      SGD(lr, momentum, nesterov)                 momentum 0 is plain (mini-batch) gradient descent
    rmsprop  RMSprop(lr, alpha=beta2, eps)               RMSprop's decay rate of the squared-gradient
                                                         average is the course's beta2 (torch calls it alpha)
    adam     Adam(lr, betas=(beta1, beta2), eps)
    adamw    AdamW(lr, betas=(beta1, beta2), eps, weight_decay)   decoupled weight decay

Any other name is looked up among torch.optim's classes (case-insensitive, e.g. "Adagrad") and
built with `lr` and `cfg.kwargs` only. The L2 term of the cost is never an optimizer option
here: it is `reg.l2`, added to J by the LightningModule, so that J is what is logged and checked.

Schedules are per epoch, with e the epoch index starting at 0:

    step          lr * gamma ** (e // step_size)
    exponential   lr * gamma ** e
    inverse_time  lr / (1 + decay_rate * e)        (the course's formula)
    cosine        cosine annealing from lr to min_lr over max_epochs
    none          constant lr
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import CosineAnnealingLR, ExponentialLR, LambdaLR, LRScheduler, StepLR

from lightning_modules.config import ConfigError, OptimConfig

BUILTIN_OPTIMIZERS = ("sgd", "rmsprop", "adam", "adamw")
SCHEDULES = ("none", "step", "exponential", "inverse_time", "cosine")

# The torch.optim argument each built-in takes from a first-class OptimConfig field: the same
# argument in `kwargs` would be ambiguous, so it is refused (name -> the field to use instead).
_FIELD_ARGS: dict[str, dict[str, str]] = {
    "sgd": {"lr": "optim.lr", "momentum": "optim.momentum", "nesterov": "optim.nesterov"},
    "rmsprop": {"lr": "optim.lr", "alpha": "optim.beta2", "eps": "optim.eps"},
    "adam": {"lr": "optim.lr", "betas": "optim.beta1 / optim.beta2", "eps": "optim.eps"},
    "adamw": {
        "lr": "optim.lr",
        "betas": "optim.beta1 / optim.beta2",
        "eps": "optim.eps",
        "weight_decay": "optim.weight_decay",
    },
}


def torch_optimizers() -> dict[str, type[Optimizer]]:
    """Every concrete optimizer class in torch.optim, keyed by its lower-cased name."""
    return {
        name.lower(): cls
        for name, cls in vars(torch.optim).items()
        if isinstance(cls, type) and issubclass(cls, Optimizer) and cls is not Optimizer
    }


def _optimizer_class(name: str) -> type[Optimizer]:
    key = name.lower()
    classes = torch_optimizers()
    if key in classes:
        return classes[key]
    # Suggest the closest name, compared case-insensitively but shown as spelled in torch.optim.
    display = {k: c.__name__ for k, c in classes.items()} | {b: b for b in BUILTIN_OPTIMIZERS}
    close = difflib.get_close_matches(key, list(display), n=1, cutoff=0.5)
    hint = f"; did you mean {display[close[0]]!r}?" if close else ""
    raise ConfigError(
        f"optim.name = {name!r} is not a known optimizer: use one of {', '.join(BUILTIN_OPTIMIZERS)}, "
        f"or the name of any torch.optim class ({', '.join(sorted(c.__name__ for c in classes.values()))})"
        f"{hint}"
    )


def _optimizer_args(cfg: OptimConfig) -> tuple[type[Optimizer], dict[str, Any]]:
    """The class and the keyword arguments (all but params) that `cfg` builds."""
    key = cfg.name.lower()
    cls = _optimizer_class(cfg.name)
    kwargs = dict(cfg.kwargs)
    field_args = _FIELD_ARGS.get(key, {"lr": "optim.lr"})
    for arg, field_name in field_args.items():
        if arg in kwargs:
            raise ConfigError(
                f"optim.kwargs.{arg} = {kwargs[arg]!r} duplicates a config field for optimizer {cfg.name!r}: "
                f"set {field_name} instead"
            )
    if "weight_decay" in kwargs:
        # Coupled weight decay in an optimizer is the L2 term in disguise, outside of J; keep the
        # two kinds of decay under their own, distinct names.
        raise ConfigError(
            f"optim.kwargs.weight_decay = {kwargs['weight_decay']!r} is not allowed: use optim.weight_decay "
            "(decoupled weight decay, AdamW) or reg.l2 (the L2 term of the cost)"
        )
    args: dict[str, Any] = {"lr": cfg.lr}
    if key == "sgd":
        args.update(momentum=cfg.momentum, nesterov=cfg.nesterov)
    elif key == "rmsprop":
        args.update(alpha=cfg.beta2, eps=cfg.eps)
    elif key == "adam":
        args.update(betas=(cfg.beta1, cfg.beta2), eps=cfg.eps)
    elif key == "adamw":
        args.update(betas=(cfg.beta1, cfg.beta2), eps=cfg.eps, weight_decay=cfg.weight_decay)
    args.update(kwargs)
    return cls, args


def build_optimizer(params: Iterable[Any], cfg: OptimConfig) -> Optimizer:
    """The torch optimizer that `cfg` names, over `params` (tensors or param-group dicts).

    sgd -> SGD(lr, momentum, nesterov); rmsprop -> RMSprop(lr, alpha=beta2, eps) (RMSprop's decay is
    beta2); adam -> Adam(lr, betas=(beta1, beta2), eps); adamw -> AdamW(lr, betas, eps, weight_decay);
    any other torch.optim class by name (case-insensitive) -> that class with lr. `cfg.kwargs` is
    passed to every one of them. Raises ConfigError for an unknown name or a clashing kwarg; call
    `check_optim_config` first for the full set of checks.
    """
    cls, args = _optimizer_args(cfg)
    return cls(params, **args)


def _allowed_args(cls: type[Optimizer]) -> list[str]:
    sig = inspect.signature(cls.__init__)
    return [p for p in sig.parameters if p not in ("self", "params")]


def check_optim_config(cfg: OptimConfig) -> None:
    """Raise ConfigError, before any training, if `cfg` cannot build the optimizer and schedule it names.

    Checks: the optimizer name; kwargs that clash with config fields or that the class rejects (it is
    built on a dummy tensor to find out); weight_decay > 0 with an optimizer other than adamw;
    nesterov without momentum for sgd; the schedule name; cosine's min_lr above lr.
    """
    key = cfg.name.lower()
    cls, _ = _optimizer_args(cfg)
    if cfg.weight_decay > 0 and key != "adamw":
        raise ConfigError(
            f"optim.weight_decay = {cfg.weight_decay!r} with optim.name = {cfg.name!r}: optim.weight_decay "
            "is decoupled weight decay (AdamW); for the L2 term of the cost use reg.l2"
        )
    if key == "sgd" and cfg.nesterov and cfg.momentum <= 0:
        raise ConfigError(
            f"optim.nesterov = True needs optim.momentum > 0 (got optim.momentum = {cfg.momentum!r}); "
            "set a momentum such as 0.9, or nesterov: false"
        )
    # A 2-D parameter: some solvers (Muon) accept matrices only.
    dummy = nn.Parameter(torch.zeros(2, 2))
    try:
        build_optimizer([dummy], cfg)
    except (TypeError, ValueError) as err:
        if isinstance(err, ConfigError):
            raise
        allowed = ", ".join(_allowed_args(cls))
        if cfg.kwargs:
            raise ConfigError(
                f"optim.kwargs = {cfg.kwargs!r} is not accepted by torch.optim.{cls.__name__}: {err} "
                f"(its arguments: {allowed})"
            ) from err
        raise ConfigError(f"optim = {cfg!r} is not accepted by torch.optim.{cls.__name__}: {err}") from err
    if cfg.schedule not in SCHEDULES:
        raise ConfigError(f"optim.schedule = {cfg.schedule!r} is not one of {', '.join(SCHEDULES)}")
    if cfg.schedule == "cosine" and cfg.min_lr > cfg.lr:
        raise ConfigError(
            f"optim.min_lr = {cfg.min_lr!r} is above optim.lr = {cfg.lr!r}: cosine decay anneals lr down to "
            "min_lr, so min_lr must be <= lr"
        )


class _InverseTime:
    """The factor 1 / (1 + decay_rate * epoch); a class (not a lambda) so LambdaLR can save its state."""

    def __init__(self, decay_rate: float) -> None:
        self.decay_rate = decay_rate

    def __call__(self, epoch: int) -> float:
        return 1.0 / (1.0 + self.decay_rate * epoch)


def build_scheduler(optimizer: Optimizer, cfg: OptimConfig, max_epochs: int) -> LRScheduler | None:
    """The per-epoch learning-rate schedule that `cfg.schedule` names, or None for "none".

    step: lr * gamma ** (epoch // step_size); exponential: lr * gamma ** epoch; inverse_time:
    lr / (1 + decay_rate * epoch); cosine: CosineAnnealingLR down to min_lr over max_epochs.
    Step it once per epoch (Lightning: interval "epoch").
    """
    if max_epochs < 1:
        raise ValueError(f"max_epochs = {max_epochs!r} must be >= 1")
    if cfg.schedule == "none":
        return None
    if cfg.schedule == "step":
        return StepLR(optimizer, step_size=cfg.step_size, gamma=cfg.gamma)
    if cfg.schedule == "exponential":
        return ExponentialLR(optimizer, gamma=cfg.gamma)
    if cfg.schedule == "inverse_time":
        return LambdaLR(optimizer, lr_lambda=_InverseTime(cfg.decay_rate))
    if cfg.schedule == "cosine":
        return CosineAnnealingLR(optimizer, T_max=max_epochs, eta_min=cfg.min_lr)
    raise ConfigError(f"optim.schedule = {cfg.schedule!r} is not one of {', '.join(SCHEDULES)}")

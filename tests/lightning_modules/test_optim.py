"""Optimizers from OptimConfig, the lr schedules against their formulas, and the config checks."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lightning_modules.config import ConfigError, OptimConfig
from lightning_modules.optim import build_optimizer, build_scheduler, check_optim_config


def _params() -> list[nn.Parameter]:
    return [nn.Parameter(torch.zeros(3, 2)), nn.Parameter(torch.zeros(3))]


def _group(cfg: OptimConfig) -> tuple[torch.optim.Optimizer, dict]:
    opt = build_optimizer(_params(), cfg)
    return opt, opt.param_groups[0]


def test_sgd_with_momentum_and_nesterov() -> None:
    opt, g = _group(OptimConfig(name="sgd", lr=0.05, momentum=0.9, nesterov=True))
    assert type(opt) is torch.optim.SGD
    assert (g["lr"], g["momentum"], g["nesterov"], g["weight_decay"]) == (0.05, 0.9, True, 0)


def test_rmsprop_decay_is_beta2() -> None:
    opt, g = _group(OptimConfig(name="rmsprop", lr=0.01, beta2=0.95, eps=1e-6))
    assert type(opt) is torch.optim.RMSprop
    assert (g["lr"], g["alpha"], g["eps"], g["weight_decay"]) == (0.01, 0.95, 1e-6, 0)


def test_adam_betas_eps_and_kwargs() -> None:
    opt, g = _group(OptimConfig(name="Adam", lr=3e-4, beta1=0.8, beta2=0.99, eps=1e-7, kwargs={"amsgrad": True}))
    assert type(opt) is torch.optim.Adam
    assert (g["lr"], g["betas"], g["eps"], g["amsgrad"], g["weight_decay"]) == (3e-4, (0.8, 0.99), 1e-7, True, 0)


def test_adamw_has_decoupled_weight_decay() -> None:
    opt, g = _group(OptimConfig(name="adamw", lr=1e-3, weight_decay=0.05))
    assert type(opt) is torch.optim.AdamW
    assert (g["betas"], g["eps"], g["weight_decay"]) == ((0.9, 0.999), 1e-8, 0.05)


@pytest.mark.parametrize("name", ["Adagrad", "adagrad", "ADAGRAD"])
def test_any_torch_optim_class_by_name(name: str) -> None:
    opt, g = _group(OptimConfig(name=name, lr=0.2, kwargs={"lr_decay": 0.1}))
    assert type(opt) is torch.optim.Adagrad
    assert (g["lr"], g["lr_decay"]) == (0.2, 0.1)


def test_param_groups_are_passed_through() -> None:
    a, b = _params()
    opt = build_optimizer([{"params": [a]}, {"params": [b], "lr": 0.5}], OptimConfig(name="sgd", lr=0.1))
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.5]


def _lrs(cfg: OptimConfig, epochs: int, max_epochs: int | None = None) -> list[float]:
    """The lr of each epoch, stepping the scheduler once per epoch as Lightning does."""
    opt = build_optimizer(_params(), cfg)
    sched = build_scheduler(opt, cfg, max_epochs or epochs)
    out = []
    for _ in range(epochs):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_inverse_time_is_lr_over_one_plus_decay_epoch() -> None:
    lrs = _lrs(OptimConfig(name="sgd", lr=0.6, schedule="inverse_time", decay_rate=1.0), 5)
    assert lrs == pytest.approx([0.6 / 1, 0.6 / 2, 0.6 / 3, 0.6 / 4, 0.6 / 5])
    lrs = _lrs(OptimConfig(name="sgd", lr=1.0, schedule="inverse_time", decay_rate=0.5), 4)
    assert lrs == pytest.approx([1 / (1 + 0.5 * e) for e in range(4)])


def test_step_schedule() -> None:
    lrs = _lrs(OptimConfig(name="sgd", lr=0.8, schedule="step", step_size=3, gamma=0.5), 8)
    assert lrs == pytest.approx([0.8 * 0.5 ** (e // 3) for e in range(8)])


def test_exponential_schedule() -> None:
    lrs = _lrs(OptimConfig(name="adam", lr=0.1, schedule="exponential", gamma=0.9), 6)
    assert lrs == pytest.approx([0.1 * 0.9**e for e in range(6)])


def test_cosine_schedule_reaches_min_lr() -> None:
    lr, min_lr, t = 0.1, 0.01, 10
    lrs = _lrs(OptimConfig(name="sgd", lr=lr, schedule="cosine", min_lr=min_lr), t + 1, max_epochs=t)
    expected = [min_lr + (lr - min_lr) * (1 + math.cos(math.pi * e / t)) / 2 for e in range(t + 1)]
    assert lrs == pytest.approx(expected)
    assert lrs[-1] == pytest.approx(min_lr)


def test_no_schedule_is_none() -> None:
    cfg = OptimConfig(schedule="none")
    assert build_scheduler(build_optimizer(_params(), cfg), cfg, 10) is None


def test_inverse_time_scheduler_state_round_trips() -> None:
    cfg = OptimConfig(name="sgd", lr=1.0, schedule="inverse_time", decay_rate=2.0)
    opt = build_optimizer(_params(), cfg)
    state = build_scheduler(opt, cfg, 5).state_dict()
    assert state["lr_lambdas"][0] == {"decay_rate": 2.0}


# --- check_optim_config -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cfg",
    [
        OptimConfig(),
        OptimConfig(name="sgd", momentum=0.9, nesterov=True),
        OptimConfig(name="adamw", weight_decay=0.01, schedule="cosine", min_lr=1e-5),
        OptimConfig(name="Adagrad", kwargs={"lr_decay": 0.1}),
        OptimConfig(name="rmsprop", kwargs={"momentum": 0.9, "centered": True}),
    ],
)
def test_valid_configs_pass(cfg: OptimConfig) -> None:
    check_optim_config(cfg)


def test_unknown_name_lists_allowed_and_suggests() -> None:
    with pytest.raises(ConfigError) as err:
        check_optim_config(OptimConfig(name="adan"))
    msg = str(err.value)
    assert "optim.name = 'adan'" in msg
    assert "sgd, rmsprop, adam, adamw" in msg
    assert "any torch.optim class" in msg and "Adagrad" in msg
    assert "did you mean 'adam'?" in msg
    with pytest.raises(ConfigError, match="did you mean 'Adagrad'"):
        check_optim_config(OptimConfig(name="adagard"))


def test_unknown_name_also_fails_in_build() -> None:
    with pytest.raises(ConfigError, match="optim.name = 'nope'"):
        build_optimizer(_params(), OptimConfig(name="nope"))


def test_kwargs_the_class_rejects() -> None:
    with pytest.raises(ConfigError) as err:
        check_optim_config(OptimConfig(name="Adagrad", kwargs={"lr_decy": 0.1}))
    msg = str(err.value)
    assert msg.startswith("optim.kwargs = {'lr_decy': 0.1} is not accepted by torch.optim.Adagrad")
    assert "lr_decay" in msg  # the allowed arguments are listed
    # A bad value (torch raises ValueError) is reported the same way.
    with pytest.raises(ConfigError, match=r"optim.kwargs = \{'initial_accumulator_value': -1.0\}"):
        check_optim_config(OptimConfig(name="Adagrad", kwargs={"initial_accumulator_value": -1.0}))


def test_kwargs_that_duplicate_a_field() -> None:
    with pytest.raises(ConfigError, match=r"optim.kwargs.momentum = 0.9 .* set optim.momentum instead"):
        check_optim_config(OptimConfig(name="sgd", kwargs={"momentum": 0.9}))
    with pytest.raises(ConfigError, match=r"optim.kwargs.alpha .* set optim.beta2 instead"):
        check_optim_config(OptimConfig(name="rmsprop", kwargs={"alpha": 0.9}))
    with pytest.raises(ConfigError, match=r"optim.kwargs.lr .* set optim.lr instead"):
        check_optim_config(OptimConfig(name="Adagrad", kwargs={"lr": 0.1}))


def test_weight_decay_only_with_adamw() -> None:
    with pytest.raises(ConfigError) as err:
        check_optim_config(OptimConfig(name="adam", weight_decay=0.01))
    assert str(err.value) == (
        "optim.weight_decay = 0.01 with optim.name = 'adam': optim.weight_decay is decoupled weight decay "
        "(AdamW); for the L2 term of the cost use reg.l2"
    )
    with pytest.raises(ConfigError, match="optim.kwargs.weight_decay = 0.1 is not allowed: .*reg.l2"):
        check_optim_config(OptimConfig(name="sgd", kwargs={"weight_decay": 0.1}))


def test_nesterov_needs_momentum() -> None:
    with pytest.raises(
        ConfigError, match=r"optim.nesterov = True needs optim.momentum > 0 \(got optim.momentum = 0.0\)"
    ):
        check_optim_config(OptimConfig(name="sgd", nesterov=True))


def test_schedule_checks() -> None:
    with pytest.raises(ConfigError, match="optim.schedule = 'linear' is not one of none, step, exponential"):
        check_optim_config(OptimConfig(schedule="linear"))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="optim.min_lr = 0.1 is above optim.lr = 0.01"):
        check_optim_config(OptimConfig(lr=0.01, schedule="cosine", min_lr=0.1))

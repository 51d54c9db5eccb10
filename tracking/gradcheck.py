"""Gradient checking: backprop's gradient against two-sided finite differences (docs/conventions.md).

With theta all parameters flattened and J the cost of one fixed batch (data loss + the regularization term),

    dtheta_approx[i] = (J(theta + eps e_i) - J(theta - eps e_i)) / (2 eps),   eps = 1e-7, in float64
    relative difference = ||dtheta_approx - dtheta||_2 / (||dtheta_approx||_2 + ||dtheta||_2)

is reported overall and per parameter tensor, so that a wrong backward can be located. The check runs on a
float64 deep copy of the net in eval mode: dropout and DropConnect are off, so J is deterministic, and the
caller's net is never touched.

Two layers, as the rest of fitlens: `check_gradients` (and the helpers it is made of) is pure, tensors in and a
`GradCheck` out; `run_gradcheck` builds a config's data and module, checks at initialization and after some
training, and records the report as an MLflow run.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_modules.config import ConfigError, RunConfig
from tracking.gradcheck_verdict import VERDICTS, gradcheck_verdict, worst_verdict
from tracking.layout import GRADCHECK_METRIC, GRADCHECK_REPORT, KIND_GRADCHECK, KIND_TAG

if TYPE_CHECKING:  # a run-time import would load Lightning for the pure core too
    from lightning_modules.module import FitModule

DEFAULT_EPS = 1e-7  # with float64 arithmetic (docs/conventions.md, "Gradient checking")

Cost = Callable[[nn.Module], Tensor]


# ----------------------------------------------------------------------------------------------
# Pure statistics


def relative_difference(numeric: Tensor, analytic: Tensor) -> float:
    """||numeric - analytic||_2 / (||numeric||_2 + ||analytic||_2); 0 when both are 0 (nothing to disagree on)."""
    numeric, analytic = numeric.double(), analytic.double()
    denominator = float(numeric.norm() + analytic.norm())
    if denominator == 0.0:
        return 0.0
    return float((numeric - analytic).norm()) / denominator


@dataclass(frozen=True)
class TensorCheck:
    """The check of one parameter tensor, named as in `named_parameters()`."""

    name: str
    shape: tuple[int, ...]
    checked: int  # coordinates compared (all of them unless max_per_tensor cut them)
    relative_difference: float
    verdict: str
    worst_index: tuple[int, ...]  # the coordinate with the largest |numeric - analytic|
    worst_analytic: float
    worst_numeric: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (NaN and inf become null)."""
        return {
            "name": self.name,
            "shape": list(self.shape),
            "checked": self.checked,
            "relative_difference": _finite_or_none(self.relative_difference),
            "verdict": self.verdict,
            "worst_index": list(self.worst_index),
            "worst_analytic": _finite_or_none(self.worst_analytic),
            "worst_numeric": _finite_or_none(self.worst_numeric),
        }


@dataclass(frozen=True)
class GradCheck:
    """The result of `check_gradients`: overall (over every checked coordinate of every tensor) and per tensor."""

    relative_difference: float
    verdict: str
    eps: float
    per_tensor: list[TensorCheck] = field(default_factory=list)
    worst_tensor: str | None = None  # the tensor with the highest relative difference; None without parameters
    checked: int = 0  # coordinates compared over all tensors
    n_parameters: int = 0  # coordinates in all tensors checked or not

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields: relative_difference, verdict, eps, checked, n_parameters, per_tensor, worst_tensor."""
        return {
            "relative_difference": _finite_or_none(self.relative_difference),
            "verdict": self.verdict,
            "eps": self.eps,
            "checked": self.checked,
            "n_parameters": self.n_parameters,
            "per_tensor": [t.to_dict() for t in self.per_tensor],
            "worst_tensor": self.worst_tensor,
        }


def _finite_or_none(value: float) -> float | None:
    # JSON has no NaN; a NaN relative difference already reads as "worry" in the verdict.
    return value if math.isfinite(value) else None


# ----------------------------------------------------------------------------------------------
# The check


def checked_parameters(net: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """The (name, parameter) pairs theta is made of: every trainable parameter, a shared one once."""
    return [(name, p) for name, p in net.named_parameters() if p.requires_grad]


def sample_coordinates(
    net: nn.Module, max_per_tensor: int | None = None, seed: int = 0
) -> dict[str, Tensor]:
    """The flat indices to check in each parameter tensor: all of them, or a seeded random subset of
    `max_per_tensor` (sorted), drawn tensor after tensor from one generator so the same seed gives the same set."""
    if max_per_tensor is not None and (isinstance(max_per_tensor, bool) or max_per_tensor < 1):
        raise ValueError(f"max_per_tensor = {max_per_tensor!r} is not allowed; it must be an integer >= 1 or None")
    generator = torch.Generator().manual_seed(seed)
    coordinates: dict[str, Tensor] = {}
    for name, param in checked_parameters(net):
        n = param.numel()
        if max_per_tensor is None or max_per_tensor >= n:
            coordinates[name] = torch.arange(n)
        else:
            coordinates[name] = torch.randperm(n, generator=generator)[:max_per_tensor].sort().values
    return coordinates


def _cost_value(net: nn.Module, cost: Cost) -> Tensor:
    """J as a float64 scalar tensor; a float32 J would drown the differences of eps = 1e-7 in rounding."""
    value = cost(net)
    if not isinstance(value, Tensor) or value.numel() != 1:
        raise ValueError(f"cost(net) must return a scalar tensor J, got {type(value).__name__} "
                         f"of shape {tuple(getattr(value, 'shape', ()))}")
    if value.dtype != torch.float64:
        raise ValueError(f"cost(net) returned J in {value.dtype}; the check needs float64 throughout "
                         "(the net is float64: cast the batch with x.to(torch.float64))")
    return value.reshape(())


def analytic_gradient(net: nn.Module, cost: Cost) -> dict[str, Tensor]:
    """dtheta by autograd: dJ/dW for every checked parameter of `net` (zeros where J does not depend on it).

    Evaluated on `net` as it is (its mode and dtype); `check_gradients` hands it the float64 eval-mode copy.
    """
    params = checked_parameters(net)
    grads = torch.autograd.grad(_cost_value(net, cost), [p for _, p in params], allow_unused=True)
    return {
        name: (torch.zeros_like(p) if g is None else g.detach().clone())
        for (name, p), g in zip(params, grads, strict=True)
    }


def numeric_gradient(
    net: nn.Module, cost: Cost, eps: float = DEFAULT_EPS, coordinates: dict[str, Tensor] | None = None
) -> dict[str, Tensor]:
    """dtheta_approx[i] = (J(theta + eps e_i) - J(theta - eps e_i)) / (2 eps) at the given flat indices.

    Returns one 1-D tensor per parameter, aligned with `coordinates[name]` (all indices when None). Each
    coordinate is nudged in place and put back bit for bit, so `net` ends as it started. The slow, obvious
    reference: two forward passes per coordinate, nothing clever.
    """
    if not eps > 0:
        raise ValueError(f"eps = {eps!r} is not allowed; it must be > 0")
    if coordinates is None:
        coordinates = sample_coordinates(net)
    approx: dict[str, Tensor] = {}
    with torch.no_grad(), _one_cpu_thread(net):
        for name, param in checked_parameters(net):
            indices = coordinates[name]
            values = torch.empty(len(indices), dtype=torch.float64)
            for k, (cell, where) in enumerate(_cells(param, indices)):
                original = float(cell[where])
                cell[where] = original + eps
                j_plus = float(_cost_value(net, cost))
                cell[where] = original - eps
                j_minus = float(_cost_value(net, cost))
                cell[where] = original  # exact: a Python float holds a float64 (or float32) value bit for bit
                values[k] = (j_plus - j_minus) / (2 * eps)
            approx[name] = values
    return approx


@contextmanager
def _one_cpu_thread(net: nn.Module) -> Iterator[None]:
    """Run torch on one CPU thread for the duration (the thread count is process-wide; it is restored after).

    The numeric gradient is thousands of tiny forward passes: on CPU the hand-off between intra-op threads
    costs more than the work. The default MLP on MNIST-1D checked 15k coordinates in ~4 s on one thread and
    ~90 s on two (2 busy cores).
    """
    param = next(net.parameters(), None)
    if param is None or param.device.type != "cpu":
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _cells(param: Tensor, indices: Tensor) -> Iterator[tuple[Tensor, int | tuple[int, ...]]]:
    """(tensor, position) pairs that write coordinate `index` of `param` in place, for each flat index."""
    target = param.detach()
    if target.is_contiguous():
        flat = target.view(-1)  # a view: writing it writes the parameter
        for index in indices.tolist():
            yield flat, index
    else:
        # reshape(-1) of a non-contiguous tensor would be a copy that the net never sees: unravel instead.
        for position in zip(*(i.tolist() for i in torch.unravel_index(indices, target.shape)), strict=True):
            yield target, tuple(position)


def check_gradients(
    net: nn.Module,
    cost: Cost,
    *,
    eps: float = DEFAULT_EPS,
    max_per_tensor: int | None = None,
    seed: int = 0,
) -> GradCheck:
    """Compare backprop's gradient of `cost(net)` with two-sided finite differences, overall and per tensor.

    Args:
        net: the network; it is deep-copied, the copy cast to float64 and put in eval mode (dropout and
            DropConnect off, batch norm on its running statistics), so `net` itself is never changed.
        cost: `cost(copy)` returns the scalar cost J of a fixed batch: the data loss plus the regularization
            term, computed from the parameters of the net it is given. The copy is float64, so the batch must
            be float64 too (`x.to(torch.float64)`).
        eps: the nudge of each coordinate (1e-7: docs/conventions.md).
        max_per_tensor: check a seeded random subset of this many coordinates per tensor (None: all); for big
            nets, where two forward passes per parameter cost too much.
        seed: the seed of that subset.

    Returns:
        A `GradCheck`: the relative difference over every checked coordinate, its verdict (see
        `tracking.gradcheck_verdict`), and per tensor the relative difference, verdict and worst coordinate.
    """
    checked_net = copy.deepcopy(net).to(torch.float64).eval()
    coordinates = sample_coordinates(checked_net, max_per_tensor, seed)
    analytic = analytic_gradient(checked_net, cost)
    numeric = numeric_gradient(checked_net, cost, eps, coordinates)

    per_tensor: list[TensorCheck] = []
    all_numeric: list[Tensor] = []
    all_analytic: list[Tensor] = []
    for name, param in checked_parameters(checked_net):
        indices = coordinates[name]
        approx = numeric[name]  # (checked,)
        exact = analytic[name].reshape(-1)[indices]  # (checked,)
        all_numeric.append(approx)
        all_analytic.append(exact)
        per_tensor.append(_tensor_check(name, tuple(param.shape), indices, approx, exact))

    overall = relative_difference(torch.cat(all_numeric), torch.cat(all_analytic)) if per_tensor else 0.0
    # max() keeps the first of equals, so a net that checks perfectly names its first tensor; NaN ranks worst.
    worst = max(per_tensor, key=lambda t: _rank(t.relative_difference), default=None)
    return GradCheck(
        relative_difference=overall,
        # The worst tensor's verdict: a wrong backward in one small tensor is drowned in the overall difference
        # of a large net (a bias whose gradient is 1% off reads 5e-4 overall, 5e-3 alone).
        verdict=worst_verdict([gradcheck_verdict(overall), *(t.verdict for t in per_tensor)]),
        eps=eps,
        per_tensor=per_tensor,
        worst_tensor=worst.name if worst else None,
        checked=sum(t.checked for t in per_tensor),
        n_parameters=sum(p.numel() for _, p in checked_parameters(checked_net)),
    )


def _rank(value: float) -> float:
    return math.inf if math.isnan(value) else value


def _tensor_check(name: str, shape: tuple[int, ...], indices: Tensor, approx: Tensor, exact: Tensor) -> TensorCheck:
    rel = relative_difference(approx, exact)
    if len(indices) == 0:  # an empty tensor (numel 0): nothing to compare, nothing wrong
        return TensorCheck(name, shape, 0, rel, gradcheck_verdict(rel), (), 0.0, 0.0)
    gap = (approx - exact).abs().nan_to_num(nan=math.inf)
    k = int(gap.argmax())
    position = tuple(int(i) for i in torch.unravel_index(indices[k], shape)) if shape else ()
    return TensorCheck(
        name=name,
        shape=shape,
        checked=len(indices),
        relative_difference=rel,
        verdict=gradcheck_verdict(rel),
        worst_index=position,
        worst_analytic=float(exact[k]),
        worst_numeric=float(approx[k]),
    )


# ----------------------------------------------------------------------------------------------
# A config's network: check at initialization and after some training, record the run


def run_gradcheck(
    cfg: RunConfig,
    steps: int = 0,
    batch_size: int = 64,
    max_per_tensor: int | None = None,
    uri: str | None = None,
) -> dict[str, Any]:
    """Gradient-check the network of `cfg` at initialization and, when steps > 0, after `steps` optimizer steps.

    J is the training cost on a fixed batch (the first `batch_size` examples of the training split, never
    augmented): cross-entropy plus FitModule.penalty(), the L2/L1 terms. Training between the checks is a
    plain loop with the config's optimizer, dropout on. Every config error raises ConfigError before any run
    exists; the report is recorded as one MLflow run (tag fitlens.kind = "gradcheck", the flattened config
    as params, the metric gradcheck/relative_difference at each check's step, the artifact
    gradcheck/report.json) and returned: "checks" (one GradCheck.to_dict() per check, with its "step"), the
    worst check's relative_difference, verdict, per_tensor, worst_tensor (and its step, worst_step), and
    run_id, experiment_id, tracking_uri.
    """
    # Imported here so the pure core above needs torch alone (and stays quick to import in tests).
    import pytorch_lightning as pl

    from lightning_modules.module import FitModule
    from lightning_modules.optim import build_optimizer
    from tracking.recording import config_tags, recorded_run
    from tracking.store import quiet_libraries
    from tracking.train import prepare
    from tracking.writer import log_json

    _check_arguments(cfg, steps, batch_size, max_per_tensor)
    quiet_libraries()
    pl.seed_everything(cfg.train.seed, workers=True, verbose=False)
    prepared = prepare(cfg)
    cfg, datamodule, module = prepared.config, prepared.datamodule, prepared.module
    x, y = _fixed_batch(datamodule, batch_size)
    x64 = x.to(torch.float64)
    if isinstance(module, FitModule):
        net: nn.Module = module.net

        def cost(checked: nn.Module) -> Tensor:
            return training_cost(module, checked, x64, y)

        def batch_cost(batch: tuple[Tensor, Tensor]) -> Tensor:
            return training_cost(module, module.net, *batch)

        def optimizer() -> torch.optim.Optimizer:
            return build_optimizer(module.net.parameters(), cfg.optim)
    else:  # a user's LightningModule: J is what its training_step returns, on all its parameters
        net = module
        _quiet_logging(module)

        def cost(checked: nn.Module) -> Tensor:
            return step_cost(checked, x64, y, cfg.module)

        def batch_cost(batch: tuple[Tensor, Tensor]) -> Tensor:
            return step_cost(module, *batch, cfg.module)

        def optimizer() -> torch.optim.Optimizer:
            return _optimizer_of(module, cfg.module)
        _check_differentiable(module, cost, cfg.module)
    between_checks = optimizer() if steps > 0 else None  # a module without one fails here, before any run

    tags = {KIND_TAG: KIND_GRADCHECK, **config_tags(cfg)}
    extra_params = {"gradcheck.steps": steps, "gradcheck.batch_size": len(y),
                    "gradcheck.max_per_tensor": max_per_tensor, "gradcheck.eps": DEFAULT_EPS}
    with recorded_run(cfg, uri, tags, extra_params) as run:
        checks = [{"step": 0, **check_gradients(net, cost, max_per_tensor=max_per_tensor).to_dict()}]
        run.writer.log_metrics({GRADCHECK_METRIC: _metric_value(checks[-1])}, step=0)
        if between_checks is not None:
            _train_steps(module, datamodule, between_checks, steps, batch_cost)
            checks.append({"step": steps, **check_gradients(net, cost, max_per_tensor=max_per_tensor).to_dict()})
            run.writer.log_metrics({GRADCHECK_METRIC: _metric_value(checks[-1])}, step=steps)
        report = _report(checks, run.run_id, run.experiment_id, run.tracking_uri, batch_size=len(y),
                         max_per_tensor=max_per_tensor)
        log_json(run.client, run.run_id, report, GRADCHECK_REPORT, indent=2)
    return report


def _check_arguments(cfg: RunConfig, steps: int, batch_size: int, max_per_tensor: int | None) -> None:
    for name, value, least in (("steps", steps, 0), ("batch_size", batch_size, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ConfigError(f"gradcheck {name} = {value!r} is not allowed; it must be an integer >= {least}")
    if max_per_tensor is not None and (
        isinstance(max_per_tensor, bool) or not isinstance(max_per_tensor, int) or max_per_tensor < 1
    ):
        raise ConfigError(
            f"gradcheck max_per_tensor = {max_per_tensor!r} is not allowed; it must be an integer >= 1 "
            "(or none: every coordinate)"
        )


def _fixed_batch(datamodule: Any, batch_size: int) -> tuple[Tensor, Tensor]:
    """The first `batch_size` training examples, in the loader's fixed order and never augmented."""
    # train_eval_dataloader is the clean, unshuffled training split of the built-in data modules; a user's
    # data module may lack it, and its train_dataloader is then taken as it comes (one fixed draw).
    loader = (datamodule.train_eval_dataloader() if hasattr(datamodule, "train_eval_dataloader")
              else datamodule.train_dataloader())
    xs: list[Tensor] = []
    ys: list[Tensor] = []
    taken = 0
    for x, y in loader:
        xs.append(x)
        ys.append(y)
        taken += len(y)
        if taken >= batch_size:
            break
    if not xs:
        raise ConfigError(f"{type(datamodule).__name__}: the training split is empty; gradcheck needs an example")
    return torch.cat(xs)[:batch_size], torch.cat(ys)[:batch_size]


def training_cost(module: FitModule, net: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """The training cost J of `module` on the batch (x, y) with the weights of `net`.

    J = cross-entropy(net(x), y) + module.penalty() (the L2 / L1 terms, or nothing when reg is off), as in
    FitModule.training_step. `net` is module.net itself or a copy of it, such as the float64 copy that
    `check_gradients` hands its cost; the penalty is then evaluated on the copy's weights.
    """
    loss = F.cross_entropy(net(x), y)
    penalty = _penalty_of(module, net)
    return loss if penalty is None else loss + penalty


def _penalty_of(module: FitModule, net: nn.Module) -> Tensor | None:
    # FitModule.penalty() reads self.net; lending it the net under check for the call (the float64 copy)
    # keeps the checked J exactly the training cost, whatever terms penalty() comes to hold.
    if net is module.net:
        return module.penalty()
    original = module.net
    module.net = net
    try:
        return module.penalty()
    finally:
        module.net = original


def step_cost(module: nn.Module, x: Tensor, y: Tensor, path: str | None = None) -> Tensor:
    """J of a user's LightningModule on the batch (x, y): what its `training_step` returns (a tensor, or a dict's
    "loss"), its logging switched off. A ConfigError naming the module when it returns no loss tensor."""
    out = module.training_step((x, y), 0)
    loss = out.get("loss") if isinstance(out, dict) else out
    if not isinstance(loss, Tensor) or loss.numel() != 1:
        raise ConfigError(f"module = {path!r}: gradcheck needs training_step to return the loss J (a scalar tensor, "
                          f"or a dict with 'loss'); it returned {type(out).__name__}")
    return loss.reshape(())


def _quiet_logging(module: nn.Module) -> None:
    """A LightningModule's self.log outside a Trainer: nothing to log to, so a no-op on this instance (and its
    copies)."""
    module.log = lambda *args, **kwargs: None  # type: ignore[method-assign]
    module.log_dict = lambda *args, **kwargs: None  # type: ignore[method-assign]


def _check_differentiable(module: nn.Module, cost: Cost, path: str | None) -> None:
    """A ConfigError, before any run exists, when J of the module cannot be differentiated by autograd (detached,
    or computed through an operation without a gradient) or has no trainable parameter."""
    params = [p for p in module.parameters() if p.requires_grad]
    if not params:
        raise ConfigError(f"module = {path!r} has no trainable parameter: there is no gradient to check")
    checked = copy.deepcopy(module).to(torch.float64).eval()
    value = cost(checked)
    if not value.requires_grad:
        raise ConfigError(f"module = {path!r} cannot be gradient-checked: the loss its training_step returns does not "
                          "depend on its parameters through autograd (detached, or computed by an operation "
                          "without a gradient such as argmax or round)")


def _optimizer_of(module: nn.Module, path: str | None) -> torch.optim.Optimizer:
    """The (first) optimizer a user's LightningModule configures."""
    found = module.configure_optimizers()
    if isinstance(found, dict):
        found = found.get("optimizer")
    if isinstance(found, (list, tuple)) and found:
        found = found[0][0] if isinstance(found[0], (list, tuple)) else found[0]
    if not isinstance(found, torch.optim.Optimizer):
        raise ConfigError(f"module = {path!r}: configure_optimizers returned no optimizer to train between the "
                          "checks with; use --steps 0 to check at initialization only")
    return found


def _train_steps(module: nn.Module, datamodule: Any, optimizer: torch.optim.Optimizer, steps: int,
                 cost: Callable[[tuple[Tensor, Tensor]], Tensor]) -> None:
    """`steps` optimizer steps on J (`cost` of a batch) over training batches (reshuffled each pass), dropout on."""
    was_training = module.training
    module.train()
    done = 0
    while done < steps:
        progressed = False
        for x, y in datamodule.train_dataloader():
            optimizer.zero_grad(set_to_none=True)
            cost((x, y)).backward()
            optimizer.step()
            done += 1
            progressed = True
            if done == steps:
                break
        if not progressed:
            raise ConfigError("the training dataloader yielded no batches; gradcheck cannot train between checks")
    module.train(was_training)


def _metric_value(check: dict[str, Any]) -> float:
    value = check["relative_difference"]
    return math.nan if value is None else value


def _report(
    checks: list[dict[str, Any]], run_id: str, exp_id: str, uri: str, batch_size: int, max_per_tensor: int | None
) -> dict[str, Any]:
    # The headline is the worst check (by its verdict, then its difference): a bug that shows only after training
    # must not hide behind a clean init.
    worst = max(checks, key=lambda c: (VERDICTS.index(c["verdict"]),
                                       math.inf if c["relative_difference"] is None else c["relative_difference"]))
    return {
        "run_id": run_id,
        "experiment_id": exp_id,
        "tracking_uri": uri,
        "relative_difference": worst["relative_difference"],
        "verdict": worst["verdict"],
        "worst_step": worst["step"],
        "worst_tensor": worst["worst_tensor"],
        "per_tensor": worst["per_tensor"],
        "eps": worst["eps"],
        "batch_size": batch_size,
        "max_per_tensor": max_per_tensor,
        "checks": checks,
    }

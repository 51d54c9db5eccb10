"""Gradient checking: hand-computed numbers, a planted backward bug to locate, `fitlens gradcheck` end to end."""

from __future__ import annotations

import copy
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from mlflow.tracking import MlflowClient
from torch import Tensor, nn

from fitlens.cli import main
from lightning_modules.config import ModelConfig, OptimConfig, RegConfig
from lightning_modules.models import build_model
from lightning_modules.module import FitModule
from lightning_modules.regularization import l1_penalty, l2_penalty
from tracking import gradcheck
from tracking.config import load_config
from tracking.gradcheck import (
    check_gradients,
    numeric_gradient,
    relative_difference,
    run_gradcheck,
    sample_coordinates,
    training_cost,
)
from tracking.gradcheck_verdict import GREAT_BELOW, WORRY_AT, gradcheck_verdict
from tracking.layout import ERROR_TAG, KIND_GRADCHECK, KIND_TAG

FITLENS = str(Path(sys.executable).parent / "fitlens")


class Weights(nn.Module):
    """A bare parameter vector w, for costs written by hand."""

    def __init__(self, values: Tensor) -> None:
        super().__init__()
        self.w = nn.Parameter(values)


class _ScaledWeightGrad(torch.autograd.Function):
    """z = x W^T + b whose backward returns 1.1 * dJ/dW (dJ/dx and dJ/db are right): a planted bug."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
        ctx.save_for_backward(x, weight)
        return x @ weight.T + bias  # (B, out)

    @staticmethod
    def backward(ctx, grad_z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        x, weight = ctx.saved_tensors
        return grad_z @ weight, 1.1 * grad_z.T @ x, grad_z.sum(0)


class BuggyLinear(nn.Linear):
    def forward(self, x: Tensor) -> Tensor:
        return _ScaledWeightGrad.apply(x, self.weight, self.bias)


class GoodThenBuggy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.good = nn.Linear(3, 4)
        self.bad = BuggyLinear(4, 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.bad(torch.tanh(self.good(x)))  # (B, 2)


def _batch(n: int, features: int, classes: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, features, generator=generator, dtype=torch.float64)
    return x, torch.randint(0, classes, (n,), generator=generator)


def _cross_entropy_cost(x: Tensor, y: Tensor):
    return lambda net: F.cross_entropy(net(x), y)


# ----------------------------------------------------------------------------------------------
# Pure statistics


def test_verdict_thresholds() -> None:
    assert (GREAT_BELOW, WORRY_AT) == (1e-6, 1e-3)
    assert gradcheck_verdict(1e-7) == "great"
    assert gradcheck_verdict(0.0) == "great"
    assert gradcheck_verdict(1e-6) == "look closer"  # the boundary belongs to the worse verdict
    assert gradcheck_verdict(1e-5) == "look closer"
    assert gradcheck_verdict(1e-3) == "worry"
    assert gradcheck_verdict(0.5) == "worry"
    assert gradcheck_verdict(math.nan) == "worry"


def test_relative_difference_by_hand() -> None:
    # ||(3, 4) - 0|| / (5 + 0) = 1; ||(1, 0) - (0, 1)|| / (1 + 1) = sqrt(2) / 2; 0 / 0 is taken as 0.
    assert relative_difference(torch.tensor([3.0, 4.0]), torch.zeros(2)) == pytest.approx(1.0)
    assert relative_difference(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])) == pytest.approx(math.sqrt(2) / 2)
    assert relative_difference(torch.zeros(3), torch.zeros(3)) == 0.0
    # 1.1 g against g: 0.1 ||g|| / 2.1 ||g||, whatever g is.
    g = torch.tensor([0.3, -2.0, 0.7])
    assert relative_difference(g, 1.1 * g) == pytest.approx(0.1 / 2.1)


def test_numeric_gradient_of_sum_of_squares_is_2w() -> None:
    w = torch.tensor([1.0, -2.0, 0.5, 0.0], dtype=torch.float64)
    net = Weights(w.clone())
    numeric = numeric_gradient(net, lambda n: (n.w**2).sum())["w"]
    assert torch.allclose(numeric, 2 * w, rtol=0, atol=1e-7)  # two-sided differences are exact on a quadratic
    assert torch.equal(net.w.detach(), w)  # every nudge was put back bit for bit


def test_one_parameter_cube_matches_closed_form() -> None:
    # J = w^3 at w = 2: dJ/dw = 3 w^2 = 12; the two-sided error is eps^2 w^0 = 1e-14, rounding ~1e-8.
    result = check_gradients(Weights(torch.tensor([2.0])), lambda n: (n.w**3).sum())
    (only,) = result.per_tensor
    assert only.worst_analytic == 12.0
    assert only.worst_numeric == pytest.approx(12.0, abs=1e-6)
    assert result.relative_difference < 1e-8
    assert result.verdict == "great"
    assert only.name == "w" and only.shape == (1,) and only.worst_index == (0,)


def test_non_contiguous_parameter_is_nudged_in_place() -> None:
    # J = sum(W * A): dJ/dW = A. W is a transposed (non-contiguous) view, so reshape(-1) would copy.
    a = torch.arange(12, dtype=torch.float64).reshape(4, 3)
    net = Weights(torch.randn(3, 4, dtype=torch.float64).T)
    assert not net.w.is_contiguous()
    numeric = numeric_gradient(net, lambda n: (n.w * a).sum())["w"]
    assert torch.allclose(numeric, a.reshape(-1), atol=1e-6)


# ----------------------------------------------------------------------------------------------
# check_gradients on networks


def test_wrong_backward_is_flagged_and_located() -> None:
    torch.manual_seed(0)
    x, y = _batch(8, 3, 2)
    result = check_gradients(GoodThenBuggy(), _cross_entropy_cost(x, y))
    by_name = {t.name: t for t in result.per_tensor}
    assert list(by_name) == ["good.weight", "good.bias", "bad.weight", "bad.bias"]
    assert result.verdict == "worry"
    assert result.worst_tensor == "bad.weight"
    assert by_name["bad.weight"].verdict == "worry"
    assert by_name["bad.weight"].relative_difference == pytest.approx(0.1 / 2.1, rel=1e-5)
    worst = by_name["bad.weight"]
    assert worst.worst_analytic == pytest.approx(1.1 * worst.worst_numeric, rel=1e-5)
    for name in ("good.weight", "good.bias", "bad.bias"):
        assert by_name[name].verdict == "great", by_name[name]


def _regularized_module() -> FitModule:
    torch.manual_seed(0)
    cfg = ModelConfig(depth=2, width=6, activation="tanh", init="xavier", keep_prob=0.5, input_keep_prob=0.8,
                      dropconnect_keep_prob=0.7)
    net = build_model(cfg, (5,), 3)
    return FitModule(net, OptimConfig(), RegConfig(l2=0.5, l1=0.3), m_train=16, max_epochs=1)


def test_correct_regularized_network_with_dropout_is_great() -> None:
    module = _regularized_module()
    net = module.net  # left in training mode: dropout and DropConnect are on here
    before = {name: p.detach().clone() for name, p in net.named_parameters()}
    x, y = _batch(16, 5, 3)
    result = check_gradients(net, lambda n: training_cost(module, n, x, y))
    assert result.relative_difference < 1e-6
    assert result.verdict == "great"
    assert all(t.verdict == "great" for t in result.per_tensor)
    assert result.checked == result.n_parameters == sum(p.numel() for p in net.parameters())
    # The caller's net is untouched: float32, training mode, same weights.
    assert net.training and next(net.parameters()).dtype == torch.float32
    assert all(torch.equal(p, before[name]) for name, p in net.named_parameters())


def test_training_cost_includes_the_penalty_of_the_net_given() -> None:
    module = _regularized_module()
    copy64 = _copy64(module.net)
    x, y = _batch(16, 5, 3)
    cost = training_cost(module, copy64, x, y)
    expected = F.cross_entropy(copy64(x), y) + l2_penalty(copy64, 0.5, 16) + l1_penalty(copy64, 0.3, 16)
    assert float(cost) == pytest.approx(float(expected), rel=1e-12)
    assert cost.dtype == torch.float64
    assert module.net is not copy64  # the module's own net is back in place


def _copy64(net: nn.Module) -> nn.Module:
    return copy.deepcopy(net).double().eval()


def test_max_per_tensor_checks_exactly_that_many() -> None:
    torch.manual_seed(0)
    net = nn.Linear(10, 20)  # 200 weights, 20 biases
    x, y = _batch(4, 10, 20)
    result = check_gradients(net, _cross_entropy_cost(x, y), max_per_tensor=7)
    assert [t.checked for t in result.per_tensor] == [7, 7]
    assert (result.checked, result.n_parameters) == (14, 220)
    assert result.verdict == "great"
    capped = check_gradients(net, _cross_entropy_cost(x, y), max_per_tensor=50)
    assert [t.checked for t in capped.per_tensor] == [50, 20]  # a tensor smaller than the cap is checked whole
    with pytest.raises(ValueError, match="max_per_tensor"):
        check_gradients(net, _cross_entropy_cost(x, y), max_per_tensor=0)


def test_sampled_coordinates_are_seeded_distinct_and_sorted() -> None:
    net = nn.Linear(10, 20)
    first = sample_coordinates(net, max_per_tensor=30, seed=3)["weight"]
    assert torch.equal(first, sample_coordinates(net, max_per_tensor=30, seed=3)["weight"])
    assert not torch.equal(first, sample_coordinates(net, max_per_tensor=30, seed=4)["weight"])
    assert len(set(first.tolist())) == 30 and first.tolist() == sorted(first.tolist())
    assert 0 <= int(first.min()) and int(first.max()) < 200


def test_float32_cost_is_refused() -> None:
    x, y = _batch(4, 3, 2)
    with pytest.raises(ValueError, match="float64"):
        check_gradients(nn.Linear(3, 2), lambda n: F.cross_entropy(n(x).float(), y))


# ----------------------------------------------------------------------------------------------
# run_gradcheck and `fitlens gradcheck`

TINY = ["data.name=moons", "data.n_samples=200", "model.depth=1", "model.width=8", "reg.l2=0.1",
        "model.keep_prob=0.5"]


def test_cli_json_report_equals_the_artifact(tmp_path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    done = subprocess.run([FITLENS, "gradcheck", "--json", *TINY, "--steps", "5", "--tracking-uri", uri],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["verdict"] == "great"
    assert report["relative_difference"] < 1e-6
    assert [c["step"] for c in report["checks"]] == [0, 5]
    assert all(c["verdict"] == "great" for c in report["checks"])
    # moons: 2 features, 8 hidden units, 2 classes -> 8*2 + 8 + 2*8 + 2 = 42 coordinates, all checked
    assert [(t["name"], t["checked"]) for t in report["per_tensor"]] == [
        ("hidden.0.linear.weight", 16), ("hidden.0.linear.bias", 8), ("out.weight", 16), ("out.bias", 2)]
    assert report["tracking_uri"] == uri

    client = MlflowClient(uri)
    run = client.get_run(report["run_id"])
    assert run.info.status == "FINISHED"
    assert run.info.experiment_id == report["experiment_id"]
    assert run.data.tags[KIND_TAG] == KIND_GRADCHECK
    assert run.data.params["model.width"] == "8" and run.data.params["reg.l2"] == "0.1"
    history = client.get_metric_history(report["run_id"], "gradcheck/relative_difference")
    assert {m.step: m.value for m in history} == {c["step"]: c["relative_difference"] for c in report["checks"]}
    artifact = client.download_artifacts(report["run_id"], "gradcheck/report.json", str(tmp_path))
    assert json.loads(Path(artifact).read_text()) == report


USER = ["module=tests.tracking.user_objects:LinearModule", "data.name=tests.tracking.user_objects:BlobsData"]


def test_a_user_module_is_checked_on_its_own_parameters_and_loss(tmp_path) -> None:
    """`module:` a LightningModule of the user's: J is what its training_step returns, theta its parameters, and
    between the checks it trains with its own optimizer."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    report = run_gradcheck(load_config(None, [*USER, "experiment=user"]), steps=3, batch_size=32, uri=uri)
    assert [c["step"] for c in report["checks"]] == [0, 3]
    for check in report["checks"]:
        assert [t["name"] for t in check["per_tensor"]] == ["layer.weight", "layer.bias"]
        assert check["checked"] == check["n_parameters"] == 4 * 2 + 2
        assert check["verdict"] == "great" and check["relative_difference"] < GREAT_BELOW
    weights = [c["per_tensor"][0]["worst_analytic"] for c in report["checks"]]
    assert weights[0] != weights[1]  # it trained between the checks


def test_a_module_without_a_gradient_and_bad_arguments_exit_2_before_any_run(tmp_path, capsys) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    code = main(["gradcheck", "--tracking-uri", uri, "module=tests.tracking.user_objects:ErrorAsLossModule",
                 "data.name=tests.tracking.user_objects:BlobsData"])
    assert code == 2
    err = capsys.readouterr().err
    assert "module = 'tests.tracking.user_objects:ErrorAsLossModule' cannot be gradient-checked" in err, err
    assert main(["gradcheck", "--tracking-uri", uri, "--steps", "-1", *TINY]) == 2
    assert "steps = -1" in capsys.readouterr().err
    assert main(["gradcheck", "--tracking-uri", uri, "--max-per-tensor", "0", *TINY]) == 2
    assert not (tmp_path / "mlflow.db").exists()  # refused before a store was even opened


class _ScaledGradient(torch.autograd.Function):
    """The identity, whose backward is `scale` times too large: a wrong backward in one tensor."""

    @staticmethod
    def forward(ctx, x, scale):
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.scale, None


class _OneWrongBias(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.big = nn.Linear(20, 40)
        self.small = nn.Parameter(torch.randn(40) * 0.1)  # a bias whose gradient is 1% off

    def forward(self, x):
        return torch.tanh(self.big(x) + _ScaledGradient.apply(self.small, 1.01))


def test_the_verdict_is_the_worst_tensor_s() -> None:
    """One small tensor's backward 1% off reads "worry" on its own, though the overall difference over every
    coordinate of the net stays below the worry bound: the headline is the worst tensor's verdict."""
    net = _OneWrongBias()
    x = torch.randn(16, 20, dtype=torch.float64)
    result = check_gradients(net, lambda n: n(x).pow(2).sum())
    small = next(t for t in result.per_tensor if t.name == "small")
    assert small.relative_difference == pytest.approx(0.01 / 2.01, rel=1e-3) and small.verdict == "worry"
    assert result.relative_difference < WORRY_AT and gradcheck_verdict(result.relative_difference) != "worry"
    assert result.verdict == "worry" and result.worst_tensor == "small"


def test_failure_during_a_check_marks_the_run_failed(tmp_path, monkeypatch) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"

    def broken(*args, **kwargs):
        raise RuntimeError("planted failure")

    monkeypatch.setattr(gradcheck, "check_gradients", broken)
    with pytest.raises(RuntimeError, match="planted failure"):
        run_gradcheck(load_config(None, [*TINY, "experiment=broken"]), uri=uri)
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("broken").experiment_id])
    assert run.info.status == "FAILED"
    assert run.data.tags[ERROR_TAG] == "RuntimeError: planted failure"
    assert run.data.tags[KIND_TAG] == KIND_GRADCHECK

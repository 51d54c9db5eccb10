"""The L1/L2 terms against hand-computed values, their gradients, and L2 as weight decay."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lightning_modules.regularization import l1_penalty, l2_penalty, weights


def _tiny_net() -> nn.Sequential:
    """Linear(2, 2) -> ReLU -> Linear(2, 1), with weights a reader can square and add by hand."""
    net = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 1))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, -2.0], [3.0, 0.5]]))
        net[0].bias.copy_(torch.tensor([5.0, -5.0]))  # large biases: they must not count
        net[2].weight.copy_(torch.tensor([[-1.0, 4.0]]))
        net[2].bias.copy_(torch.tensor([7.0]))
    return net


# sum of squares of the weights: 1 + 4 + 9 + 0.25 + 1 + 16 = 31.25; sum of |W|: 1 + 2 + 3 + 0.5 + 1 + 4 = 11.5
SUM_SQUARES, SUM_ABS = 31.25, 11.5
LAM, M = 0.6, 3  # lam / (2m) = 0.1


def test_weights_are_the_weight_matrices_only() -> None:
    net = _tiny_net()
    ws = weights(net)
    assert len(ws) == 2
    assert ws[0] is net[0].weight and ws[1] is net[2].weight


def test_weights_skip_batch_norm_and_include_convolutions() -> None:
    net = nn.Sequential(nn.Conv1d(1, 2, 3), nn.BatchNorm1d(2), nn.Flatten(), nn.Linear(4, 2), nn.BatchNorm1d(2))
    ws = weights(net)
    assert [id(w) for w in ws] == [id(net[0].weight), id(net[3].weight)]


def test_tied_weight_counts_once() -> None:
    layer = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
    net = nn.Sequential(layer, nn.ReLU(), layer)
    assert len(weights(net)) == 1
    assert l2_penalty(net, 2.0, 1).item() == pytest.approx(30.0)  # 2/(2*1) * (1 + 4 + 9 + 16)


def test_l2_and_l1_equal_hand_computed_values() -> None:
    net = _tiny_net()
    assert l2_penalty(net, LAM, M).item() == pytest.approx(0.1 * SUM_SQUARES)  # 3.125
    assert l1_penalty(net, LAM, M).item() == pytest.approx(0.1 * SUM_ABS)  # 1.15


def test_batch_norm_scale_is_not_penalized() -> None:
    net = _tiny_net()
    with_bn = nn.Sequential(net[0], nn.BatchNorm1d(2), net[1], net[2])
    with torch.no_grad():
        with_bn[1].weight.fill_(10.0)
    assert l2_penalty(with_bn, LAM, M).item() == pytest.approx(0.1 * SUM_SQUARES)
    assert l1_penalty(with_bn, LAM, M).item() == pytest.approx(0.1 * SUM_ABS)


def test_no_weights_gives_zero() -> None:
    assert l2_penalty(nn.ReLU(), 1.0, 10).item() == 0.0
    assert l1_penalty(nn.Sequential(nn.BatchNorm1d(3)), 1.0, 10).item() == 0.0


def test_l2_gradient_is_lambda_over_m_times_w() -> None:
    net = _tiny_net()
    l2_penalty(net, LAM, M).backward()
    for layer in (net[0], net[2]):
        torch.testing.assert_close(layer.weight.grad, (LAM / M) * layer.weight.detach())
        assert layer.bias.grad is None  # biases are not in the term at all


def test_l1_gradient_is_lambda_over_2m_times_sign_w() -> None:
    net = _tiny_net()
    l1_penalty(net, LAM, M).backward()
    for layer in (net[0], net[2]):
        torch.testing.assert_close(layer.weight.grad, (LAM / (2 * M)) * torch.sign(layer.weight.detach()))
        assert layer.bias.grad is None


def test_l2_gradient_matches_finite_differences() -> None:
    # The slow twin: central differences in float64 on every weight entry.
    net = _tiny_net().double()
    l2_penalty(net, LAM, M).backward()
    eps = 1e-6
    for w in weights(net):
        approx = torch.zeros_like(w)
        for i in range(w.numel()):
            with torch.no_grad():
                flat = w.view(-1)
                flat[i] += eps
                plus = l2_penalty(net, LAM, M).item()
                flat[i] -= 2 * eps
                minus = l2_penalty(net, LAM, M).item()
                flat[i] += eps
            approx.view(-1)[i] = (plus - minus) / (2 * eps)
        torch.testing.assert_close(w.grad, approx, rtol=1e-6, atol=1e-8)


def test_sgd_step_with_l2_is_weight_decay() -> None:
    torch.manual_seed(0)
    x, y = torch.randn(5, 2), torch.tensor([0.3, -1.0, 2.0, 0.5, -0.2]).unsqueeze(1)
    lr = 0.1

    def data_cost(net: nn.Module) -> torch.Tensor:
        return F.mse_loss(net(x), y)

    # dJ_data/dW at the starting weights, without the penalty.
    reference = _tiny_net()
    data_cost(reference).backward()

    net = _tiny_net()
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    (data_cost(net) + l2_penalty(net, LAM, M)).backward()
    opt.step()

    for new, old in ((net[0], reference[0]), (net[2], reference[2])):
        # W <- W (1 - lr lambda / m) - lr dJ_data/dW: "weight decay"
        expected_w = old.weight.detach() * (1 - lr * LAM / M) - lr * old.weight.grad
        torch.testing.assert_close(new.weight.detach(), expected_w)
        # biases are not decayed
        torch.testing.assert_close(new.bias.detach(), old.bias.detach() - lr * old.bias.grad)


@pytest.mark.parametrize("penalty", [l1_penalty, l2_penalty])
def test_bad_lambda_or_m_raises(penalty) -> None:
    with pytest.raises(ValueError, match="lam = -1"):
        penalty(_tiny_net(), -1.0, 3)
    with pytest.raises(ValueError, match="m = 0"):
        penalty(_tiny_net(), 1.0, 0)

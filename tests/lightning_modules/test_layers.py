"""Custom layers against hand computations and their expectations over many random masks."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from lightning_modules.layers import (
    ACTIVATIONS,
    WEIGHTED_LAYERS,
    ChannelMaxout,
    DropConnectConv1d,
    DropConnectConv2d,
    DropConnectLinear,
    InvertedDropout,
    make_activation,
)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


# --- inverted dropout ---------------------------------------------------------------------


def test_inverted_dropout_keeps_expected_activation_and_drops_one_minus_keep_prob() -> None:
    keep_prob = 0.8
    a = torch.full((2000, 100), 3.0)
    out = InvertedDropout(keep_prob).train()(a)
    dropped = (out == 0).float().mean().item()
    assert dropped == pytest.approx(1 - keep_prob, abs=0.01)
    # Survivors are scaled by 1/keep_prob, so the mean stays at the input's 3.0.
    assert torch.allclose(out[out != 0], torch.tensor(3.0 / keep_prob))
    assert out.mean().item() == pytest.approx(3.0, rel=0.01)


def test_inverted_dropout_expectation_per_unit_over_many_masks() -> None:
    a = torch.randn(1, 20)
    layer = InvertedDropout(0.5).train()
    mean = torch.stack([layer(a) for _ in range(20000)]).mean(dim=0)
    # Each unit's mean has std |a| * sqrt((1 - p) / p / n) <= ~0.02 here.
    assert torch.allclose(mean, a, atol=0.05)


def test_inverted_dropout_is_identity_in_eval_and_at_keep_prob_one() -> None:
    a = torch.randn(64, 10)
    assert torch.equal(InvertedDropout(0.3).eval()(a), a)
    assert torch.equal(InvertedDropout(1.0).train()(a), a)


@pytest.mark.parametrize("keep_prob", [0.0, -0.1, 1.5, True])
def test_inverted_dropout_rejects_bad_keep_prob(keep_prob: float) -> None:
    with pytest.raises(ValueError, match=r"keep_prob = .* \(0, 1\]"):
        InvertedDropout(keep_prob)


# --- DropConnect --------------------------------------------------------------------------


def test_dropconnect_expected_output_equals_plain_linear() -> None:
    layer = DropConnectLinear(20, 5, keep_prob=0.7).train()
    x = torch.randn(8, 20)
    plain = F.linear(x, layer.weight, layer.bias)
    with torch.no_grad():
        mean = torch.stack([layer(x) for _ in range(5000)]).mean(dim=0)
    # Per-output std of one draw is ~0.4 here, so the mean of 5000 is within ~0.006 (0.03 = 5 sigma).
    assert torch.allclose(mean, plain, atol=0.03)


def test_dropconnect_drops_one_minus_keep_prob_of_the_weights() -> None:
    keep_prob = 0.7
    layer = DropConnectLinear(200, 200, bias=False, keep_prob=keep_prob).train()
    with torch.no_grad():
        # With x = e_i, row i of the output is column i of the masked weight: out = (W * M / p)^T.
        masked = layer(torch.eye(200)).T  # (out, in)
    dropped = masked == 0
    assert dropped.float().mean().item() == pytest.approx(1 - keep_prob, abs=0.01)
    assert torch.allclose(masked[~dropped], layer.weight[~dropped] / keep_prob)


def test_dropconnect_is_plain_linear_in_eval() -> None:
    layer = DropConnectLinear(6, 3, keep_prob=0.5).eval()
    x = torch.randn(4, 6)
    assert torch.equal(layer(x), F.linear(x, layer.weight, layer.bias))
    assert isinstance(layer, WEIGHTED_LAYERS)


@pytest.mark.parametrize("spatial_dims", [1, 2])
def test_dropconnect_conv_expectation_and_eval(spatial_dims: int) -> None:
    dropconnect_conv, plain_conv = {1: (DropConnectConv1d, nn.Conv1d), 2: (DropConnectConv2d, nn.Conv2d)}[spatial_dims]
    layer = dropconnect_conv(2, 3, 3, padding=1, keep_prob=0.6)
    plain = plain_conv(2, 3, 3, padding=1)
    plain.load_state_dict(layer.state_dict())
    x = torch.randn(5, 2, *[4] * spatial_dims)  # (B, C, *spatial)
    with torch.no_grad():
        expected = plain(x)
        assert torch.equal(layer.eval()(x), expected)
        layer.train()
        draws = torch.stack([layer(x) for _ in range(2000)])
    # Compare the mean of the draws with the plain output in units of its own standard error.
    standard_error = draws.std(dim=0) / 2000**0.5
    assert torch.all((draws.mean(dim=0) - expected).abs() <= 5 * standard_error + 1e-6)
    assert not torch.equal(layer(x), expected)  # training does drop connections


# --- maxout -------------------------------------------------------------------------------


def test_maxout_matches_hand_computation() -> None:
    """A maxout unit as the models build it: a linear map with `pieces` times the units, then ChannelMaxout."""
    linear = nn.Linear(2, 4)
    layer = nn.Sequential(linear, ChannelMaxout(2))
    with torch.no_grad():
        linear.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, -1.0]]))
        linear.bias.copy_(torch.tensor([0.0, 0.0, 0.5, 0.0]))
    x = torch.tensor([[2.0, -3.0], [-1.0, 4.0]])
    # Row 1: z = [2, -3, -0.5, 1] -> [max(2, -3), max(-0.5, 1)] = [2, 1]
    # Row 2: z = [-1, 4, 3.5, -3] -> [4, 3.5]
    assert torch.equal(layer(x), torch.tensor([[2.0, 1.0], [4.0, 3.5]]))


def test_channel_maxout_groups_consecutive_channels_for_conv_maps() -> None:
    z = torch.arange(2 * 6 * 3, dtype=torch.float32).reshape(2, 6, 3).flip(-1)  # (B, C * pieces, L)
    z[0, 1, 0] = 100.0
    out = ChannelMaxout(3)(z)  # (B, 2, L)
    expected = torch.stack([z[:, 0:3].amax(dim=1), z[:, 3:6].amax(dim=1)], dim=1)
    assert out.shape == (2, 2, 3)
    assert torch.equal(out, expected)
    assert out[0, 0, 0].item() == 100.0
    assert ChannelMaxout(2)(torch.randn(4, 6, 8, 8)).shape == (4, 3, 8, 8)


def test_channel_maxout_rejects_channels_not_divisible_by_pieces() -> None:
    with pytest.raises(ValueError, match="5 channels, not a multiple of pieces = 2"):
        ChannelMaxout(2)(torch.randn(3, 5))


@pytest.mark.parametrize("pieces", [1, 0, 2.5])
def test_maxout_rejects_bad_pieces(pieces: int) -> None:
    with pytest.raises(ValueError, match="pieces = "):
        ChannelMaxout(pieces)


# --- activations --------------------------------------------------------------------------

_REFERENCE = {
    "sigmoid": lambda x: 1 / (1 + torch.exp(-x)),
    "tanh": lambda x: (torch.exp(x) - torch.exp(-x)) / (torch.exp(x) + torch.exp(-x)),
    "relu": lambda x: torch.where(x > 0, x, 0.0),
    "leaky_relu": lambda x: torch.where(x > 0, x, 0.2 * x),
    "elu": lambda x: torch.where(x > 0, x, torch.exp(x) - 1),
    "gelu": lambda x: 0.5 * x * (1 + torch.erf(x / math.sqrt(2))),  # x * Phi(x)
    "mish": lambda x: x * torch.tanh(torch.log1p(torch.exp(x))),  # x * tanh(softplus(x))
}


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_matches_its_formula(name: str) -> None:
    x = torch.linspace(-4, 4, 81, dtype=torch.float64)
    out = make_activation(name, leaky_slope=0.2)(x)
    assert torch.allclose(out, _REFERENCE[name](x), atol=1e-12)


def test_make_activation_errors_name_the_allowed_values() -> None:
    with pytest.raises(ValueError, match="activation = 'swish' is unknown; allowed: sigmoid, tanh"):
        make_activation("swish")
    with pytest.raises(ValueError, match="built by the model"):
        make_activation("maxout")
    with pytest.raises(ValueError, match=r"leaky_slope = 1.0 is not allowed; it must lie in \[0, 1\)"):
        make_activation("leaky_relu", 1.0)

"""Custom layers of the course: inverted dropout, DropConnect, maxout (`ChannelMaxout`); and the activation factory."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

# The layers whose `weight` is a W of the course: regularized by L1/L2, set by the init schemes.
# Biases and batch-norm scales are not weights in that sense.
WEIGHTED_LAYERS: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d)

# The activations `make_activation` builds; "maxout" is structural (see `ChannelMaxout`).
ACTIVATIONS: tuple[str, ...] = ("sigmoid", "tanh", "relu", "leaky_relu", "elu", "gelu", "mish")


def check_keep_prob(keep_prob: float, name: str = "keep_prob") -> float:
    """Return `keep_prob` if it is a probability in (0, 1], else raise ValueError naming `name`."""
    # 0 would keep nothing and divide by zero in the rescaling; 1 keeps everything (layer is off).
    if isinstance(keep_prob, bool) or not isinstance(keep_prob, int | float) or not 0.0 < keep_prob <= 1.0:
        raise ValueError(
            f"{name} = {keep_prob!r} is not allowed; it is the probability of keeping a unit "
            "and must lie in (0, 1] (1 = off)"
        )
    return float(keep_prob)


def _check_positive_int(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} = {value!r} is not allowed; it must be an integer >= 1")
    return value


class InvertedDropout(nn.Module):
    """The course's inverted dropout: d = (rand < keep_prob); a = a * d / keep_prob.

    Dividing by keep_prob keeps the expected activation unchanged, so nothing has to be rescaled
    at test time, where the layer is the identity (as it is when keep_prob == 1).
    """

    def __init__(self, keep_prob: float = 1.0) -> None:
        super().__init__()
        self.keep_prob = check_keep_prob(keep_prob)

    def forward(self, a: Tensor) -> Tensor:
        if not self.training or self.keep_prob == 1.0:
            return a
        mask = torch.rand_like(a) < self.keep_prob  # one fresh mask per example and unit
        return a * mask / self.keep_prob

    def extra_repr(self) -> str:
        return f"keep_prob={self.keep_prob}"


def _drop_connections(weight: Tensor, keep_prob: float, training: bool) -> Tensor:
    """W * M / keep_prob with M ~ Bernoulli(keep_prob) in training, W otherwise."""
    if not training or keep_prob == 1.0:
        return weight
    # One mask per forward pass, shared by the mini-batch: the paper draws one per example, which
    # costs a (B, out, in) tensor; sharing keeps memory at one weight and the expectation unchanged.
    mask = torch.rand_like(weight) < keep_prob
    return weight * mask / keep_prob


class _DropConnect:
    """Mixin: DropConnect on the `weight` of a Linear or Conv layer, W * M / keep_prob with
    M ~ Bernoulli(keep_prob), in training only; the bias is never dropped."""

    weight: Tensor
    training: bool

    def __init__(self, *args: Any, keep_prob: float = 1.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.keep_prob = check_keep_prob(keep_prob)

    def _dropped_weight(self) -> Tensor:
        return _drop_connections(self.weight, self.keep_prob, self.training)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, keep_prob={self.keep_prob}"


class DropConnectLinear(_DropConnect, nn.Linear):
    """A linear layer whose weights (not units) are dropped; a plain linear layer in eval mode."""

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self._dropped_weight(), self.bias)


class _DropConnectConv(_DropConnect):
    bias: Tensor | None

    def forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(x, self._dropped_weight(), self.bias)


class DropConnectConv1d(_DropConnectConv, nn.Conv1d):
    """`nn.Conv1d` with DropConnect on its kernel weights (training only)."""


class DropConnectConv2d(_DropConnectConv, nn.Conv2d):
    """`nn.Conv2d` with DropConnect on its kernel weights (training only)."""


class ChannelMaxout(nn.Module):
    """Maxout's max: the max over groups of `pieces` consecutive channels (dim 1).

    (B, C * pieces, ...) -> (B, C, ...); output channel j is the max of input channels
    j * pieces ... (j + 1) * pieces - 1. Works for dense (B, F), 1-D (B, C, L) and 2-D (B, C, H, W)
    inputs, so MLPs and CNNs build maxout the same way: a linear map with `pieces` times the units,
    then this module.
    """

    def __init__(self, pieces: int) -> None:
        super().__init__()
        _check_positive_int(pieces, "pieces")
        if pieces < 2:
            raise ValueError(f"pieces = {pieces} is not allowed; maxout needs at least 2 pieces per unit")
        self.pieces = pieces

    def forward(self, z: Tensor) -> Tensor:
        n_channels = z.shape[1]
        if n_channels % self.pieces:
            raise ValueError(f"ChannelMaxout got {n_channels} channels, not a multiple of pieces = {self.pieces}")
        grouped = z.unflatten(1, (n_channels // self.pieces, self.pieces))  # (B, C, pieces, ...)
        return grouped.amax(dim=2)  # (B, C, ...)

    def extra_repr(self) -> str:
        return f"pieces={self.pieces}"


def make_activation(name: str, leaky_slope: float = 0.01) -> nn.Module:
    """The activation module called `name` (one of `ACTIVATIONS`); `leaky_slope` is leaky ReLU's slope.

    Maxout is not an elementwise function of one pre-activation, so models build it structurally
    (a linear map with `pieces` times the units followed by `ChannelMaxout`).
    """
    if name == "maxout":
        raise ValueError(
            "activation 'maxout' is built by the model (a wider linear layer + ChannelMaxout), "
            f"not by make_activation; allowed here: {', '.join(ACTIVATIONS)}"
        )
    if name not in ACTIVATIONS:
        raise ValueError(f"activation = {name!r} is unknown; allowed: {', '.join(ACTIVATIONS)}, maxout")
    # A slope of 1 would make leaky ReLU linear; a negative one would make it non-monotonic.
    if isinstance(leaky_slope, bool) or not isinstance(leaky_slope, int | float) or not 0.0 <= leaky_slope < 1.0:
        raise ValueError(f"leaky_slope = {leaky_slope!r} is not allowed; it must lie in [0, 1)")
    factories: dict[str, type[nn.Module]] = {
        "sigmoid": nn.Sigmoid,
        "tanh": nn.Tanh,
        "relu": nn.ReLU,
        "elu": nn.ELU,
        "gelu": nn.GELU,
        "mish": nn.Mish,
    }
    if name == "leaky_relu":
        return nn.LeakyReLU(float(leaky_slope))
    return factories[name]()

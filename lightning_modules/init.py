"""Weight initialization schemes of the course, applied to every W of a network (biases b = 0)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from lightning_modules.layers import WEIGHTED_LAYERS

INIT_SCHEMES: tuple[str, ...] = ("zeros", "constant", "normal", "uniform", "xavier", "glorot", "he", "default")


def fan_in_fan_out(weight: Tensor) -> tuple[int, int]:
    """(n_in, n_out) of a weight: (in, out) for a linear (out, in) weight, channels * kernel size for a conv.

    A conv weight is (out_channels, in_channels, *kernel): each output unit sees
    in_channels * prod(kernel) inputs, each input feeds out_channels * prod(kernel) outputs.
    """
    if weight.dim() < 2:
        raise ValueError(f"a weight needs at least 2 dimensions (out, in, ...), got shape {tuple(weight.shape)}")
    receptive_field = math.prod(weight.shape[2:])  # 1 for a linear layer
    return weight.shape[1] * receptive_field, weight.shape[0] * receptive_field


def _check_positive(value: float, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0.0:
        raise ValueError(f"{name} = {value!r} is not allowed; it must be > 0")


@torch.no_grad()
def _init_weight(weight: Tensor, scheme: str, std: float, value: float, bound: float) -> None:
    n_in, n_out = fan_in_fan_out(weight)
    if scheme == "zeros":
        weight.zero_()  # every unit computes the same thing: symmetry never breaks
    elif scheme == "constant":
        weight.fill_(value)  # as zeros: identical units, kept identical by identical gradients
    elif scheme == "normal":
        weight.normal_(0.0, std)  # var = std^2 whatever the layer size: small std vanishes, large saturates
    elif scheme == "uniform":
        weight.uniform_(-bound, bound)  # var = bound^2 / 3, again blind to the layer size
    elif scheme == "xavier":
        weight.normal_(0.0, math.sqrt(1.0 / n_in))  # var(z) = n_in var(w) var(a) = var(a): signal kept (tanh)
    elif scheme == "glorot":
        # Compromise between keeping forward (1/n_in) and backward (1/n_out) variance.
        weight.normal_(0.0, math.sqrt(2.0 / (n_in + n_out)))
    elif scheme == "he":
        weight.normal_(0.0, math.sqrt(2.0 / n_in))  # ReLU zeroes half the inputs, so twice Xavier's variance


def initialize(
    net: nn.Module,
    scheme: str,
    *,
    std: float = 0.01,
    value: float = 0.0,
    bound: float = 0.05,
) -> None:
    """Set the weight of every `WEIGHTED_LAYERS` module of `net` (subclasses included) by `scheme`.

    Schemes (n_in / n_out are fan-in / fan-out, see `fan_in_fan_out`):
    zeros; constant (`value`); normal N(0, std^2); uniform U(-bound, bound); xavier N(0, 1/n_in)
    (the course's convention); glorot N(0, 2/(n_in + n_out)); he N(0, 2/n_in); default (PyTorch's
    own init, left untouched, biases included). Every scheme but default sets the biases to 0.
    Batch-norm scales and shifts are not weights here and keep their (1, 0) init.
    """
    if scheme not in INIT_SCHEMES:
        raise ValueError(f"init scheme = {scheme!r} is unknown; allowed: {', '.join(INIT_SCHEMES)}")
    if scheme == "normal":
        _check_positive(std, "std")
    if scheme == "uniform":
        _check_positive(bound, "bound")
    if scheme == "default":
        return
    for module in net.modules():
        if not isinstance(module, WEIGHTED_LAYERS):
            continue
        _init_weight(module.weight, scheme, std, value, bound)
        if module.bias is not None:
            with torch.no_grad():
                module.bias.zero_()  # the course's b = 0: the random W alone breaks symmetry

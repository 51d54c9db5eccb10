"""The regularization terms of the cost J, as pure functions of a network.

The course's conventions (docs/conventions.md; m = training-set size, weights W[l] only, never biases):

    L2: lambda/(2m) * sum_l ||W[l]||_F^2   -> dJ/dW[l] gains (lambda/m) * W[l]  ("weight decay")
    L1: lambda/(2m) * sum_l sum |W[l]|     -> dJ/dW[l] gains lambda/(2m) * sign(W[l])
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lightning_modules.layers import WEIGHTED_LAYERS


def weights(net: nn.Module) -> list[Tensor]:
    """The weight W[l] of every layer of `net` that is one of WEIGHTED_LAYERS (Linear/Conv and subclasses).

    Biases and batch-norm scales are never included. A weight shared by several layers
    (tied weights) is listed once, so that it is penalized once.
    """
    seen: set[int] = set()
    out: list[Tensor] = []
    for module in net.modules():
        if not isinstance(module, WEIGHTED_LAYERS):
            continue
        weight = getattr(module, "weight", None)
        if weight is None or id(weight) in seen:
            continue
        seen.add(id(weight))
        out.append(weight)
    return out


def _check(lam: float, m: int) -> None:
    if lam < 0:
        raise ValueError(f"lam = {lam!r}: the regularization strength must be >= 0")
    if m <= 0:
        raise ValueError(f"m = {m!r}: the training-set size must be > 0")


def _zero_like(net: nn.Module) -> Tensor:
    # A network without weights still gets a penalty tensor on its own device.
    param = next(net.parameters(), None)
    return torch.zeros((), device=param.device, dtype=param.dtype) if param is not None else torch.zeros(())


def l2_penalty(net: nn.Module, lam: float, m: int) -> Tensor:
    """lam/(2m) * sum_l ||W[l]||_F^2 over the weights of `net` (a scalar tensor with autograd)."""
    _check(lam, m)
    ws = weights(net)
    if not ws:
        return _zero_like(net)
    return lam / (2 * m) * sum(w.pow(2).sum() for w in ws)


def l1_penalty(net: nn.Module, lam: float, m: int) -> Tensor:
    """lam/(2m) * sum_l sum |W[l]| over the weights of `net`: the course's L1 convention (note the 2)."""
    _check(lam, m)
    ws = weights(net)
    if not ws:
        return _zero_like(net)
    return lam / (2 * m) * sum(w.abs().sum() for w in ws)

"""Custom layers of the course: inverted dropout, DropConnect, Maxout; and the activation factory."""

from __future__ import annotations

from torch import nn

# The layers whose `weight` is a W of the course: regularized by L1/L2, set by the init schemes.
# Biases and batch-norm scales are not weights in that sense.
WEIGHTED_LAYERS: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d)

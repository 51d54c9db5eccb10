"""Curve smoothing: the exponentially weighted average of the course, with bias correction."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def ema(values: Sequence[float] | np.ndarray, beta: float = 0.9) -> np.ndarray:
    """The bias-corrected exponentially weighted average of `values` (docs/conventions.md, "Optimization").

    v_0 = 0, v_t = beta * v_(t-1) + (1 - beta) * theta_t, and the returned value is v_t / (1 - beta**t),
    t counting the finite values from 1. A non-finite value (NaN, inf) leaves the average as it was and
    gives NaN at its position (t does not advance for it), so a gap in a curve stays a gap. beta = 0
    returns the input (as floats); beta must lie in [0, 1).
    """
    if not 0 <= beta < 1:
        raise ValueError(f"beta = {beta!r}: expected a number in [0, 1) (0 returns the curve as it is; "
                         f"0.9 averages over about 1 / (1 - beta) = 10 points)")
    thetas = np.asarray(values, dtype=np.float64)
    if thetas.ndim != 1:
        raise ValueError(f"values has shape {thetas.shape}: expected one curve, a 1-D sequence of numbers")
    smoothed = np.full(thetas.shape, np.nan)
    average, t = 0.0, 0
    for i, theta in enumerate(thetas):
        if not math.isfinite(theta):
            continue
        t += 1
        average = beta * average + (1.0 - beta) * theta
        # Bias correction: v_t starts from 0, so early values are too small by the factor 1 - beta**t.
        smoothed[i] = average / (1.0 - beta**t)
    return smoothed

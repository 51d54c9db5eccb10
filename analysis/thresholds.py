"""Every threshold the diagnosis uses, in one place, each with the reason for its default.

The verdicts and flags of `analysis` read them from a `Thresholds` value (the defaults
are `DEFAULT`); `fitlens diagnose` and `fitlens report` take the bias and variance ones as options.
Errors and gaps are fractions (0.05 = 5 points of error).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class Thresholds:
    """Named thresholds of the bias/variance verdict, the curves and the health flags."""

    # --- bias and variance (the course's table: docs/conventions.md) ---------------------------------------------
    # Avoidable bias (train - reference) above this is high bias: the table's 15%/16% case (15 points) is,
    # its 1%/11% case (1 point) is not. 5 points is ~5 standard errors of a training error measured on a few
    # thousand examples (0.8 points at 30% error on 3200), so what is flagged is not sampling noise.
    high_bias: float = 0.05
    # Variance (dev - train) above this is high variance: 1%/11% (10 points) is, 15%/16% (1 point) is not.
    # Higher than the bias threshold because the gap is a difference of two estimates, the noisier one
    # from a dev set of ~1000 examples (standard error of the gap ~1.8 points at 30% error): a logistic
    # regression on MNIST-1D (train 63%, dev 69%) has high bias, and regularizing it would be wrong advice.
    high_variance: float = 0.08

    # --- curves --------------------------------------------------------------------------------
    # A dev error that fell by more than this between the two largest training sets is "still falling".
    still_falling: float = 0.005

    # --- health flags (per layer, per snapshot; `analysis.health`) ---------------------
    # Vanishing gradients: ||dW|| / ||W|| of every layer below this (gradient descent barely moves the
    # weights), or the first layer's gradient norm below this fraction of the last layer's.
    vanishing_grad_ratio: float = 1e-4
    vanishing_depth_ratio: float = 1e-2
    # Exploding gradients: ||dW|| / ||W|| of a layer above this, or the first layer's gradient norm above
    # this many times the last layer's (or any non-finite gradient).
    exploding_grad_ratio: float = 10.0
    exploding_depth_ratio: float = 1e2
    # Dead units: the fraction of a layer's units that are zero for every example of the batch.
    dead_units: float = 0.5
    # Saturated units: the fraction of a tanh/sigmoid layer's activations with |a| > 0.99 (tanh).
    saturated_units: float = 0.2
    # Activation spread across depth: the per-layer factor of the activation std, (std_last /
    # std_first) ** (1 / (layers - 1)). Xavier with ReLU halves the variance per layer (factor 0.71),
    # std 0.01 in a 64-wide tanh MLP shrinks it to ~0.08 per layer; He with ReLU keeps ~1.
    collapsing_spread: float = 0.8
    exploding_spread: float = 1.25
    # Identical units: symmetry of a layer's weights at or above this (1 = all units identical).
    symmetric_units: float = 0.99
    # Update-to-weight ratio ||W_after - W_before|| / ||W|| per step; ~1e-3 is healthy (Karpathy's rule
    # of thumb). Two decades away from it on either side flags the learning rate.
    update_ratio_low: float = 1e-5
    update_ratio_high: float = 1e-1
    # Training loss not falling: the best later epoch's loss improved on the first epoch's by less than
    # this fraction.
    loss_not_falling: float = 0.01

    def replace(self, **changes: float) -> Thresholds:
        """A copy with `changes`; an unknown name or a negative value raises ValueError naming it."""
        names = {f.name for f in dataclasses.fields(self)}
        for name, value in changes.items():
            if name not in names:
                raise ValueError(f"threshold {name!r} does not exist; the thresholds are: {', '.join(sorted(names))}")
            if not value >= 0:
                raise ValueError(f"threshold {name} = {value!r} is not allowed; it must be a number >= 0")
        return dataclasses.replace(self, **changes)


DEFAULT = Thresholds()

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
    # The diagnosis's learning rate: the first step's median update-to-weight ratio above this is a rate too high
    # (Adam's first steps move each weight by about lr, so this is 10x the default MLP's 0.07 at lr 1e-2); the
    # weights' total norm growing more than this many times over training, too (the default MLP: 1.5x in 300
    # steps; SGD at lr 0.5 with momentum 0.99: 25x). After the first epoch, a median ratio a decade below ~1e-3,
    # while the training error stays high, is a rate too low (Adam at lr 1e-5 moves the default MLP's weights by 5e-5
    # of their size a step and learns nothing in 10 epochs; a converging healthy run can get there at its end, but
    # then it fits its training set).
    update_ratio_early: float = 0.3
    weight_growth: float = 3.0
    lr_low_ratio: float = 1e-4
    # Training loss not falling: the best later epoch's loss improved on the first epoch's by less than
    # this fraction.
    loss_not_falling: float = 0.01
    # Activation spread across depth, in total: the largest activation variance over the smallest across the
    # layers at one snapshot, as SageMaker Debugger's PoorWeightInitialization rule. A per-layer factor past
    # collapsing_spread / exploding_spread counts only when the variance also changes by more than this over
    # the depth: a 3-layer CNN whose std grows 0.86 -> 1.27 -> 1.54 (a factor 3.2 in variance) is healthy,
    # Xavier in a 6-layer ReLU MLP (0.5 per layer, 30x over the depth) is not.
    depth_variance_ratio: float = 10.0
    # Every hidden layer's pre-activation std below this at initialization: weights too small for their fan-in
    # (Xavier and He give ~1; std 0.01 in a 64-wide layer gives ~0.04-0.08).
    init_preact_low: float = 0.1

    # --- the diagnosis's causes (`analysis.diagnosis`) ---------------------------------------------
    # An error this close to the chance level (1 - 1/K, or the majority class's error) has learned nothing:
    # 2 points, ~1 standard error of a dev error on ~800 examples near chance.
    at_chance: float = 0.02
    # A training error this far below chance while the dev error stays at chance: memorized labels that do not
    # depend on the inputs (10 points: far more than the noise of an epoch's error).
    memorized: float = 0.10
    # The training loss rose by more than this fraction above its best epoch by the end: steps overshoot.
    loss_rise: float = 0.10
    # ... or rose from one epoch to the next in at least this fraction of the epochs (oscillating; needs 4+).
    loss_oscillation: float = 0.34
    # A learning rate that decayed to below this fraction of its start within the first half of training.
    lr_decayed: float = 1e-3
    # Inputs whose std (as the network sees them) is off unit scale by more than this factor: unnormalized
    # features (a standardized input has std 1; raw pixel values 0-16 have ~6, breast-cancer features ~230).
    input_scale: float = 10.0
    # The share of the cost J that the L2/L1 terms take at the last epoch, above which they hold training back;
    # or the weights' total norm shrunk below this fraction of its initial value (L2 of 300 on the default MLP:
    # 11% after 300 steps; the same MLP without L2 grows to 150%).
    penalty_share: float = 0.3
    weight_shrink: float = 0.3
    # A keep_prob at or below this is strong dropout (half of the units dropped, or more).
    strong_dropout: float = 0.5
    # A sibling that regularized less "did better" when its training error is lower by this much.
    sibling_better: float = 0.02
    # Overtraining: the dev error came within half of this of its minimum before this fraction of the epochs:
    # early stopping would have kept the minimum and saved the rest.
    overtrained_gap: float = 0.02
    overtrained_at: float = 0.6
    # Still improving: the dev error fell by more than this over the last half of the epochs.
    still_improving: float = 0.01
    # A plateau: the training loss fell by less than this fraction over the last half of the epochs (4+ epochs)
    # while the avoidable bias is high.
    plateau: float = 0.01
    # The minority class is this small a fraction of the training set (or less): the error hides it.
    minority: float = 0.2
    # A label-noise rate (the reference error of a synthetic set) from which the training error's floor is named.
    label_noise: float = 0.05

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

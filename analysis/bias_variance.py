"""Bias and variance from train, dev and reference (human / Bayes) error, and the basic recipe.

The course's convention (docs/conventions.md): avoidable bias = train - e*, variance = dev - train. The verdict
compares each with its threshold (`Thresholds.high_bias`, `Thresholds.high_variance`); the recipe then says what to try,
bias first: a network that cannot fit its training set gains nothing from more data or regularization.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from analysis.thresholds import DEFAULT, Thresholds
from analysis.values import finite_or_none

Verdict = Literal["high_bias", "high_variance", "high_bias_high_variance", "good_fit"]
Problem = Literal["high_bias", "high_variance"]


@dataclass(frozen=True)
class Step:
    """One step of the basic recipe: the problem it treats, a short name and what to do."""

    problem: Problem
    action: str  # bigger_network, train_longer, better_optimizer, other_architecture, more_data, regularization
    text: str


# The course's "basic recipe", in its order: first bias, then variance.
RECIPE: tuple[Step, ...] = (
    Step("high_bias", "bigger_network", "Train a bigger network: more hidden units or more layers."),
    Step("high_bias", "train_longer", "Train longer: more epochs (or less early stopping)."),
    Step("high_bias", "better_optimizer",
         "Use a better optimizer or tune it: Adam or momentum, and the learning rate first."),
    Step("high_bias", "other_architecture", "Try another architecture (e.g. a CNN for signals or images)."),
    Step("high_variance", "more_data", "Get more training data, or imitate it with data augmentation."),
    Step("high_variance", "regularization",
         "Regularize: L2 (a larger lambda), dropout (a lower keep_prob), early stopping."),
    Step("high_variance", "other_architecture", "Try another architecture that suits the data better."),
)


@dataclass(frozen=True)
class Diagnosis:
    """The bias/variance reading of one run's errors (fractions: 0.05 is 5 points)."""

    train_error: float
    dev_error: float
    reference_error: float
    avoidable_bias: float  # train - reference
    variance: float  # dev - train
    verdict: Verdict
    focus: Problem  # the larger of the two, where the next effort pays most even when both are low
    recommendations: tuple[Step, ...]


def diagnose(
    train_error: float, dev_error: float, reference_error: float = 0.0, thresholds: Thresholds = DEFAULT
) -> Diagnosis:
    """The verdict on train / dev error against the reference (human / Bayes) error, and the recipe's next
    steps in order, bias first. Raises ValueError naming the argument when an error is not in [0, 1]."""
    for name, value in (("train_error", train_error), ("dev_error", dev_error), ("reference_error", reference_error)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and 0.0 <= value <= 1.0):
            raise ValueError(f"{name} = {value!r} is not allowed; it must be an error rate in [0, 1] (0.05 = 5%)")
    avoidable_bias = train_error - reference_error
    variance = dev_error - train_error
    high_bias = avoidable_bias > thresholds.high_bias
    high_variance = variance > thresholds.high_variance
    verdict: Verdict = (
        "high_bias_high_variance" if high_bias and high_variance
        else "high_bias" if high_bias
        else "high_variance" if high_variance
        else "good_fit"
    )
    problems = {p for p, high in (("high_bias", high_bias), ("high_variance", high_variance)) if high}
    steps = tuple(step for step in RECIPE if step.problem in problems)
    if high_bias and high_variance:  # "other architecture" is one step, said once, after both lists
        steps = tuple(s for s in steps if s.action != "other_architecture") + (RECIPE[-1],)
    return Diagnosis(
        train_error=train_error,
        dev_error=dev_error,
        reference_error=reference_error,
        avoidable_bias=avoidable_bias,
        variance=variance,
        verdict=verdict,
        focus="high_bias" if avoidable_bias >= variance else "high_variance",
        recommendations=steps,
    )


def describe(diagnosis: Diagnosis, thresholds: Thresholds = DEFAULT) -> str:
    """One sentence: the numbers, in points, and the verdict against the thresholds."""
    d = diagnosis
    numbers = (f"train {pct(d.train_error)}, dev {pct(d.dev_error)}, reference {pct(d.reference_error)}: "
               f"avoidable bias {points(d.avoidable_bias)}, variance {points(d.variance)}")
    what = {
        "high_bias": f"high bias (avoidable bias above {points(thresholds.high_bias)})",
        "high_variance": f"high variance (variance above {points(thresholds.high_variance)})",
        "high_bias_high_variance": "high bias and high variance",
        "good_fit": f"low bias and low variance; the larger is {d.focus.removeprefix('high_').replace('_', ' ')}",
    }[d.verdict]
    if d.avoidable_bias < 0:
        what += "; the training error is below the reference error: the network fits noise in its training labels"
    return f"{numbers}; {what}"


def pct(error: float) -> str:
    """An error rate in percent, as the report prints it."""
    return "n/a" if error is None or not math.isfinite(error) else f"{100 * error:.1f}%"


def points(difference: float) -> str:
    """A difference of error rates in points of error."""
    return "n/a" if difference is None or not math.isfinite(difference) else f"{100 * difference:.1f} points"


def row_diagnosis(run: Mapping[str, Any], thresholds: Thresholds = DEFAULT) -> Diagnosis | None:
    """The bias/variance diagnosis of a `tracking.reader.runs_frame` row, None without a finite train and dev error
    (ValueError for an error outside [0, 1])."""
    train, dev = finite_or_none(run.get("train_error")), finite_or_none(run.get("dev_error"))
    if train is None or dev is None:
        return None
    return diagnose(train, dev, finite_or_none(run.get("reference_error")) or 0.0, thresholds)

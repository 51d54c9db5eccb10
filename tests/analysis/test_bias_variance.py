"""Bias/variance verdicts against the course's table (docs/conventions.md), and the basic recipe's order."""

from __future__ import annotations

import pytest

from analysis.bias_variance import RECIPE, describe, diagnose
from analysis.thresholds import DEFAULT


@pytest.mark.parametrize(
    ("train", "dev", "reference", "verdict", "avoidable_bias", "variance"),
    [
        (0.01, 0.11, 0.0, "high_variance", 0.01, 0.10),
        (0.15, 0.16, 0.0, "high_bias", 0.15, 0.01),
        (0.15, 0.30, 0.0, "high_bias_high_variance", 0.15, 0.15),
        (0.005, 0.01, 0.0, "good_fit", 0.005, 0.005),
        (0.15, 0.16, 0.15, "good_fit", 0.0, 0.01),  # with e* = 15% the 15% / 16% case is neither
    ],
)
def test_the_spec_table(train: float, dev: float, reference: float, verdict: str, avoidable_bias: float,
                        variance: float) -> None:
    d = diagnose(train, dev, reference)
    assert d.verdict == verdict
    assert d.avoidable_bias == pytest.approx(avoidable_bias, abs=1e-12)
    assert d.variance == pytest.approx(variance, abs=1e-12)


def test_the_recipe_treats_bias_first_and_says_other_architecture_once() -> None:
    both = diagnose(0.15, 0.30)
    assert [s.action for s in both.recommendations] == [
        "bigger_network", "train_longer", "better_optimizer", "more_data", "regularization", "other_architecture"]
    assert [s.action for s in diagnose(0.15, 0.16).recommendations] == [
        "bigger_network", "train_longer", "better_optimizer", "other_architecture"]
    assert [s.action for s in diagnose(0.01, 0.11).recommendations] == [
        "more_data", "regularization", "other_architecture"]
    assert diagnose(0.005, 0.01).recommendations == ()
    assert {s.problem for s in RECIPE} == {"high_bias", "high_variance"}


def test_thresholds_are_settings_and_focus_names_the_larger_problem() -> None:
    # 8% / 10% against 1%: 7 points of bias, 2 of variance (the course's "focus on bias" example)
    d = diagnose(0.08, 0.10, 0.01)
    assert (d.verdict, d.focus) == ("high_bias", "high_bias")
    # against 7.5%: 0.5 points of bias, 2 of variance; neither is high, variance is the larger
    d = diagnose(0.08, 0.10, 0.075)
    assert (d.verdict, d.focus) == ("good_fit", "high_variance")
    assert diagnose(0.08, 0.10, 0.075, DEFAULT.replace(high_variance=0.01)).verdict == "high_variance"
    assert "variance 2.0 points" in describe(d)


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"train_error": 1.5, "dev_error": 0.1}, "train_error"),
    ({"train_error": 0.1, "dev_error": float("nan")}, "dev_error"),
    ({"train_error": 0.1, "dev_error": 0.2, "reference_error": -0.01}, "reference_error"),
])
def test_an_error_rate_outside_0_1_is_refused_by_name(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=f"^{name} = .* must be an error rate in \\[0, 1\\]"):
        diagnose(**kwargs)


def test_a_threshold_that_does_not_exist_or_is_negative_is_refused() -> None:
    with pytest.raises(ValueError, match="threshold 'high_bais' does not exist; the thresholds are: .*high_bias"):
        DEFAULT.replace(high_bais=0.1)
    with pytest.raises(ValueError, match="threshold high_bias = -0.1 is not allowed"):
        DEFAULT.replace(high_bias=-0.1)

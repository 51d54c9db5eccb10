"""The exponentially weighted average of the curves: hand-computed values, bias correction, gaps, bad beta."""

from __future__ import annotations

import math

import numpy as np
import pytest

from analysis.smoothing import ema


def test_ema_matches_the_hand_computed_bias_corrected_average() -> None:
    # beta 0.5: v1 = 0.5 -> 0.5 / 0.5 = 1; v2 = 0.25 + 1 = 1.25 -> 1.25 / 0.75 = 5/3;
    # v3 = 0.625 + 1.5 = 2.125 -> 2.125 / 0.875 = 17/7
    assert ema([1.0, 2.0, 3.0], beta=0.5) == pytest.approx([1.0, 5 / 3, 17 / 7], rel=1e-12)


def test_bias_correction_keeps_a_constant_curve_constant() -> None:
    # Without the correction the first value would be (1 - 0.9) * 4 = 0.4, not 4.
    assert ema([4.0] * 50, beta=0.9) == pytest.approx([4.0] * 50, rel=1e-12)


def test_beta_zero_returns_the_curve() -> None:
    assert ema(np.array([3.0, -1.0, 7.5]), beta=0.0).tolist() == [3.0, -1.0, 7.5]


def test_a_non_finite_value_is_a_gap_that_does_not_advance_t() -> None:
    smoothed = ema([1.0, math.nan, 2.0, math.inf, 3.0], beta=0.5)
    assert math.isnan(smoothed[1]) and math.isnan(smoothed[3])
    # the finite values are averaged as if the gaps were not there: 1, 5/3, 17/7
    assert smoothed[[0, 2, 4]] == pytest.approx([1.0, 5 / 3, 17 / 7], rel=1e-12)


def test_an_empty_curve_gives_an_empty_curve() -> None:
    assert ema([], beta=0.9).shape == (0,)


@pytest.mark.parametrize("beta", [1.0, -0.1, 1.5, math.nan])
def test_beta_outside_zero_one_is_refused_with_its_value_and_the_range(beta: float) -> None:
    with pytest.raises(ValueError, match=r"beta = .*expected a number in \[0, 1\)") as err:
        ema([1.0, 2.0], beta=beta)
    assert repr(beta) in str(err.value)

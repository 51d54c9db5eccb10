"""Coarse to fine: the best trials, and the space narrowed around them on its own scale."""

from __future__ import annotations

import math

import pytest

from analysis.ranges import best_points, refined_space
from tracking.sweep_config import Distribution


def test_best_points_are_the_lowest_metrics_best_first_ties_in_input_order() -> None:
    scored = [(0.30, {"lr": 1}), (0.10, {"lr": 2}), (0.20, {"lr": 3}), (0.10, {"lr": 4}), (0.50, {"lr": 5})]
    assert best_points(scored, top=3) == [{"lr": 2}, {"lr": 4}, {"lr": 3}]


def test_best_points_skip_non_finite_metrics() -> None:
    scored = [(math.nan, {"lr": 1}), (0.4, {"lr": 2}), (-math.inf, {"lr": 3}), (0.2, {"lr": 4})]
    assert best_points(scored, top=2) == [{"lr": 4}, {"lr": 2}]


def test_top_larger_than_the_trials_gives_every_finite_trial() -> None:
    assert best_points([(0.2, {"lr": 1}), (0.1, {"lr": 2}), (math.nan, {"lr": 3})], top=10) == [{"lr": 2}, {"lr": 1}]


def test_top_below_one_is_refused_naming_top() -> None:
    with pytest.raises(ValueError, match=r"top = 0: expected a number of trials >= 1"):
        best_points([(0.1, {"lr": 1})], top=0)


def test_a_log_range_is_narrowed_by_a_quarter_of_its_decades_on_each_side() -> None:
    # [1e-5, 1] spans 5 decades; margin 0.25 widens by 1.25 decades: [1e-3 / 10**1.25, 1e-2 * 10**1.25]
    space = {"optim.lr": Distribution("loguniform", (1e-5, 1.0))}
    refined = refined_space(space, [{"optim.lr": 1e-3}, {"optim.lr": 1e-2}], margin=0.25)
    low, high = refined["optim.lr"].args
    assert refined["optim.lr"].kind == "loguniform"
    assert low == pytest.approx(1e-3 / 10**1.25, rel=1e-9)
    assert high == pytest.approx(1e-2 * 10**1.25, rel=1e-9)


def test_a_choice_keeps_the_values_seen_in_its_old_order() -> None:
    space = {"model.activation": Distribution("choice", ("relu", "tanh", "gelu", "elu"))}
    refined = refined_space(space, [{"model.activation": "elu"}, {"model.activation": "tanh"}])
    assert refined["model.activation"] == Distribution("choice", ("tanh", "elu"))


def test_a_key_no_best_point_has_keeps_its_distribution() -> None:
    width = Distribution("randint", (16, 256))
    space = {"model.width": width, "model.activation": Distribution("choice", ("relu", "tanh"))}
    refined = refined_space(space, [{"model.activation": "relu"}])
    assert refined == {"model.width": width, "model.activation": Distribution("choice", ("relu",))}

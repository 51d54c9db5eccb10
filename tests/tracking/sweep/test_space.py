"""The draws Ray Tune makes from a sweep's space (`tracking.sweep.space.to_tune`), tested statistically against the
scale each distribution promises, and reproducible from the sweep's seed."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
from ray.tune.search.sample import Categorical, Float, Integer

from tracking.sweep.space import from_tune, to_tune, tune_points
from tracking.sweep_config import Distribution, sweep_from_dict

N = 10_000
# 1000 expected per tenth of the range; a binomial count's std is ~30, so 150 is a 5-sigma band.
BAND = 150


# A run-config key each kind of distribution can be tried on.
KEYS = {"loguniform": "optim.lr", "loguniform_one_minus": "optim.beta1", "uniform": "reg.l2", "randint": "model.width",
        "choice": "train.seed"}


def draws(dist: Distribution, n: int = N, seed: int = 0) -> list:
    """n of Tune's draws of `dist`, beside a second key that Tune draws too (as in a real sweep)."""
    key = KEYS[dist.kind]
    other = "data.batch_size" if key != "data.batch_size" else "model.depth"
    sweep = sweep_from_dict({"name": "t", "base": {}, "space": {key: dist.to_dict(), other: {"randint": [8, 64]}}})
    return [point[key] for point in tune_points(sweep, n, seed)]


def deciles(values: np.ndarray, low: float, high: float) -> np.ndarray:
    return np.histogram(values, bins=10, range=(low, high))[0]


def test_loguniform_is_uniform_in_log10() -> None:
    lr = np.array(draws(Distribution("loguniform", (1e-4, 1e-1))))
    assert lr.min() >= 1e-4 and lr.max() <= 1e-1
    counts = deciles(np.log10(lr), -4, -1)
    assert np.all(np.abs(counts - N / 10) < BAND), counts
    # A uniform draw in lr would put ~90% of the samples in the top decade; here a third.
    assert abs(np.mean(lr > 1e-2) - 1 / 3) < 0.02


def test_loguniform_one_minus_is_uniform_in_log_of_one_minus_beta() -> None:
    beta = np.array(draws(Distribution("loguniform_one_minus", (0.8, 0.999))))
    assert beta.min() >= 0.8 and beta.max() <= 0.999
    counts = deciles(np.log(1 - beta), math.log(0.001), math.log(0.2))
    assert np.all(np.abs(counts - N / 10) < BAND), counts
    # beta in [0.99, 0.999] (1 - beta in [0.001, 0.01]) holds log(10)/log(200) = 43% of the draws,
    # though it is only 4.5% of the interval [0.8, 0.999].
    assert abs(np.mean(beta >= 0.99) - math.log(10) / math.log(200)) < 0.02


def test_uniform_and_randint_bounds() -> None:
    uniform = np.array(draws(Distribution("uniform", (0.5, 1.0))))
    assert uniform.min() >= 0.5 and uniform.max() <= 1.0
    assert np.all(np.abs(deciles(uniform, 0.5, 1.0) - N / 10) < BAND)
    ints = draws(Distribution("randint", (1, 3)), n=600)
    assert set(ints) == {1, 2, 3} and all(type(i) is int for i in ints)  # both bounds included
    assert all(abs(count - 200) < 60 for count in Counter(ints).values())


def test_choice_draws_every_value_equally_often() -> None:
    counts = Counter(draws(Distribution("choice", (3, 7)), n=2000))
    assert set(counts) == {3, 7} and abs(counts[3] - 1000) < 150


def test_grid_keys_are_crossed_and_random_keys_drawn_per_point() -> None:
    sweep = sweep_from_dict({"name": "t", "base": {}, "num_samples": 4, "space": {
        "optim.lr": {"loguniform": [1e-4, 1e-1]}, "model.activation": {"grid": ["relu", "tanh"]},
        "model.init": {"grid": ["zeros", "xavier", "he"]}}})
    points = tune_points(sweep, sweep.num_samples)
    assert len(points) == sweep.num_trials == 24
    combos = Counter((p["model.activation"], p["model.init"]) for p in points)
    assert len(combos) == 6 and set(combos.values()) == {4}
    assert len({p["optim.lr"] for p in points}) == 24  # a fresh draw for every trial


@pytest.mark.parametrize("kind, args", [("loguniform", (1e-4, 1e-1)), ("loguniform_one_minus", (0.8, 0.999)),
                                        ("uniform", (0.0, 1.0)), ("randint", (1, 1000)), ("choice", tuple(range(50)))])
def test_the_draws_repeat_with_the_sweep_s_seed(kind: str, args: tuple) -> None:
    """Two schedulers compared on one sweep see the same trials (the searcher is seeded by base.train.seed)."""
    dist = Distribution(kind, args)
    first = draws(dist, n=20, seed=3)
    assert draws(dist, n=20, seed=3) == first
    assert draws(dist, n=20, seed=4) != first


def test_to_tune_builds_the_matching_search_space() -> None:
    lr = to_tune(Distribution("loguniform", (1e-4, 1e-1)))
    assert isinstance(lr, Float) and (lr.lower, lr.upper) == (1e-4, 1e-1)
    width = to_tune(Distribution("randint", (16, 256)))
    assert isinstance(width, Integer) and (width.lower, width.upper) == (16, 257)  # Ray excludes the upper bound
    assert isinstance(to_tune(Distribution("uniform", (0.0, 1.0))), Float)
    choice = to_tune(Distribution("choice", ("relu", "tanh")))
    assert isinstance(choice, Categorical) and choice.categories == ["relu", "tanh"]
    assert to_tune(Distribution("grid", (1, 2))) == {"grid_search": [1, 2]}
    beta = Distribution("loguniform_one_minus", (0.8, 0.999))
    over = to_tune(beta)  # 1 - beta, log-uniform: a domain Tune's searchers and PBT all understand
    assert isinstance(over, Float) and (over.lower, over.upper) == pytest.approx((0.001, 0.2))
    assert from_tune(beta, 0.01) == pytest.approx(0.99)
    assert from_tune(Distribution("uniform", (0.0, 1.0)), 0.25) == 0.25

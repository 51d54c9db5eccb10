"""Hyperparameter importance: the learning rate ranks first, a deciding category dominates, and small or flat
sweeps come with a caveat instead of a confident ranking."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import RandomForestRegressor

from analysis.importance import METHOD, N_TREES, hyperparameter_importance


def _lr_sweep(n: int, data_seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(data_seed)
    trials = pd.DataFrame({
        "optim.lr": 10 ** rng.uniform(-5, 0, n),  # loguniform [1e-5, 1]
        "model.width": rng.integers(16, 257, n),
        "seed": rng.integers(0, 1000, n),  # irrelevant
    })
    # Best at lr = 10**-2.5; width adds at most 2.56. With log10(lr) uniform on [-5, 0] the lr term has
    # variance 2.5**4 / 5 - (2.5**2 / 3)**2 = 3.47 and the width term 2.4**2 / 12 = 0.48: lr ~ 88% of it.
    trials["dev/error"] = (np.log10(trials["optim.lr"]) + 2.5) ** 2 + 0.01 * trials["model.width"]
    return trials


def test_the_learning_rate_ranks_first_and_an_irrelevant_seed_near_zero() -> None:
    imp = hyperparameter_importance(_lr_sweep(40), ["seed", "model.width", "optim.lr"], "dev/error",
                                    log_scale={"optim.lr"})
    assert list(imp.scores) == ["optim.lr", "model.width", "seed"]  # highest first
    assert imp.scores["optim.lr"] > 0.5
    assert imp.scores["optim.lr"] > 5 * imp.scores["model.width"]
    assert imp.scores["seed"] < 0.05
    assert imp.n_trials == 40 and imp.method == METHOD and imp.caveat is None


def test_a_category_that_decides_the_metric_explains_almost_all_of_it() -> None:
    rng = np.random.default_rng(1)
    trials = pd.DataFrame({"optim.name": rng.choice(["sgd", "adam", "rmsprop"], 30),
                           "model.dropout": rng.uniform(0.0, 0.5, 30),
                           "model.batch_norm": rng.choice([True, False], 30)})
    trials["dev/error"] = trials["optim.name"].map({"sgd": 0.3, "adam": 0.1, "rmsprop": 0.2})
    imp = hyperparameter_importance(trials, ["model.dropout", "optim.name", "model.batch_norm"], "dev/error")
    assert imp.scores["optim.name"] > 0.8
    assert imp.scores["model.dropout"] < 0.05 and imp.scores["model.batch_norm"] < 0.05


def test_the_score_is_the_weighted_variance_of_the_marginal_over_the_forest_variance() -> None:
    # Slow twin: one prediction per value of depth, in a loop, with the same forest (same seed, same columns).
    rng = np.random.default_rng(2)
    trials = pd.DataFrame({"depth": rng.choice([1, 2, 3, 4], 24, p=[0.1, 0.2, 0.3, 0.4]),
                           "width": rng.choice([16, 64], 24)})
    trials["dev/error"] = 0.05 * trials["depth"] + 0.002 * trials["width"]
    imp = hyperparameter_importance(trials, ["depth", "width"], "dev/error", seed=3)

    features = trials[["depth", "width"]].to_numpy(dtype=float)
    forest = RandomForestRegressor(n_estimators=N_TREES, random_state=3, min_samples_leaf=1).fit(
        features, trials["dev/error"])
    values, counts = np.unique(features[:, 0], return_counts=True)
    marginal = []
    for value in values:
        changed = features.copy()
        changed[:, 0] = value
        marginal.append(forest.predict(changed).mean())
    mean = np.dot(counts, marginal) / counts.sum()
    expected = np.dot(counts, (np.array(marginal) - mean) ** 2) / counts.sum() / np.var(forest.predict(features))
    assert 0 < expected < 1  # not clipped, so the two must agree exactly
    assert imp.scores["depth"] == pytest.approx(expected, rel=1e-9)


def test_a_constant_hyperparameter_scores_zero() -> None:
    trials = _lr_sweep(20).assign(**{"train.max_epochs": 10})
    imp = hyperparameter_importance(trials, ["optim.lr", "train.max_epochs"], "dev/error", log_scale={"optim.lr"})
    assert imp.scores["train.max_epochs"] == 0.0


def test_few_trials_come_with_a_caveat_and_enough_without() -> None:
    params = ["optim.lr", "model.width"]
    few = hyperparameter_importance(_lr_sweep(6), params, "dev/error", log_scale={"optim.lr"})
    assert few.caveat == ("only 6 trials for 2 hyperparameters: importance estimates from fewer than 10 trials "
                          "(or 5 per hyperparameter) are unreliable; run more trials before trusting the ranking")
    enough = hyperparameter_importance(_lr_sweep(40), params, "dev/error", log_scale={"optim.lr"})
    assert enough.caveat is None
    # 12 trials pass the 10-trial floor but not 5 per hyperparameter for 3 of them
    per_param = hyperparameter_importance(_lr_sweep(12), [*params, "seed"], "dev/error", log_scale={"optim.lr"})
    assert per_param.caveat is not None and per_param.caveat.startswith("only 12 trials for 3 hyperparameters")


def test_a_flat_metric_gives_zeros_and_says_why() -> None:
    trials = _lr_sweep(15).assign(**{"dev/error": 0.25})
    imp = hyperparameter_importance(trials, ["optim.lr", "seed"], "dev/error")
    assert imp.scores == {"optim.lr": 0.0, "seed": 0.0}
    assert imp.caveat == "dev/error is 0.25 in all 15 trials: there is no variation to attribute to the hyperparameters"


def test_trials_without_a_finite_metric_are_dropped() -> None:
    trials = _lr_sweep(4)
    trials.loc[[0, 2], "dev/error"] = [np.nan, np.inf]  # diverged
    imp = hyperparameter_importance(trials, ["optim.lr"], "dev/error")
    assert imp.n_trials == 2 and imp.scores == {"optim.lr": 0.0}
    assert imp.caveat is not None and imp.caveat.startswith("only 2 trials with a finite dev/error")


def test_an_unknown_hyperparameter_is_refused_listing_the_columns() -> None:
    with pytest.raises(ValueError, match=r"'optim.momentum' not among the columns of trials; the columns are: "
                                         r"optim.lr, model.width, seed, dev/error"):
        hyperparameter_importance(_lr_sweep(10), ["optim.lr", "optim.momentum"], "dev/error")

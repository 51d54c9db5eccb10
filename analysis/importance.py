"""Which hyperparameters matter: first-order importance across a sweep's trials (fANOVA-style).

A random forest learns the metric from the hyperparameters of the trials; a hyperparameter's importance
is the share of the forest's variance over the trials that its marginal curve explains: how much the
predicted metric moves when only that hyperparameter changes, averaged over the other ones.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.ensemble import RandomForestRegressor

# Below these a forest fitted to the trials mostly learns their noise: with ~5 trials per hyperparameter
# each one has seen only a handful of distinct values, and below 10 trials the ranking changes from one
# seed of the forest to the next.
MIN_TRIALS_PER_PARAM = 5
MIN_TRIALS = 10
# A forest needs a few trials to split at all; below this no ranking is attempted.
MIN_TRIALS_TO_FIT = 3
# Values of one hyperparameter at which its marginal curve is evaluated: the cost is one forest
# prediction over all trials per value.
MAX_GRID_VALUES = 20
N_TREES = 100  # 200 gave the same scores within 0.001 on the 500-trial bench sweep, at twice the cost

METHOD = "random forest, first-order marginal variance (fANOVA-style)"


@dataclass(frozen=True)
class Importance:
    """Hyperparameter importance of one sweep.

    `scores` maps each hyperparameter to the fraction of the metric's predicted variance it explains on its
    own, in [0, 1], highest first; `caveat` says why the ranking should not be trusted yet, or is None.
    """

    scores: dict[str, float]
    n_trials: int
    method: str
    caveat: str | None


def hyperparameter_importance(trials: pd.DataFrame, params: Sequence[str], metric: str,
                              log_scale: Collection[str] = (), seed: int = 0) -> Importance:
    """First-order importance of `params` for `metric` (minimized, e.g. dev error) across `trials`.

    `trials` has one row per trial, a column per hyperparameter (numbers, bools or strings; missing is
    NaN) and the `metric` column; rows whose metric is not finite are dropped. Numbers are used as they
    are, or as log10 for the names in `log_scale` (a learning rate); bools and strings become ordinal codes
    (a tree splits them fine). Strings that all read as numbers are numbers (MLflow stores params as text).

    For each hyperparameter j, the marginal pd_j(v) is the forest's mean prediction over the trials with
    column j set to v, for v over the distinct values of j (at most 20: quantiles if more); its importance
    is the variance of pd_j over v, weighted by how often each value occurs, divided by the variance of
    the forest's predictions over the trials, clipped to [0, 1]. A constant hyperparameter scores 0.
    """
    params = list(dict.fromkeys(params))  # a name given twice is ranked once
    if not params:
        raise ValueError("params is empty: name at least one hyperparameter column of trials to rank")
    missing = [name for name in [*params, metric] if name not in trials.columns]
    if missing:
        raise ValueError(f"{', '.join(repr(m) for m in missing)} not among the columns of trials; the columns are: "
                         f"{', '.join(str(c) for c in trials.columns)}")

    metric_values = pd.to_numeric(trials[metric], errors="coerce").to_numpy(dtype=np.float64)
    usable = np.isfinite(metric_values)
    rows = trials.loc[usable]
    dev_metric = metric_values[usable]
    n_trials = len(rows)

    if n_trials < MIN_TRIALS_TO_FIT:
        return _no_ranking(params, n_trials, f"only {n_trials} {_trials(n_trials)} with a finite {metric}: at least "
                                             f"{MIN_TRIALS_TO_FIT} are needed to estimate importance; run more trials")
    if dev_metric.max() == dev_metric.min():
        return _no_ranking(params, n_trials, f"{metric} is {dev_metric[0]:g} in all {n_trials} trials: there is no "
                                             f"variation to attribute to the hyperparameters")

    features = np.column_stack([_encode(rows[name], name, log=name in log_scale) for name in params])  # (n, p)
    forest = RandomForestRegressor(n_estimators=N_TREES, random_state=seed, min_samples_leaf=1)
    forest.fit(features, dev_metric)
    total_variance = float(np.var(forest.predict(features)))
    if not total_variance > 0:
        return _no_ranking(params, n_trials, f"the forest found no hyperparameter that changes {metric} across the "
                                             f"{n_trials} trials")

    scores = {name: _first_order(forest, features, j) / total_variance for j, name in enumerate(params)}
    scores = {name: float(np.clip(score, 0.0, 1.0)) for name, score in scores.items()}
    ranked = dict(sorted(scores.items(), key=lambda item: -item[1]))  # stable: ties keep the order of params
    return Importance(ranked, n_trials, METHOD, _caveat(n_trials, len(params)))


def _no_ranking(params: Sequence[str], n_trials: int, why: str) -> Importance:
    return Importance({name: 0.0 for name in params}, n_trials, METHOD, why)


def _caveat(n_trials: int, n_params: int) -> str | None:
    if n_trials >= MIN_TRIALS and n_trials >= MIN_TRIALS_PER_PARAM * n_params:
        return None
    noun = "hyperparameter" if n_params == 1 else "hyperparameters"
    return (f"only {n_trials} {_trials(n_trials)} for {n_params} {noun}: importance estimates from fewer than "
            f"{MIN_TRIALS} trials (or {MIN_TRIALS_PER_PARAM} per hyperparameter) are unreliable; run more trials "
            f"before trusting the ranking")


def _trials(n: int) -> str:
    return "trial" if n == 1 else "trials"


def _first_order(forest: RandomForestRegressor, features: np.ndarray, j: int) -> float:
    """The weighted variance over v of pd_j(v), the forest's mean prediction with column j set to v."""
    grid, weights = _grid(features[:, j])
    if len(grid) < 2:
        return 0.0  # a constant hyperparameter explains nothing
    n = len(features)
    # One prediction over every (value, trial) pair instead of one call per value.
    stacked = np.tile(features, (len(grid), 1))  # (values * n, p)
    stacked[:, j] = np.repeat(grid, n)
    marginal = forest.predict(stacked).reshape(len(grid), n).mean(axis=1)  # (values,)
    mean = np.average(marginal, weights=weights)
    return float(np.average((marginal - mean) ** 2, weights=weights))


def _grid(column: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The values at which to evaluate a marginal, and how many trials each stands for (missing is a value)."""
    is_missing = np.isnan(column)
    present = column[~is_missing]
    n_missing = int(is_missing.sum())
    room = MAX_GRID_VALUES - (1 if n_missing else 0)
    values, counts = np.unique(present, return_counts=True)
    if len(values) > room:
        # Quantiles at the middle of `room` equal slices: each stands for the same share of the trials.
        values = np.quantile(present, (np.arange(room) + 0.5) / room)
        counts = np.full(room, len(present) / room)
    if n_missing:
        values, counts = np.append(values, np.nan), np.append(counts, n_missing)
    return values.astype(np.float64), counts.astype(np.float64)


def _encode(column: pd.Series, name: str, log: bool) -> np.ndarray:
    """One feature column: numbers as floats (log10 on request), anything else as ordinal codes; missing NaN."""
    numbers = _as_numbers(column)
    if numbers is None:
        if log:
            raise ValueError(f"log_scale names {name!r}, whose values are not numbers: "
                             f"{column.dropna().unique()[:5].tolist()!r}")
        return _ordinal_codes(column)
    if log:
        non_positive = numbers[numbers <= 0]
        if len(non_positive):
            raise ValueError(f"log_scale names {name!r}, but it has values <= 0 ({non_positive[0]!r}), which "
                             f"have no logarithm")
        return np.log10(numbers)
    return numbers


def _as_numbers(column: pd.Series) -> np.ndarray | None:
    if pd.api.types.is_bool_dtype(column):
        return None  # False / True are categories (two codes), not magnitudes
    if pd.api.types.is_numeric_dtype(column):
        return column.to_numpy(dtype=np.float64)  # pandas NA becomes NaN
    present = column.dropna()
    if any(isinstance(value, bool | np.bool_) for value in present):
        return None
    converted = pd.to_numeric(present, errors="coerce")
    if converted.isna().any():
        return None
    return pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64)


def _ordinal_codes(column: pd.Series) -> np.ndarray:
    keys = [None if _is_missing(value) else _category_key(value) for value in column]
    levels = sorted({key for key in keys if key is not None}, key=str)  # a fixed order, whatever the row order
    code = {level: float(i) for i, level in enumerate(levels)}
    return np.array([np.nan if key is None else code[key] for key in keys], dtype=np.float64)


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA


def _category_key(value: Any) -> Hashable:
    if isinstance(value, Hashable):
        return value
    # A section bundle of a sweep ({name: sgd, momentum: 0.9}) is one category.
    return json.dumps(value, sort_keys=True, default=str)

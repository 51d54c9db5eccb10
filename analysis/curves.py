"""Learning curves over training-set size and regularization curves, as pure functions over DataFrames.

Both take one row per run (already read from MLflow by the caller) and return a frozen dataclass: the
points in the order a plot draws them, the flags the diagnosis reads, and one sentence with the numbers.
Errors and gaps are fractions (0.05 = 5 points of error); the sentences print them in points or percent.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.bias_variance import points
from analysis.thresholds import DEFAULT, Thresholds
from analysis.values import setting_text

# The regularizers with a strength: lambda of the L2 and L1 terms and weight decay (stronger when larger), and the
# keep_prob of (inverted) dropout and DropConnect (stronger when smaller). Their regularization curve is the
# errors against that strength; the report draws one for each a sweep varied.
LAMBDA_SETTINGS = ("reg.l2", "reg.l1", "optim.weight_decay")
KEEP_PROB_SETTINGS = ("model.keep_prob", "model.input_keep_prob", "model.dropconnect_keep_prob")
STRENGTH_SETTINGS = (*LAMBDA_SETTINGS, *KEEP_PROB_SETTINGS)
AUGMENT_SETTING = "data.augment"  # on or off: the regularization page compares its two sides too
REGULARIZATION_SETTINGS = (*STRENGTH_SETTINGS, AUGMENT_SETTING)
TRAIN_FRACTION = "data.train_fraction"  # the learning curve's m, as a fraction of the training split

LEARNING_CURVE_COLUMNS = ("m", "train_error", "dev_error", "run_id")
REGULARIZATION_CURVE_COLUMNS = ("value", "train_error", "dev_error", "run_id")


# eq=False: the fields hold DataFrames, whose == is element-wise, so the generated __eq__/__hash__ would fail.
@dataclass(frozen=True, eq=False)
class LearningCurve:
    """Train and dev error against the number of training examples m.

    `points` is sorted by m with columns m, train_error, dev_error, gap (dev - train, the variance),
    avoidable_bias (train - reference_error) and run_ids (the runs averaged into each row).
    """

    points: pd.DataFrame
    gap_closing: bool  # the gap at the largest m is smaller than at the smallest
    dev_still_falling: bool  # dev error fell by more than thresholds.still_falling between the two largest m
    more_data_helps: bool  # high variance at the largest m and the dev error still falling
    reason: str


@dataclass(frozen=True, eq=False)
class RegularizationCurve:
    """Train and dev error and weight norm against one regularization setting, weakest to strongest.

    `points` has columns value, train_error, dev_error, gap, weight_norm, run_id, in order of strength.
    """

    setting: str
    points: pd.DataFrame
    best_value: float  # the value with the lowest dev error (ties: the weaker one)
    best_run_id: str
    best_gap: float
    confounded: bool  # the trials varied other hyperparameters too, so the curve mixes their effects
    summary: str


def learning_curve(
    points: pd.DataFrame, reference_error: float = 0.0, *, thresholds: Thresholds = DEFAULT
) -> LearningCurve:
    """The learning curve over training-set size of a study whose trials differ in `data.train_fraction`.

    `points` has one row per run with columns m (training examples), train_error, dev_error, run_id.
    Rows with a non-finite m or error are dropped; runs at the same m are averaged. Fewer than two
    distinct m raise ValueError.
    """
    frame = _finite_rows(points, LEARNING_CURVE_COLUMNS, ("m", "train_error", "dev_error"))
    grouped = frame.groupby("m", sort=True)
    curve = grouped[["train_error", "dev_error"]].mean()
    curve["run_ids"] = grouped["run_id"].agg(lambda ids: [str(run_id) for run_id in ids])
    curve = curve.reset_index()
    if len(curve) < 2:
        raise ValueError(
            f"a learning curve needs at least two training-set sizes (distinct m with finite errors); got {len(curve)}"
        )
    curve["gap"] = curve["dev_error"] - curve["train_error"]
    curve["avoidable_bias"] = curve["train_error"] - reference_error
    curve = curve[["m", "train_error", "dev_error", "gap", "avoidable_bias", "run_ids"]]

    first, previous, last = curve.iloc[0], curve.iloc[-2], curve.iloc[-1]
    dev_drop = float(previous["dev_error"] - last["dev_error"])
    gap_closing = bool(last["gap"] < first["gap"])
    dev_still_falling = dev_drop > thresholds.still_falling
    more_data_helps = bool(last["gap"] > thresholds.high_variance) and dev_still_falling
    reason = _learning_curve_reason(last, previous, dev_drop, more_data_helps, thresholds)
    return LearningCurve(
        points=curve,
        gap_closing=gap_closing,
        dev_still_falling=dev_still_falling,
        more_data_helps=more_data_helps,
        reason=reason,
    )


def regularization_curve(
    points: pd.DataFrame,
    setting: str,
    *,
    other_params_varied: bool = False,
    thresholds: Thresholds = DEFAULT,
) -> RegularizationCurve:
    """Train and dev error and weight norm against one regularization setting, weakest to strongest.

    `points` has one row per run with columns value, train_error, dev_error, run_id and, optionally,
    weight_norm (NaN where unknown). `setting` is the dotted name (reg.l2, reg.l1, optim.weight_decay,
    model.keep_prob). Strength grows with lambda but falls with keep_prob (1 = no dropout, the weakest).
    Rows with a non-finite value or error are dropped; if none is left, ValueError names the setting.
    `other_params_varied` says the trials varied other hyperparameters too (the curve is confounded).
    """
    frame = _finite_rows(points, REGULARIZATION_CURVE_COLUMNS, ("value", "train_error", "dev_error"))
    if frame.empty:
        raise ValueError(f"no run of {setting} has a finite value, train_error and dev_error; nothing to plot")
    if "weight_norm" not in frame.columns:
        frame = frame.assign(weight_norm=np.nan)
    frame["weight_norm"] = pd.to_numeric(frame["weight_norm"], errors="coerce").astype(float)  # None -> NaN
    # keep_prob is the probability of keeping a unit: a smaller value is a stronger regularizer.
    weakest_first = not setting.endswith("keep_prob")
    # mergesort is stable, so runs at one value keep their input order.
    curve = frame.sort_values("value", ascending=weakest_first, kind="mergesort").reset_index(drop=True)
    curve["gap"] = curve["dev_error"] - curve["train_error"]
    curve["run_id"] = curve["run_id"].astype(str)
    curve = curve[["value", "train_error", "dev_error", "gap", "weight_norm", "run_id"]]

    best = curve.iloc[int(np.argmin(curve["dev_error"].to_numpy()))]  # argmin takes the first: the weaker on ties
    summary = _regularization_summary(curve, best, setting, other_params_varied, thresholds)
    return RegularizationCurve(
        setting=setting,
        points=curve,
        best_value=float(best["value"]),
        best_run_id=str(best["run_id"]),
        best_gap=float(best["gap"]),
        confounded=other_params_varied,
        summary=summary,
    )


def _finite_rows(points: pd.DataFrame, required: tuple[str, ...], numeric: tuple[str, ...]) -> pd.DataFrame:
    """`points` without the rows whose `numeric` columns are not finite; a missing column raises ValueError."""
    missing = [column for column in required if column not in points.columns]
    if missing:
        raise ValueError(
            f"the points lack the column(s) {', '.join(missing)}; they need {', '.join(required)} "
            f"and have {', '.join(map(str, points.columns)) or 'none'}"
        )
    frame = points.copy()
    for column in numeric:
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype(float)
    return frame[np.isfinite(frame[list(numeric)].to_numpy()).all(axis=1)].copy()


def _learning_curve_reason(
    last: pd.Series, previous: pd.Series, dev_drop: float, more_data_helps: bool, thresholds: Thresholds
) -> str:
    """One sentence on what the largest training sets say about more data, with the numbers in points."""
    at = f"At m = {setting_text(last['m'])}"
    since = f"from m = {setting_text(previous['m'])}"
    change = f"fell {points(dev_drop)}" if dev_drop >= 0 else f"rose {points(-dev_drop)}"
    if more_data_helps:
        return (
            f"{at} the gap is {points(last['gap'])} and the dev error {change} {since}: "
            "more data (or augmentation) is likely to help."
        )
    if last["gap"] > thresholds.high_variance:
        # High variance, but the dev error has flattened: more of the same data buys little, regularize.
        return (
            f"{at} the gap is {points(last['gap'])} but the dev error {change} {since}: "
            "it has stopped falling, so more data alone is unlikely to help; try regularization."
        )
    met = f"{at} the curves have met (gap {points(last['gap'])})"
    above = f"at a training error {points(last['avoidable_bias'])} above the reference"
    if last["avoidable_bias"] > thresholds.high_bias:
        return f"{met} {above}: the problem is bias, more data will not help."
    return f"{met} {above}: neither bias nor variance is high, more data will change little."


def _regularization_summary(
    curve: pd.DataFrame, best: pd.Series, setting: str, other_params_varied: bool, thresholds: Thresholds
) -> str:
    """One sentence: the best value, how the gap moved up to it, and what the strongest value did."""
    weakest, strongest = curve.iloc[0], curve.iloc[-1]
    head = f"{setting} = {setting_text(best['value'])} gives the lowest dev error, {best['dev_error']:.1%}"
    if len(curve) == 1:
        only = f", with a gap of {points(best['gap'])} (the only value tried)"
        return head + only + _caveat(other_params_varied)
    if best["value"] == weakest["value"]:
        trend = f"no stronger setting lowered it (gap {points(best['gap'])} at {setting_text(best['value'])})"
    else:
        moves = "falls" if best["gap"] < weakest["gap"] else "rises"
        trend = (
            f"the gap {moves} from {points(weakest['gap'])} at {setting_text(weakest['value'])} "
            f"to {points(best['gap'])} at {setting_text(best['value'])}"
        )
    if strongest["value"] != best["value"]:
        moves = "rises" if strongest["train_error"] >= weakest["train_error"] else "falls"
        trend += (
            f" and the training error {moves} from {weakest['train_error']:.1%} "
            f"to {strongest['train_error']:.1%} at {setting_text(strongest['value'])}"
        )
        # Past the best value, a training error well above the best one's means the setting now causes bias.
        if strongest["train_error"] - best["train_error"] > thresholds.high_bias:
            trend += ": too strong"
    return f"{head}; {trend}" + _caveat(other_params_varied)


def _caveat(other_params_varied: bool) -> str:
    """The end of the summary: a warning when the curve mixes the effects of other hyperparameters."""
    return " (other hyperparameters varied too, so the curve mixes their effects)." if other_params_varied else "."

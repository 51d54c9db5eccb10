"""Learning curves over training-set size and regularization curves, on numbers a reader can check by hand."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from analysis.curves import learning_curve, regularization_curve
from analysis.thresholds import DEFAULT


def _sizes(train: list[float], dev: list[float], m: tuple[int, ...] = (400, 800, 1600, 3200)) -> pd.DataFrame:
    return pd.DataFrame({"m": m, "train_error": train, "dev_error": dev, "run_id": [f"r{i}" for i in m]})


# --- learning curve over m -------------------------------------------------------------------------


def test_high_variance_with_dev_still_falling_wants_more_data() -> None:
    # Gaps 30, 24, 17, 12.5 points; the dev error fell 19 - 15.5 = 3.5 points from 1600 to 3200.
    points = _sizes([0.00, 0.01, 0.02, 0.03], [0.30, 0.25, 0.19, 0.155])
    curve = learning_curve(points.iloc[::-1])  # input order does not matter
    assert curve.points["m"].tolist() == [400, 800, 1600, 3200]
    assert curve.points["gap"].tolist() == pytest.approx([0.30, 0.24, 0.17, 0.125])
    assert curve.points["avoidable_bias"].tolist() == pytest.approx([0.00, 0.01, 0.02, 0.03])
    assert curve.points["run_ids"].tolist() == [["r400"], ["r800"], ["r1600"], ["r3200"]]
    assert (curve.gap_closing, curve.dev_still_falling, curve.more_data_helps) == (True, True, True)
    assert curve.reason == (
        "At m = 3200 the gap is 12.5 points and the dev error fell 3.5 points from m = 1600: "
        "more data (or augmentation) is likely to help."
    )


def test_curves_that_met_high_are_bias_and_more_data_does_not_help() -> None:
    # Gap 1 point at m = 3200 at a training error of 20%: the dev error still falls (1 point), but it is bias.
    points = _sizes([0.10, 0.15, 0.18, 0.20], [0.30, 0.25, 0.22, 0.21])
    curve = learning_curve(points)
    assert (curve.gap_closing, curve.dev_still_falling, curve.more_data_helps) == (True, True, False)
    assert curve.reason == (
        "At m = 3200 the curves have met (gap 1.0 points) at a training error 20.0 points above the reference: "
        "the problem is bias, more data will not help."
    )
    # With a reference error of 18% the same curve has 2 points of avoidable bias: neither is high.
    near_bayes = learning_curve(points, reference_error=0.18)
    assert near_bayes.points["avoidable_bias"].iloc[-1] == pytest.approx(0.02)
    assert "2.0 points above the reference: neither bias nor variance is high" in near_bayes.reason
    assert not near_bayes.more_data_helps


def test_high_variance_with_a_flat_dev_error_points_at_regularization() -> None:
    # Gap 20 points at 3200 but the dev error fell only 0.2 points (below still_falling, 0.5 points).
    curve = learning_curve(_sizes([0.01, 0.01, 0.01, 0.01], [0.30, 0.25, 0.212, 0.21]))
    assert (curve.dev_still_falling, curve.more_data_helps) == (False, False)
    assert "gap is 20.0 points but the dev error fell 0.2 points from m = 1600" in curve.reason
    assert "try regularization" in curve.reason
    # A looser still_falling threshold turns the same curve into "more data helps".
    loose = learning_curve(
        _sizes([0.01] * 4, [0.30, 0.25, 0.212, 0.21]), thresholds=DEFAULT.replace(still_falling=0.001)
    )
    assert loose.more_data_helps


def test_runs_at_one_m_are_averaged_and_non_finite_rows_dropped() -> None:
    points = pd.DataFrame(
        {
            "m": [200, 100, 100, 100, 200],
            "train_error": [0.05, 0.10, 0.20, math.nan, 0.07],
            "dev_error": [0.20, 0.30, 0.40, 0.50, math.inf],
            "run_id": ["c", "a", "b", "nan-run", "inf-run"],
        }
    )
    curve = learning_curve(points)
    assert curve.points["m"].tolist() == [100, 200]
    assert curve.points["train_error"].tolist() == pytest.approx([0.15, 0.05])
    assert curve.points["dev_error"].tolist() == pytest.approx([0.35, 0.20])
    assert curve.points["gap"].tolist() == pytest.approx([0.20, 0.15])
    assert curve.points["run_ids"].tolist() == [["a", "b"], ["c"]]
    assert list(curve.points.columns) == ["m", "train_error", "dev_error", "gap", "avoidable_bias", "run_ids"]


def test_fewer_than_two_sizes_is_an_error() -> None:
    one_size = pd.DataFrame({"m": [500, 500], "train_error": [0.1, 0.2], "dev_error": [0.2, 0.3], "run_id": ["a", "b"]})
    with pytest.raises(ValueError, match="at least two training-set sizes.*got 1"):
        learning_curve(one_size)
    nan_second = pd.DataFrame(
        {"m": [500, 1000], "train_error": [0.1, math.nan], "dev_error": [0.2, 0.3], "run_id": ["a", "b"]}
    )
    with pytest.raises(ValueError, match="got 1"):
        learning_curve(nan_second)


def test_a_missing_column_is_named() -> None:
    with pytest.raises(ValueError, match="lack the column.*run_id"):
        learning_curve(pd.DataFrame({"m": [1, 2], "train_error": [0.1, 0.1], "dev_error": [0.2, 0.2]}))


# --- regularization curve ------------------------------------------------------------------------


def _l2_sweep() -> pd.DataFrame:
    # Shuffled on purpose; gaps 39, 30, 21, 15 points in order of lambda.
    return pd.DataFrame(
        {
            "value": [1e-2, 0.0, 1.0, 1e-3],
            "train_error": [0.10, 0.01, 0.30, 0.04],
            "dev_error": [0.31, 0.40, 0.45, 0.34],
            "weight_norm": [5.0, 10.0, 1.0, math.nan],
            "run_id": ["l2=1e-2", "l2=0", "l2=1", "l2=1e-3"],
        }
    )


def test_l2_curve_sorted_by_lambda_with_the_best_in_the_middle() -> None:
    curve = regularization_curve(_l2_sweep(), "reg.l2")
    assert list(curve.points.columns) == ["value", "train_error", "dev_error", "gap", "weight_norm", "run_id"]
    assert curve.points["value"].tolist() == [0.0, 1e-3, 1e-2, 1.0]
    assert curve.points["gap"].tolist() == pytest.approx([0.39, 0.30, 0.21, 0.15])
    assert curve.points["weight_norm"].tolist()[::2] == [10.0, 5.0]  # NaN weight norms are kept
    assert math.isnan(curve.points["weight_norm"].iloc[1])
    assert (curve.setting, curve.best_value, curve.best_run_id) == ("reg.l2", 1e-2, "l2=1e-2")
    assert curve.best_gap == pytest.approx(0.21)
    assert not curve.confounded
    # The strongest lambda's training error (30%) is 20 points above the best one's (10%): too strong.
    assert curve.summary == (
        "reg.l2 = 0.01 gives the lowest dev error, 31.0%; the gap falls from 39.0 points at 0 to 21.0 points at 0.01 "
        "and the training error rises from 1.0% to 30.0% at 1: too strong."
    )


def test_keep_prob_runs_from_no_dropout_to_the_strongest_and_ties_go_to_the_weaker() -> None:
    points = pd.DataFrame(
        {
            "value": [0.5, 1.0, 0.8],
            "train_error": [0.12, 0.02, 0.05],
            "dev_error": [0.20, 0.15, 0.15],
            "weight_norm": [3.0, 4.0, 3.5],
            "run_id": ["k0.5", "k1", "k0.8"],
        }
    )
    curve = regularization_curve(points, "model.keep_prob", other_params_varied=True)
    assert curve.points["value"].tolist() == [1.0, 0.8, 0.5]  # keep_prob 1 = no dropout comes first
    assert curve.points["run_id"].tolist() == ["k1", "k0.8", "k0.5"]
    assert (curve.best_value, curve.best_run_id) == (1.0, "k1")  # tie at 15%: the weaker setting wins
    assert curve.best_gap == pytest.approx(0.13)
    assert curve.confounded
    assert curve.summary.startswith("model.keep_prob = 1 gives the lowest dev error, 15.0%; no stronger setting")
    assert "rises from 2.0% to 12.0% at 0.5: too strong" in curve.summary
    assert curve.summary.endswith("(other hyperparameters varied too, so the curve mixes their effects).")


def test_non_finite_rows_are_dropped_and_an_empty_curve_names_the_setting() -> None:
    points = _l2_sweep()
    points.loc[len(points)] = [1e-4, math.nan, 0.2, 9.0, "nan-train"]
    points.loc[len(points)] = [1e-5, 0.1, math.inf, 9.0, "inf-dev"]
    curve = regularization_curve(points, "reg.l2")
    assert curve.points["run_id"].tolist() == ["l2=0", "l2=1e-3", "l2=1e-2", "l2=1"]
    with pytest.raises(ValueError, match="reg.l1"):
        regularization_curve(points.iloc[4:], "reg.l1")
    with pytest.raises(ValueError, match="optim.weight_decay"):
        regularization_curve(points.iloc[:0], "optim.weight_decay")

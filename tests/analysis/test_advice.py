"""Sweep-aware advice: the runs beside a diagnosed one that already tried a step of the recipe."""

from __future__ import annotations

import pandas as pd
import pytest

from analysis.advice import advise
from analysis.bias_variance import diagnose


def runs(*rows: dict) -> pd.DataFrame:
    base = {"reference_error": 0.0, "model.width": 100, "model.depth": 2, "reg.l2": 0.0, "model.keep_prob": 1.0,
            "data.train_fraction": 0.1, "data.augment": False, "optim.lr": 0.01, "run_name": "x",
            "diagnostics.preset": "economy"}
    return pd.DataFrame([{**base, **row} for row in rows])


def test_an_overfit_run_is_pointed_at_the_regularized_run_and_the_larger_training_set() -> None:
    frame = runs(
        {"run_id": "overfit", "train_error": 0.01, "dev_error": 0.40},
        {"run_id": "l2", "train_error": 0.10, "dev_error": 0.30, "reg.l2": 0.1, "run_name": "y"},
        {"run_id": "l2-and-lr", "train_error": 0.12, "dev_error": 0.20, "reg.l2": 1.0, "optim.lr": 0.001},
        {"run_id": "more-data", "train_error": 0.05, "dev_error": 0.25, "data.train_fraction": 1.0,
         "diagnostics.preset": "full"},
        {"run_id": "wider", "train_error": 0.0, "dev_error": 0.45, "model.width": 400},
    )
    run = frame.iloc[0].to_dict()
    diagnosis = diagnose(run["train_error"], run["dev_error"])
    assert diagnosis.verdict == "high_variance"
    advice = advise(diagnosis, run, frame)
    by_action = {a.action: a for a in advice}
    assert list(by_action) == ["more_data", "regularization"]  # recipe order; no bias remedy for a variance problem
    # the clean comparison (only reg.l2 changed) comes before the one that also changed the learning rate,
    # though the latter cut the variance more; run_name and diagnostics settings are no experiment
    l2 = by_action["regularization"]
    assert l2.run_id == "l2"
    assert [(c.setting, c.old, c.new) for c in l2.tried] == [("reg.l2", 0.0, 0.1)]
    assert l2.also_changed == ()
    assert l2.variance == pytest.approx((0.39, 0.20))
    assert l2.avoidable_bias == pytest.approx((0.01, 0.10))
    assert l2.text == ("reg.l2 0.0 -> 0.1 (run l2): variance 39.0 points -> 20.0 points, "
                       "avoidable bias 1.0 points -> 10.0 points")
    assert by_action["more_data"].run_id == "more-data"
    second = advise(diagnosis, run, frame, per_action=2)
    assert [a.run_id for a in second if a.action == "regularization"] == ["l2", "l2-and-lr"]
    assert "it also changed optim.lr 0.01 -> 0.001" in second[-1].text


def test_an_underfit_run_is_pointed_at_a_bigger_network() -> None:
    frame = runs(
        {"run_id": "small", "train_error": 0.30, "dev_error": 0.32, "model.width": 4},
        {"run_id": "big", "train_error": 0.10, "dev_error": 0.14, "model.width": 64, "model.depth": 4},
        {"run_id": "smaller", "train_error": 0.40, "dev_error": 0.41, "model.width": 2},
    )
    run = frame.iloc[0].to_dict()
    advice = advise(diagnose(0.30, 0.32), run, frame)
    assert [(a.action, a.run_id) for a in advice] == [("bigger_network", "big")]
    assert [c.setting for c in advice[0].tried] == ["model.width", "model.depth"]
    assert advice[0].improvement == pytest.approx(0.20)


def test_no_advice_without_a_sibling_that_tried_a_remedy() -> None:
    frame = runs({"run_id": "only", "train_error": 0.01, "dev_error": 0.40})
    assert advise(diagnose(0.01, 0.40), frame.iloc[0].to_dict(), frame) == []


def test_a_run_on_other_data_is_no_comparison() -> None:
    frame = runs(
        {"run_id": "overfit", "train_error": 0.01, "dev_error": 0.40},
        {"run_id": "other-data", "train_error": 0.05, "dev_error": 0.10, "reg.l2": 1.0, "data.name": "moons"},
        {"run_id": "augmented", "train_error": 0.05, "dev_error": 0.30, "data.augment": True},
    )
    frame.loc[0, "data.name"] = "mnist1d"
    frame.loc[2, "data.name"] = "mnist1d"
    run = frame.iloc[0].to_dict()
    advice = advise(diagnose(0.01, 0.40), run, frame)
    assert [(a.action, a.run_id) for a in advice] == [("more_data", "augmented")]

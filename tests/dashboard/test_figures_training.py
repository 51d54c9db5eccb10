"""The training pages' figures on hand-built frames: values, axes (log, reversed), order by strength, and the
`empty` figure that names what is missing."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from analysis.curves import regularization_curve
from analysis.smoothing import ema
from analysis.thresholds import DEFAULT
from dashboard.figures.histograms import pooled_histogram
from dashboard.figures.training import (
    LOG10_OF_ZERO,
    gradcheck_bars,
    log10_relative_difference,
    loss_curves,
    lr_schedules,
    median_update_ratio,
    regularization_errors,
    regularization_gap,
    regularization_sparsity,
    regularization_weight_norm,
    strength_axis,
    strength_value,
    update_ratios,
    weight_distributions,
)


def annotation_text(fig) -> str:
    return " ".join(a.text for a in fig.layout.annotations)


def is_empty(fig) -> bool:
    return not fig.data and bool(fig.layout.annotations)


# --- the strength axis ----------------------------------------------------------------------------------------

def test_lambda_axis_is_log_with_zero_a_decade_below_the_smallest_lambda() -> None:
    axis = strength_axis([0.0, 0.1, 1.0, 10.0], "reg.l2")
    assert axis.axis["type"] == "log"
    np.testing.assert_allclose(axis.x, [0.01, 0.1, 1.0, 10.0])
    assert axis.axis["tickvals"] == pytest.approx([0.01, 0.1, 1.0, 10.0])
    assert axis.axis["ticktext"] == ["0", "0.1", "1", "10"]
    assert "0.01" in axis.note and "decade below" in axis.note


def test_lambda_axis_without_zero_has_no_note_and_all_zero_is_linear() -> None:
    assert strength_axis([1e-4, 1e-2], "reg.l1").note is None
    assert strength_axis([1e-4, 1e-2], "reg.l1").axis["type"] == "log"
    flat = strength_axis([0.0, 0.0], "optim.weight_decay")
    assert flat.axis["type"] == "linear"
    np.testing.assert_array_equal(flat.x, [0.0, 0.0])


def test_many_lambdas_get_decade_ticks_and_the_zero_tick() -> None:
    values = [0.0] + list(np.logspace(-3, 1, 10))
    axis = strength_axis(values, "reg.l2")
    assert axis.axis["tickvals"][0] == pytest.approx(1e-4)
    assert axis.axis["ticktext"][0] == "0"
    assert 1.0 in axis.axis["tickvals"] and 10.0 in axis.axis["tickvals"]


def test_keep_prob_axis_is_reversed_and_augment_reads_off_on() -> None:
    keep = strength_axis([1.0, 0.8, 0.5], "model.keep_prob")
    assert keep.axis["autorange"] == "reversed"
    np.testing.assert_array_equal(keep.x, [1.0, 0.8, 0.5])
    augment = strength_axis([0.0, 1.0], "data.augment")
    assert augment.axis["ticktext"] == ["off", "on"]


def test_strength_values_of_lists_booleans_and_text() -> None:
    assert strength_value("model.keep_prob", [0.5, 1.0]) == 0.75
    assert strength_value("data.augment", True) == 1.0
    assert strength_value("data.augment", ["shift", "noise"]) == 1.0
    assert strength_value("data.augment", False) == 0.0
    assert strength_value("data.augment", []) == 0.0
    assert strength_value("reg.l2", "30") == 30.0
    assert math.isnan(strength_value("reg.l2", "lots"))


# --- regularization figures -------------------------------------------------------------------------------------

def l2_points() -> pd.DataFrame:
    """Three runs given strongest first: the curve puts them weakest first."""
    raw = pd.DataFrame({"value": [10.0, 0.0, 1.0], "train_error": [0.20, 0.01, 0.05],
                        "dev_error": [0.24, 0.15, 0.10], "run_id": ["c", "a", "b"],
                        "weight_norm": [2.0, 9.0, 5.0]})
    return regularization_curve(raw, "reg.l2").points


def test_regularization_errors_in_order_of_strength_on_a_log_axis() -> None:
    fig = regularization_errors(l2_points(), "reg.l2", reference_error=0.05)
    train, dev = fig.data
    assert (train.name, dev.name) == ("train error", "dev error")
    np.testing.assert_allclose(train.x, [0.1, 1.0, 10.0])  # 0 drawn a decade below 1
    np.testing.assert_allclose(train.y, [0.01, 0.05, 0.20])
    np.testing.assert_allclose(dev.y, [0.15, 0.10, 0.24])
    assert fig.layout.xaxis.type == "log"
    assert list(fig.layout.xaxis.ticktext) == ["0", "1", "10"]
    assert "reference error e* 5.0%" in annotation_text(fig)


def test_regularization_gap_weight_norm_and_sparsity_values() -> None:
    points = l2_points().assign(frac_small=[0.001, 0.01, 0.3])
    gap = regularization_gap(points, "reg.l2")
    np.testing.assert_allclose(gap.data[0].y, [0.14, 0.05, 0.04])
    assert fig_hline_y(gap) == pytest.approx(DEFAULT.high_variance)
    norm = regularization_weight_norm(points, "reg.l2")
    np.testing.assert_allclose(norm.data[0].y, [9.0, 5.0, 2.0])
    sparsity = regularization_sparsity(points, "reg.l2")
    np.testing.assert_allclose(sparsity.data[0].y, [0.001, 0.01, 0.3])
    assert sparsity.layout.xaxis.type == "log"


def fig_hline_y(fig) -> float:
    return fig.layout.shapes[0].y0


def test_keep_prob_points_run_from_no_dropout_to_strong_dropout() -> None:
    raw = pd.DataFrame({"value": [0.5, 1.0, 0.8], "train_error": [0.3, 0.0, 0.1], "dev_error": [0.35, 0.2, 0.15],
                        "run_id": ["c", "a", "b"]})
    points = regularization_curve(raw, "model.keep_prob").points
    fig = regularization_errors(points, "model.keep_prob")
    np.testing.assert_allclose(fig.data[0].x, [1.0, 0.8, 0.5])
    np.testing.assert_allclose(fig.data[0].y, [0.0, 0.1, 0.3])
    assert fig.layout.xaxis.autorange == "reversed"
    assert fig.layout.xaxis.type == "linear"


def test_runs_at_one_value_are_markers_not_a_zigzag_line() -> None:
    raw = pd.DataFrame({"value": [0.0, 0.0, 1.0], "train_error": [0.0, 0.1, 0.05], "dev_error": [0.2, 0.3, 0.1],
                        "run_id": ["a", "b", "c"]})
    fig = regularization_errors(regularization_curve(raw, "reg.l2").points, "reg.l2")
    assert fig.data[0].mode == "markers"
    assert regularization_errors(l2_points(), "reg.l2").data[0].mode == "lines+markers"


def test_regularization_figures_say_what_is_missing() -> None:
    assert "train_error" in annotation_text(regularization_errors(pd.DataFrame({"value": [1.0]}), "reg.l2"))
    no_norms = l2_points().assign(weight_norm=np.nan)
    assert "diagnostics were off" in annotation_text(regularization_weight_norm(no_norms, "reg.l2"))
    assert is_empty(regularization_sparsity(l2_points(), "reg.l2"))  # no frac_small column
    assert is_empty(regularization_gap(l2_points().iloc[:0], "reg.l2"))


def test_pooled_histogram_keeps_the_counts_and_spreads_them_evenly() -> None:
    rows = pd.DataFrame({"edges": [[0.0, 1.0, 2.0], [1.0, 3.0]], "counts": [[4, 2], [6]]})
    pooled = pooled_histogram(rows, np.array([0.0, 1.0, 2.0, 3.0]))
    # layer 1: 4 in [0, 1), 2 in [1, 2); layer 2: 6 spread over [1, 3): 3 and 3
    np.testing.assert_allclose(pooled, [4.0, 5.0, 3.0])


def test_pooled_histogram_matches_numpy_on_a_common_grid() -> None:
    rng = np.random.default_rng(0)
    weights = rng.normal(size=5000)
    grid = np.linspace(weights.min(), weights.max(), 33)
    counts, edges = np.histogram(weights, bins=grid)
    rows = pd.DataFrame({"edges": [edges.tolist()], "counts": [counts.tolist()]})
    np.testing.assert_allclose(pooled_histogram(rows, grid), counts)


def test_weight_distributions_one_trace_per_run_as_fractions() -> None:
    rows = pd.DataFrame({
        "run_id": ["a", "a", "b", "b"], "kind": ["weight", "weight", "weight", "grad"], "layer": ["h", "o", "h", "h"],
        "edges": [[-1.0, 0.0, 1.0], [-1.0, 0.0, 1.0], [-0.5, 0.0, 0.5], [-9.0, 9.0]],
        "counts": [[1, 3], [2, 2], [5, 5], [10]],
    })
    fig = weight_distributions(rows, {"b": "reg.l2 = 30", "a": "reg.l2 = 0"}, bins=4)
    assert [t.name for t in fig.data] == ["reg.l2 = 30", "reg.l2 = 0"]
    np.testing.assert_allclose(fig.data[0].x, [-0.75, -0.25, 0.25, 0.75])  # the grad row is not a weight
    np.testing.assert_allclose(fig.data[1].y, [3 / 16, 3 / 16, 5 / 16, 5 / 16])
    np.testing.assert_allclose(fig.data[0].y, [0.0, 0.5, 0.5, 0.0])
    assert is_empty(weight_distributions(rows, {"zzz": "none"}))


# --- optimization figures ---------------------------------------------------------------------------------------

def loss_frame() -> pd.DataFrame:
    rows = []
    for run_id, group, train, dev in (("r1", "optim.lr = 0.1", [2.0, 1.0, 0.5], [2.1, 1.5, 1.4]),
                                      ("r2", "optim.lr = 0.1", [2.0, 1.2, 0.8], [2.2, 1.6, 1.5]),
                                      ("r3", "optim.lr = 0.001", [2.3, 2.2, 2.1], [2.3, 2.25, 2.2])):
        for key, values in (("train/loss", train), ("dev/loss", dev)):
            for epoch, value in zip((3, 1, 2), (values[2], values[0], values[1]), strict=True):  # out of order
                rows.append({"run_id": run_id, "label": f"{group} ({run_id})", "group": group, "key": key,
                             "step": epoch * 10, "epoch": float(epoch), "value": value})
    return pd.DataFrame(rows)


def test_loss_curves_raw_train_solid_dev_dashed_coloured_by_group() -> None:
    fig = loss_curves(loss_frame(), beta=0.0)
    assert len(fig.data) == 6
    train = [t for t in fig.data if t.line.dash == "solid"]
    dev = [t for t in fig.data if t.line.dash == "dash"]
    assert [t.meta for t in train] == ["r1", "r2", "r3"]
    np.testing.assert_allclose(train[0].x, [1, 2, 3])
    np.testing.assert_allclose(train[0].y, [2.0, 1.0, 0.5])
    np.testing.assert_allclose(dev[2].y, [2.3, 2.25, 2.2])
    assert train[0].line.color == train[1].line.color != train[2].line.color
    assert [t.name for t in fig.data if t.showlegend] == ["optim.lr = 0.1", "optim.lr = 0.001"]
    assert fig.layout.yaxis.type == "linear"


def test_loss_curves_smoothing_is_the_bias_corrected_ema() -> None:
    fig = loss_curves(loss_frame(), beta=0.9)
    np.testing.assert_allclose(fig.data[0].y, ema([2.0, 1.0, 0.5], 0.9))
    assert fig.data[0].y[0] == pytest.approx(2.0)  # bias correction: the first point is not shrunk toward 0


def test_loss_curves_of_a_diverged_run_use_a_log_axis_and_bad_input_is_empty() -> None:
    frame = loss_frame()
    frame.loc[frame["run_id"] == "r3", "value"] *= 1e4
    assert loss_curves(frame).layout.yaxis.type == "log"
    assert "beta" in annotation_text(loss_curves(loss_frame(), beta=1.0))
    assert "epoch" in annotation_text(loss_curves(loss_frame().drop(columns="epoch")))


def test_lr_schedules_log_y_per_run() -> None:
    frame = pd.DataFrame({"run_id": ["a", "a", "b", "b"], "label": ["a", "a", "b", "b"], "group": ["x", "x", "y", "y"],
                          "step": [10, 20, 10, 20], "value": [0.1, 0.05, 0.01, 0.01]})
    fig = lr_schedules(frame)
    assert fig.layout.yaxis.type == "log"
    np.testing.assert_allclose(fig.data[0].y, [0.1, 0.05])
    np.testing.assert_array_equal(fig.data[1].x, [10, 20])
    assert is_empty(lr_schedules(frame.iloc[:0]))


def ratio_frame() -> pd.DataFrame:
    return pd.DataFrame({
        "run_id": ["a"] * 6 + ["b"] * 2, "label": ["a"] * 6 + ["b"] * 2, "group": ["g"] * 6 + ["h"] * 2,
        "step": [0, 0, 0, 100, 100, 100, 0, 100], "layer": ["l1", "l2", "l3"] * 2 + ["l1", "l1"],
        "value": [1e-2, 1e-3, 1e-4, 2e-3, 3e-3, np.nan, 5e-6, 0.5],
    })


def test_median_update_ratio_over_layers() -> None:
    medians = median_update_ratio(ratio_frame())
    a = medians[medians["run_id"] == "a"]
    np.testing.assert_allclose(a["value"], [1e-3, 2.5e-3])  # the NaN layer is ignored
    assert list(medians.columns) == ["run_id", "label", "group", "step", "value"]


def test_update_ratios_log_y_with_the_rule_of_thumb_and_thresholds() -> None:
    fig = update_ratios(ratio_frame())
    assert fig.layout.yaxis.type == "log"
    np.testing.assert_allclose(fig.data[0].y, [1e-3, 2.5e-3])
    np.testing.assert_allclose(fig.data[1].y, [5e-6, 0.5])
    lines = sorted(shape.y0 for shape in fig.layout.shapes)
    assert lines == pytest.approx([DEFAULT.update_ratio_low, 1e-3, DEFAULT.update_ratio_high])
    assert any("rule of thumb" in shape.name for shape in fig.layout.shapes)
    assert "preset=default" in annotation_text(update_ratios(ratio_frame().iloc[:0]))


# --- gradient check ---------------------------------------------------------------------------------------------

def test_log10_relative_difference_of_zero_none_and_nan() -> None:
    values = log10_relative_difference([1e-7, 0.0, None, float("nan"), 2e-3])
    assert values[0] == pytest.approx(-7)
    assert values[1] == LOG10_OF_ZERO
    assert np.isnan(values[2]) and np.isnan(values[3])
    assert values[4] == pytest.approx(math.log10(2e-3))


def test_gradcheck_bars_log10_per_tensor_with_the_reference_lines() -> None:
    per_tensor = pd.DataFrame({"name": ["w1", "b1", "w2"], "relative_difference": [1e-9, None, 2e-2],
                               "verdict": ["great", "worry", "worry"]})
    fig = gradcheck_bars(per_tensor)
    bars = fig.data[0]
    assert list(bars.x) == ["w1", "b1", "w2"]
    assert bars.y[0] == pytest.approx(-9)
    assert np.isnan(bars.y[1])
    assert bars.y[2] == pytest.approx(math.log10(2e-2))
    assert list(bars.text) == ["1.0e-09", "not finite", "2.0e-02"]
    assert sorted(shape.y0 for shape in fig.layout.shapes) == pytest.approx([-7, -5, -3])
    assert bars.marker.color[0] != bars.marker.color[2]
    assert "relative_difference" in annotation_text(gradcheck_bars(pd.DataFrame({"name": ["w"]})))

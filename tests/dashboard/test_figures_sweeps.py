"""dashboard.figures.sweeps and dashboard.figures.curves on hand-built frames: the numbers drawn, the axes'
scales and names, and a figure that says what is missing instead of raising."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from analysis.smoothing import ema
from analysis.thresholds import DEFAULT
from dashboard.figures import UIREVISION
from dashboard.figures.curves import learning_curves, smoothing_beta
from dashboard.figures.sweeps import (
    AXIS_WIDTH,
    BOX_POINTS,
    axis_label,
    bias_variance_scatter,
    hyperparameter_scatter,
    importance_bars,
    on_scale,
    parallel_coordinates,
)


def trials() -> pd.DataFrame:
    """Four trials of a sweep over a learning rate (loguniform), a momentum beta (loguniform in 1 - beta), a
    width (randint) and an activation (choice); the last one diverged (no finite errors)."""
    return pd.DataFrame({
        "run_id": ["a" * 32, "b" * 32, "c" * 32, "d" * 32],
        "run_name": ["t0", "t1", "t2", "t3"],
        "train_error": [0.10, 0.30, 0.02, math.nan],
        "dev_error": [0.12, 0.32, 0.20, math.nan],
        "reference_error": [0.0, 0.05, 0.0, 0.0],
        "optim.lr": [1e-4, 1e-2, 1e-3, 1.0],
        "optim.beta1": [0.9, 0.99, 0.999, 0.9],
        "model.width": [16, 64, 256, 32],
        "model.activation": ["tanh", "relu", "relu", "tanh"],
    })


SCALES = {"optim.lr": "log", "optim.beta1": "log_one_minus", "model.width": "linear", "model.activation": "categorical"}
SETTINGS = ["optim.lr", "optim.beta1", "model.width", "model.activation"]


def annotation_texts(fig) -> list[str]:
    return [a.text for a in fig.layout.annotations]


def test_axis_names_and_values_on_the_search_scale() -> None:
    assert axis_label("optim.lr", "log") == "log10(optim.lr)"
    assert axis_label("optim.beta1", "log_one_minus") == "log10(1 - optim.beta1)"
    assert axis_label("model.width", "linear") == "model.width"
    np.testing.assert_allclose(on_scale(np.array([1e-4, 1e-2]), "log"), [-4.0, -2.0])
    np.testing.assert_allclose(on_scale(np.array([0.9, 0.999]), "log_one_minus"), [-1.0, -3.0])
    assert on_scale(np.array([0.0, 1.0]), "log") is None  # no logarithm: the caller falls back to linear


def parallel_lines(fig) -> tuple[list[str], dict[str, list[float]]]:
    """The axes' names and, per trial (by name), its values on them from the first axis to the last, as the
    figure's lines carry them (a band's trials are one line, every other trial drawn from the last axis back)."""
    vertices: dict[str, list[tuple[float, float]]] = {}
    for trace in fig.data:
        for x, value, name in zip(trace.x, trace.customdata, trace.text, strict=True):
            vertices.setdefault(name, []).append((x, value))
    lines = {name: [value for _, value in sorted(found)] for name, found in vertices.items()}
    assert all(sorted(x for x, _ in found) == list(range(len(found))) for found in vertices.values())
    return list(fig.layout.xaxis.ticktext), lines


def test_parallel_coordinates_draw_log_settings_as_log10_and_categories_as_coded_axes() -> None:
    fig = parallel_coordinates(trials(), SETTINGS, SCALES)
    labels, lines = parallel_lines(fig)
    assert labels == ["log10(optim.lr)", "log10(1 - optim.beta1)", "model.width", "model.activation", "dev error"]
    assert sorted(lines) == ["t0", "t1", "t2"]  # the diverged trial is left out
    np.testing.assert_allclose(lines["t0"], [-4.0, -1.0, 16, 1, 0.12])  # activation: relu 0, tanh 1
    np.testing.assert_allclose(lines["t1"], [-2.0, -2.0, 64, 0, 0.32])
    np.testing.assert_allclose(lines["t2"], [-3.0, -3.0, 256, 0, 0.20])
    ticks = {a.text for a in fig.layout.annotations}
    assert {"relu", "tanh", "-4", "-2", "16", "256", "0.12", "0.32"} <= ticks  # categories, each axis' ends
    # heights: each axis from its lowest (0) to its highest value (1); categories a half step in from the ends
    t0 = next(t for t in fig.data if "t0" in t.text)
    heights = [y for y, name in zip(t0.y, t0.text, strict=True) if name == "t0"]
    np.testing.assert_allclose(heights, [0.0, 1.0, 0.0, 0.75, 0.0])
    # colour bands of the dev error: the best trial yellow, the worst dark; the best drawn last
    assert fig.data[-1].line.color == "rgb(253, 231, 37)" and "t0" in fig.data[-1].text
    assert "t1" in fig.data[0].text and fig.data[0].line.color == "rgb(68, 1, 84)"
    assert fig.layout.uirevision == UIREVISION


def test_a_band_of_trials_is_one_unbroken_line_turning_along_the_first_and_last_axes() -> None:
    # t0 and t2 share the lowest band (0.12, 0.125 of a 0.12..0.32 range in 8 bands)
    frame = trials().assign(dev_error=[0.12, 0.32, 0.125, math.nan])
    fig = parallel_coordinates(frame, SETTINGS, SCALES)
    best = fig.data[-1]
    assert list(best.text) == ["t0"] * 5 + ["t2"] * 5
    assert not np.isnan(np.asarray(best.x, dtype=float)).any() and not np.isnan(np.asarray(best.y, dtype=float)).any()
    np.testing.assert_allclose(best.x, [0, 1, 2, 3, 4, 4, 3, 2, 1, 0])  # t2 drawn back: the turn is on the last axis
    _, lines = parallel_lines(fig)
    np.testing.assert_allclose(lines["t2"], [-3.0, -3.0, 256, 0, 0.125])
    assert {shape.line.width for shape in fig.layout.shapes} == {AXIS_WIDTH}  # wide enough to hide the turns


def test_parallel_coordinates_without_a_scale_draw_numbers_linearly() -> None:
    labels, lines = parallel_lines(parallel_coordinates(trials(), ["optim.lr"]))
    assert labels == ["optim.lr", "dev error"]
    assert [lines[name][0] for name in ("t0", "t1", "t2")] == pytest.approx([1e-4, 1e-2, 1e-3])


@pytest.mark.parametrize("frame, params, said", [
    (pd.DataFrame({"x": [1]}), ["x"], "no dev error column"),
    (trials().assign(dev_error=math.nan), SETTINGS, "no trial has a finite dev error"),
    (trials(), ["not.searched"], "searched no setting"),
])
def test_parallel_coordinates_say_what_is_missing(frame: pd.DataFrame, params: list[str], said: str) -> None:
    fig = parallel_coordinates(frame, params)
    assert not fig.data and said in annotation_texts(fig)[0]


def test_dev_error_against_each_setting_on_its_own_scale() -> None:
    fig = hyperparameter_scatter(trials(), SETTINGS, SCALES)
    assert [t.name for t in fig.data] == SETTINGS
    assert fig.layout.xaxis.type == "log" and fig.layout.xaxis.title.text == "optim.lr"
    np.testing.assert_allclose(fig.data[0].x, [1e-4, 1e-2, 1e-3])
    np.testing.assert_allclose(fig.data[0].y, [0.12, 0.32, 0.20])
    # loguniform in 1 - beta: the axis is 1 - beta, on a log scale
    assert fig.layout.xaxis2.type == "log" and fig.layout.xaxis2.title.text == "1 - optim.beta1"
    np.testing.assert_allclose(fig.data[1].x, [0.1, 0.01, 0.001])
    assert fig.layout.xaxis3.type == "linear"
    assert fig.layout.xaxis4.type == "category" and list(fig.data[3].x) == ["tanh", "relu", "relu"]
    # a categorical setting: a box of the dev error per value, every trial a point beside it in a small sweep
    assert fig.data[3].type == "box" and fig.data[3].boxpoints == "all"
    np.testing.assert_allclose(fig.data[3].y, [0.12, 0.32, 0.20])
    assert list(fig.data[0].text) == ["t0", "t1", "t2"]  # the hover names the trial
    assert fig.layout.yaxis.title.text == "dev error"


def test_a_large_sweep_s_categorical_box_shows_only_its_outliers_as_points() -> None:
    many = pd.concat([trials().iloc[:3]] * (BOX_POINTS // 3 + 1), ignore_index=True)
    box = hyperparameter_scatter(many, SETTINGS, SCALES).data[3]
    assert box.type == "box" and box.boxpoints == "outliers" and len(box.y) == len(many) > BOX_POINTS


def test_importance_bars_put_the_most_important_setting_on_top() -> None:
    fig = importance_bars({"model.activation": 0.1, "optim.lr": 0.7, "model.width": 0.2}, "a method")
    bar = fig.data[0]
    assert list(bar.y) == ["model.activation", "model.width", "optim.lr"]  # plotly draws the first at the bottom
    np.testing.assert_allclose(bar.x, [0.1, 0.2, 0.7])
    assert tuple(fig.layout.xaxis.range) == (0, 1) and fig.layout.title.text == "a method"
    assert not importance_bars({}).data


def test_bias_variance_scatter_places_trials_and_draws_the_thresholds() -> None:
    fig = bias_variance_scatter(trials())
    (points,) = fig.data
    np.testing.assert_allclose(points.x, [0.10, 0.25, 0.02])  # train - reference
    np.testing.assert_allclose(points.y, [0.02, 0.02, 0.18])  # dev - train
    assert list(points.text) == ["t0", "t1", "t2"]
    lines = {(s.type, s.x0, s.y0) for s in fig.layout.shapes}
    assert ("line", DEFAULT.high_bias, 0) in lines and ("line", 0, DEFAULT.high_variance) in lines
    texts = annotation_texts(fig)
    for quadrant in ("good fit", "high bias", "high variance", "high bias + high variance"):
        assert quadrant in texts
    # each plot corner lies in its quadrant: the ranges hold both thresholds
    assert fig.layout.xaxis.range[0] < DEFAULT.high_bias < fig.layout.xaxis.range[1]
    assert fig.layout.yaxis.range[0] < DEFAULT.high_variance < fig.layout.yaxis.range[1]


def test_bias_variance_scatter_coloured_by_a_log_setting_or_by_categories() -> None:
    fig = bias_variance_scatter(trials(), "optim.lr", SCALES)
    np.testing.assert_allclose(fig.data[0].marker.color, [-4.0, -2.0, -3.0])
    assert fig.data[0].marker.colorbar.title.text == "log10(optim.lr)"
    fig = bias_variance_scatter(trials(), "model.activation", SCALES)
    assert [t.name for t in fig.data] == ["model.activation = relu", "model.activation = tanh"]
    np.testing.assert_allclose(fig.data[0].x, [0.25, 0.02])
    fig = bias_variance_scatter(trials(), "no.such.setting")
    assert len(fig.data) == 1 and fig.data[0].marker.color is None


def test_bias_variance_scatter_says_what_is_missing() -> None:
    assert "no trial has a finite train and dev error" in annotation_texts(
        bias_variance_scatter(trials().assign(train_error=math.nan)))[0]
    assert "no train error" in annotation_texts(bias_variance_scatter(pd.DataFrame({"dev_error": [0.1]})))[0]


# --- curves -------------------------------------------------------------------------------------------------

def history() -> pd.DataFrame:
    steps = [10, 20, 30, 40]
    rows = [("train/loss", s, v) for s, v in zip(steps, [2.0, 1.0, 1.5, 0.5], strict=True)]
    rows += [("dev/loss", s, v) for s, v in zip(steps, [2.2, 1.4, math.nan, 1.0], strict=True)]
    rows += [("train/error", s, v) for s, v in zip(steps, [0.8, 0.5, 0.4, 0.3], strict=True)]
    rows += [("dev/error", s, v) for s, v in zip(steps, [0.85, 0.6, 0.55, 0.5], strict=True)]
    rows += [("lr", s, 0.1) for s in steps]  # not a curve of this figure
    return pd.DataFrame(rows, columns=["key", "step", "value"])


def test_learning_curves_draw_the_raw_values_faintly_behind_their_ema() -> None:
    fig = learning_curves(history(), beta=0.6)
    by_name = {t.name: t for t in fig.data}
    assert set(by_name) == {f"{k}{raw}" for k in ("train/loss", "dev/loss", "train/error", "dev/error")
                            for raw in ("", " (raw)")}
    np.testing.assert_allclose(by_name["train/loss (raw)"].y, [2.0, 1.0, 1.5, 0.5])
    np.testing.assert_allclose(by_name["train/loss"].y, ema([2.0, 1.0, 1.5, 0.5], 0.6))
    # bias correction: the first smoothed value is the first value, not (1 - beta) times it
    assert by_name["train/loss"].y[0] == pytest.approx(2.0)
    assert by_name["train/loss"].y[1] == pytest.approx((0.6 * 0.4 * 2.0 + 0.4 * 1.0) / (1 - 0.6**2))
    assert by_name["train/loss (raw)"].opacity < 1 and by_name["train/loss"].opacity is None
    # a NaN stays a gap in both
    assert math.isnan(by_name["dev/loss (raw)"].y[2]) and math.isnan(by_name["dev/loss"].y[2])
    assert by_name["train/loss"].xaxis == "x" and by_name["dev/error"].xaxis == "x2"
    assert list(by_name["dev/error"].x) == [10, 20, 30, 40]
    assert fig.layout.uirevision == UIREVISION


def test_learning_curves_with_beta_zero_are_the_raw_values() -> None:
    fig = learning_curves(history(), beta=0.0)
    assert [t.name for t in fig.data] == ["train/loss", "dev/loss", "train/error", "dev/error"]
    np.testing.assert_allclose(fig.data[2].y, [0.8, 0.5, 0.4, 0.3])


def test_learning_curves_of_a_diverged_run_show_infinities_as_gaps() -> None:
    frame = pd.DataFrame({"key": ["train/loss"] * 3, "step": [1, 2, 3], "value": [1.0, math.inf, math.nan]})
    (raw, smoothed) = learning_curves(frame, beta=0.5).data
    assert raw.y[0] == 1.0 and math.isnan(raw.y[1]) and math.isnan(raw.y[2])
    assert smoothed.y[0] == 1.0 and math.isnan(smoothed.y[1])


@pytest.mark.parametrize("frame, beta, said", [
    (pd.DataFrame(columns=["key", "step", "value"]), 0.6, "no train/dev loss or error recorded yet"),
    (pd.DataFrame({"key": ["lr"], "step": [0], "value": [0.1]}), 0.6, "no train/dev loss or error"),
    (pd.DataFrame({"step": [0]}), 0.6, "lacks the column(s) key, value"),
    (history(), 1.0, "expected a number in [0, 1)"),
])
def test_learning_curves_say_what_is_missing(frame: pd.DataFrame, beta: float, said: str) -> None:
    fig = learning_curves(frame, beta)
    assert not fig.data and said in annotation_texts(fig)[0]


def test_the_smoothing_control_value_becomes_a_beta_in_0_to_099() -> None:
    assert smoothing_beta(None) == 0.6 and smoothing_beta("x") == 0.6 and smoothing_beta(math.nan) == 0.6
    assert smoothing_beta(0.9) == 0.9 and smoothing_beta(1.0) == 0.99 and smoothing_beta(-1) == 0.0


def test_store_text_reaches_the_figures_inert() -> None:
    """Plotly renders <a href>, <b> and <span style> in labels and hover text: names and values from the store
    arrive escaped."""
    hostile = trials().assign(run_name=["<b>t0</b>", "t1", "t2", "t3"],
                              **{"model.activation": ["<a href='https://x'>tanh</a>", "relu", "relu", "tanh"]})
    coordinates = parallel_coordinates(hostile, SETTINGS, SCALES)
    _, lines = parallel_lines(coordinates)
    assert "&lt;b&gt;t0&lt;/b&gt;" in lines
    assert "&lt;a href='https://x'&gt;tanh&lt;/a&gt;" in {a.text for a in coordinates.layout.annotations}
    for fig in (coordinates, hyperparameter_scatter(hostile, SETTINGS, SCALES),
                bias_variance_scatter(hostile, "model.activation", SCALES)):
        shown = [t for trace in fig.data for t in (trace.text or ()) if t] + [trace.name or "" for trace in fig.data]
        shown += [a.text for a in fig.layout.annotations]
        assert shown and not [t for t in shown if "<b>" in t or "<a " in t]

"""The regularization, optimization and gradient-check pages called as functions: against hand-made runs in a
fresh store (runs that differ in the learning rate or in keep_prob, a run on another data set, a run without
update ratios), against the overfit sweep of conftest.py (reg.l2 0 vs 30) and against a real `fitlens gradcheck`
run. Assertions are on the values in the returned component tree."""

from __future__ import annotations

import html
import math
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import pytest
from mlflow.entities import Metric, Param

from dashboard.cache import CachedReader
from dashboard.pages import gradcheck, optimization, regularization
from tests.commands import fitlens
from tests.dashboard.tree import MARKUP, collect
from tracking.layout import diag_key
from tracking.reader import DataError, runs_frame
from tracking.store import client_for


def figure_with(found: dict, y_title: str) -> go.Figure:
    """The figure whose y axis title contains `y_title`."""
    return next(f for f in found["figures"] if y_title in (f.layout.yaxis.title.text or ""))


# --- hand-made runs ---------------------------------------------------------------------------------------------

def log_run(client, experiment: str, name: str, params: dict, train: list[float], dev: list[float],
            lr: list[float] | None = None, update_ratios: dict[str, list[float]] | None = None) -> str:
    """A finished run with its params, per-epoch losses and errors (2 steps an epoch), the lr and, optionally,
    update-to-weight ratios per layer at steps 0, 2, 4."""
    run_id = client.create_run(experiment, run_name=name).info.run_id
    for key, value in params.items():
        client.log_param(run_id, key, str(value))
    for epoch, (train_loss, dev_loss) in enumerate(zip(train, dev, strict=True)):
        step = 2 * epoch + 1
        client.log_metric(run_id, "train/loss", train_loss, step=step)
        client.log_metric(run_id, "dev/loss", dev_loss, step=step)
        client.log_metric(run_id, "epoch", epoch, step=step)
        client.log_metric(run_id, "lr", (lr or [0.01] * len(train))[epoch], step=step)
    client.log_metric(run_id, "best/train/error", train[-1] / 10, step=0)
    client.log_metric(run_id, "best/dev/error", dev[-1] / 10, step=0)
    for layer, ratios in (update_ratios or {}).items():
        for i, ratio in enumerate(ratios):
            client.log_metric(run_id, diag_key("update", layer, "update_ratio"), ratio, step=2 * i)
    client.set_terminated(run_id, "FINISHED")
    return run_id


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> tuple[CachedReader, dict[str, str]]:
    """Experiment "lr": three runs on moons that differ in optim.lr (one named with markup, one without update
    ratios), a run on circles and a gradient check (no errors). Experiment "dropout": keep_prob 1, 0.8, 0.5,
    the last also with another learning rate."""
    folder: Path = tmp_path_factory.mktemp("training-pages")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    client = client_for(uri)
    lr_experiment = client.create_experiment("lr", artifact_location=str(folder / "artifacts-lr"))
    runs = {
        "fast": log_run(client, lr_experiment, "fast", {"data.name": "moons", "optim.lr": 0.1},
                        [1.0, 0.5, 0.3], [1.1, 0.7, 0.6], lr=[0.1, 0.05, 0.025],
                        update_ratios={"hidden": [1e-2, 2e-2, 3e-2], "out": [3e-2, 4e-2, 5e-2]}),
        "slow": log_run(client, lr_experiment, MARKUP, {"data.name": "moons", "optim.lr": 0.001},
                        [1.2, 1.1, 1.0], [1.2, 1.15, 1.1], lr=[0.001] * 3,
                        update_ratios={"hidden": [1e-4, 1e-4, 1e-4], "out": [3e-4, 3e-4, 3e-4]}),
        "middle": log_run(client, lr_experiment, "middle", {"data.name": "moons", "optim.lr": 0.01},
                          [1.1, 0.8, 0.6], [1.1, 0.9, 0.8]),
        "circles": log_run(client, lr_experiment, "circles", {"data.name": "circles", "optim.lr": 0.5},
                           [0.9, 0.8, 0.7], [0.9, 0.85, 0.8]),
    }
    check = client.create_run(lr_experiment, run_name="gradcheck").info.run_id
    client.log_param(check, "data.name", "moons")
    client.log_param(check, "optim.lr", "0.3")
    client.set_terminated(check, "FINISHED")
    runs["check"] = check

    dropout = client.create_experiment("dropout", artifact_location=str(folder / "artifacts-dropout"))
    for name, keep_prob, lr, train, dev in (("keep-1", 1.0, 0.01, 0.1, 3.0), ("keep-0.5", 0.5, 0.02, 2.5, 3.2),
                                            ("keep-0.8", 0.8, 0.01, 1.0, 2.0)):
        runs[name] = log_run(client, dropout, name, {"data.name": "moons", "model.keep_prob": keep_prob,
                                                     "optim.lr": lr}, [train], [dev])
    return CachedReader(uri), runs


def test_optimization_page_overlays_the_runs_on_one_data_set_grouped_by_learning_rate(store) -> None:
    reader, runs = store
    controls = collect(optimization.controls(reader, run_id=runs["middle"]))
    names = {c.id["name"]: c for c in controls["controls"]}
    assert [o["value"] for o in names["color_by"].options] == ["optim.lr", "run"]
    assert names["color_by"].value == "optim.lr"
    assert names["smoothing"].min == 0 and names["smoothing"].max < 1
    assert f"/regularization/{runs['middle']}" in controls["hrefs"]

    found = collect(optimization.content(reader, {"run_id": runs["middle"]}, {"color_by": "optim.lr",
                                                                              "smoothing": 0}))
    losses = figure_with(found, "loss")
    train = [t for t in losses.data if t.line.dash == "solid"]
    # the circles run and the gradient check are left out; the legend lists the rates in order
    assert [t.meta for t in train] == [runs["slow"], runs["middle"], runs["fast"]]
    assert [t.name for t in losses.data if t.showlegend] == ["optim.lr = 0.001", "optim.lr = 0.01", "optim.lr = 0.1"]
    np.testing.assert_allclose(train[2].x, [1, 2, 3])  # epochs counted from 1
    np.testing.assert_allclose(train[2].y, [1.0, 0.5, 0.3])  # smoothing 0: raw
    # the name as text Plotly shows literally (it reads <a>, <b>, <span> in hover text)
    assert train[0].text[0] == f"optim.lr = 0.001 ({html.escape(MARKUP, quote=False)}) (train/loss)"

    rates = figure_with(found, "learning rate")
    assert rates.layout.yaxis.type == "log"
    np.testing.assert_allclose(rates.data[2].y, [0.1, 0.05, 0.025])
    np.testing.assert_array_equal(rates.data[2].x, [1, 3, 5])

    ratios = figure_with(found, "||dW||")
    assert ratios.layout.yaxis.type == "log"
    by_run = {t.meta: t for t in ratios.data}
    np.testing.assert_allclose(by_run[runs["fast"]].y, [2e-2, 3e-2, 4e-2])  # median of two layers
    np.testing.assert_allclose(by_run[runs["slow"]].y, [2e-4, 2e-4, 2e-4])
    assert runs["middle"] not in by_run
    notice = next(t for t in found["text"] if "no update-to-weight ratio" in t)
    assert "1 of 3 runs" in notice and "middle" in notice and "diagnostics.preset=default" in notice


def test_optimization_smoothing_and_color_by_each_run(store) -> None:
    reader, runs = store
    found = collect(optimization.content(reader, {"run_id": runs["fast"]}, {"color_by": "run", "smoothing": 0.5}))
    losses = figure_with(found, "loss")
    fast = next(t for t in losses.data if t.meta == runs["fast"] and t.line.dash == "solid")
    # bias-corrected EMA with beta 0.5: 1.0, (0.25 + 0.5*... ) / (1 - 0.25) ...
    expected = [1.0, (0.25 * 1.0 + 0.5 * 0.5) / 0.75, (0.125 * 1.0 + 0.25 * 0.5 + 0.5 * 0.3) / 0.875]
    np.testing.assert_allclose(fast.y, expected)
    assert len([t for t in losses.data if t.showlegend]) == 3  # one legend entry per run
    assert "beta = 0.5" in found["all_text"]
    # a value that is not a setting falls back to the first one
    found = collect(optimization.content(reader, {"run_id": runs["fast"]}, {"color_by": "bogus"}))
    assert "the legend groups them by optim.lr" in found["all_text"]


def test_regularization_page_of_runs_that_varied_no_regularizer_says_what_they_varied(store) -> None:
    reader, runs = store
    controls = collect(regularization.controls(reader, run_id=runs["fast"]))
    assert controls["controls"] == []
    found = collect(regularization.content(reader, {"run_id": runs["fast"]}, {}))
    assert "varied no regularizer; they varied: optim.lr." in found["all_text"]
    assert found["figures"] == []


def test_regularization_page_of_keep_prob_runs_reads_from_no_dropout_to_strong_dropout(store) -> None:
    reader, runs = store
    controls = collect(regularization.controls(reader, run_id=runs["keep-1"]))
    (setting,) = controls["controls"]
    assert setting.id["name"] == "setting" and [o["value"] for o in setting.options] == ["model.keep_prob"]

    found = collect(regularization.content(reader, {"run_id": runs["keep-1"]}, {"setting": "reg.l2"}))
    errors = figure_with(found, "error")
    np.testing.assert_allclose(errors.data[0].x, [1.0, 0.8, 0.5])
    np.testing.assert_allclose(errors.data[0].y, [0.01, 0.1, 0.25])
    assert errors.layout.xaxis.autorange == "reversed"
    gap = figure_with(found, "variance")
    np.testing.assert_allclose(gap.data[0].y, [0.29, 0.1, 0.07])
    text = found["all_text"]
    assert "model.keep_prob = 0.8 gives the lowest dev error, 20.0%" in text
    assert "Confounded: besides model.keep_prob the runs also differ in optim.lr" in text
    assert f"/run/{runs['keep-0.8']}" in found["hrefs"]
    # no diagnostics recorded: the weight figures say so instead of failing
    notes = [a.text for f in found["figures"] if not f.data for a in f.layout.annotations]
    assert any("diagnostics were off" in note for note in notes)
    assert any("no weight histograms" in note for note in notes)


def test_bad_run_ids_raise_data_errors(store) -> None:
    reader, _ = store
    for page in (regularization, optimization, gradcheck):
        with pytest.raises(DataError):
            page.content(reader, {"run_id": "0" * 32}, {})
        with pytest.raises(DataError):
            page.controls(reader, run_id="../etc")


def test_gradcheck_page_of_a_run_without_a_report(store) -> None:
    reader, runs = store
    found = collect(gradcheck.content(reader, {"run_id": runs["fast"]}, {}))
    assert found["all_text"] == (f"run {runs['fast']} has no gradient check; run `fitlens gradcheck` "
                                 "to make one")


def test_optimization_page_of_many_runs_overlays_a_spread_of_them(tmp_path: Path) -> None:
    """35 runs that differ in the learning rate: 30 are drawn, from the smallest rate to the largest, evenly
    spaced, and the page says so; each run's near-zero fraction is the mean over its layers' latest."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = client_for(uri)
    experiment = client.create_experiment("many", artifact_location=str(tmp_path / "artifacts"))
    rates = [round(10 ** (-4 + 3 * i / 34), 8) for i in range(35)]
    ids = []
    for i, lr in enumerate(rates):
        run_id = client.create_run(experiment, run_name=f"lr-{i:02d}").info.run_id
        metrics = [Metric(key, value, 0, step) for step in (1, 3) for key, value in
                   (("train/loss", 1.0 / step), ("dev/loss", 1.2 / step), ("dev/error", 0.5 / step),
                    ("epoch", (step - 1) / 2), ("lr", lr))]
        metrics += [Metric(diag_key("weight", layer, "frac_small"), value, 0, step)
                    for step, values in ((0, (0.5, 0.5)), (4, (0.1 * (i % 3), 0.3))) for layer, value in
                    zip(("hidden", "out"), values, strict=True)]
        client.log_batch(run_id, metrics=metrics, params=[Param("data.name", "moons"), Param("optim.lr", str(lr))])
        client.set_terminated(run_id, "FINISHED")
        ids.append(run_id)
    reader = CachedReader(uri)
    frame = runs_frame(reader.client.search_runs([experiment]))
    np.testing.assert_allclose(frame.set_index("run_id").loc[ids, "frac_small"],
                               [(0.1 * (i % 3) + 0.3) / 2 for i in range(35)])

    found = collect(optimization.content(reader, {"run_id": ids[0]}, {"color_by": "optim.lr"}))
    losses = figure_with(found, "loss")
    drawn = list(dict.fromkeys(t.meta for t in losses.data))
    assert drawn == [ids[i] for i in np.linspace(0, 34, 30).round().astype(int)]
    assert "35 runs, the runs of run lr-00's experiment on data set moons" in found["all_text"]
    assert "30 of 35 runs shown, spread evenly from the smallest to the largest optim.lr" in found["all_text"]
    assert len({t.meta for t in figure_with(found, "learning rate").data}) == 30
    each = collect(optimization.content(reader, {"run_id": ids[0]}, {"color_by": "run"}))
    assert "30 of 35 runs shown, spread evenly in the legend's order." in each["all_text"]


# --- the overfit sweep: reg.l2 0 vs 30 --------------------------------------------------------------------------

def test_regularization_page_of_the_overfit_sweep(overfit_sweep) -> None:
    _, summary = overfit_sweep
    reader = CachedReader(summary["tracking_uri"])
    parent = summary["parent_run_id"]
    controls = collect(regularization.controls(reader, run_id=parent))
    (setting,) = controls["controls"]
    assert [o["value"] for o in setting.options] == ["reg.l2"]
    assert f"/sweep/{parent}" in controls["hrefs"]

    found = collect(regularization.content(reader, {"run_id": parent}, {"setting": "reg.l2"}))
    text = found["all_text"]
    assert "reg.l2: 2 runs" in text
    assert "reg.l2 = 0 (no regularization) is drawn at 3" in text
    assert "Confounded" not in text and "other hyperparameters varied" not in text

    errors = figure_with(found, "error")
    assert errors.layout.xaxis.type == "log"
    np.testing.assert_allclose(errors.data[0].x, [3.0, 30.0])
    assert list(errors.layout.xaxis.ticktext) == ["0", "30"]
    gap = figure_with(found, "variance").data[0].y
    assert gap[1] < gap[0]  # L2 closes the gap of a net that memorized its training set
    norm = figure_with(found, "weight norm").data[0].y
    assert norm[1] < norm[0]
    # the near-zero fraction at each trial's last snapshot, mean over layers (from the runs' own latest values)
    near_zero = figure_with(found, "|w| <").data[0].y
    trials = reader.trials_frame(parent).sort_values("reg.l2")
    expected = []
    for trial_id in trials["run_id"]:
        diag = reader.diagnostics(trial_id, ("frac_small",))
        weight = diag[diag["kind"] == "weight"]
        expected.append(weight[weight["step"] == weight["step"].max()]["value"].mean())
    np.testing.assert_allclose(near_zero, expected)
    assert all(0 <= f <= 1 for f in near_zero)

    distributions = figure_with(found, "fraction of the weights")
    assert [t.name.split(" (")[0] for t in distributions.data] == ["reg.l2 = 0", "reg.l2 = 30"]
    spreads = []
    for trace in distributions.data:
        x, p = np.asarray(trace.x), np.asarray(trace.y)
        assert p.sum() == pytest.approx(1.0)
        spreads.append(math.sqrt(float((p * x**2).sum() - (p * x).sum() ** 2)))
    assert spreads[1] < spreads[0]  # the L2 trial's weights are narrower

    # a trial's page compares the same runs (its sweep's trials)
    trial = collect(regularization.content(reader, {"run_id": summary["trial_run_ids"][0]}, {}))
    np.testing.assert_allclose(figure_with(trial, "error").data[0].x, [3.0, 30.0])


def test_optimization_page_of_the_overfit_sweep_asks_for_the_default_preset(overfit_sweep) -> None:
    _, summary = overfit_sweep
    reader = CachedReader(summary["tracking_uri"])
    parent = summary["parent_run_id"]
    found = collect(optimization.content(reader, {"run_id": parent}, {}))
    losses = figure_with(found, "loss")
    assert len(losses.data) == 4  # train and dev of two trials
    assert [t.name for t in losses.data if t.showlegend] == ["reg.l2 = 0", "reg.l2 = 30"]
    assert max(losses.data[0].x) == 60  # 60 epochs
    rates = figure_with(found, "learning rate")
    assert all(np.allclose(t.y, 1e-3) for t in rates.data)
    assert "diagnostics.preset=default" in found["all_text"]  # economy records no update kind


# --- a real gradient check --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def gradcheck_run(tmp_path_factory) -> tuple[CachedReader, dict]:
    folder = tmp_path_factory.mktemp("gradcheck")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    code, report, err = fitlens(folder, "gradcheck", "--tracking-uri", uri, "model.depth=1", "model.width=8",
                                "data.name=moons", "--steps", "5")
    assert code == 0, err[-3000:]
    return CachedReader(uri), report


def test_gradcheck_page_shows_each_check_per_tensor(gradcheck_run) -> None:
    reader, report = gradcheck_run
    run_id = report["run_id"]
    controls = collect(gradcheck.controls(reader, run_id=run_id))
    assert f"/run/{run_id}" in controls["hrefs"]

    found = collect(gradcheck.content(reader, {"run_id": run_id}, {}))
    text = found["text"]
    assert report["verdict"] in text
    assert f"{report['relative_difference']:.1e}" in text
    assert "Check at initialization (step 0)" in text and "Check after 5 steps" in text
    assert len(found["tables"]) == len(report["checks"]) == 2
    assert len(found["figures"]) == 2
    for check, table, figure in zip(report["checks"], found["tables"], found["figures"], strict=True):
        names = [row["name"] for row in check["per_tensor"]]
        assert [row["name"] for row in table.data] == names
        assert [row["verdict"] for row in table.data] == [row["verdict"] for row in check["per_tensor"]]
        assert table.data[0]["relative_difference"] == pytest.approx(check["per_tensor"][0]["relative_difference"])
        assert table.data[0]["shape"] == " x ".join(str(n) for n in check["per_tensor"][0]["shape"])
        bars = figure.data[0]
        assert list(bars.x) == names
        np.testing.assert_allclose(bars.y, [math.log10(row["relative_difference"]) for row in check["per_tensor"]])
        assert sorted(shape.y0 for shape in figure.layout.shapes) == pytest.approx([-7, -5, -3])

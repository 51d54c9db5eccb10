"""The home, sweep and run pages called as functions: against hand-made runs in a fresh store (a diverged run,
a run without metrics, a run in progress, a name carrying markup) and against real sweeps (the overfit sweep
and the init study of conftest.py). Assertions are on the values in the returned component tree."""

from __future__ import annotations

import collections
import math
from pathlib import Path

import numpy as np
import pytest

from dashboard.cache import CachedReader
from dashboard.pages import home, run, sweep
from tests.dashboard.tree import MARKUP, collect
from tracking.layout import DIVERGED_TAG, STOPPED_TAG
from tracking.reader import DataError
from tracking.store import client_for

# --- hand-made runs -------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def store(tmp_path_factory) -> tuple[CachedReader, dict[str, str]]:
    """A fresh embedded store with four lone runs: diverged (NaN loss), no metrics, in progress, markup name."""
    folder: Path = tmp_path_factory.mktemp("pages")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    client = client_for(uri)
    experiment = client.create_experiment("pages", artifact_location=str(folder / "artifacts"))
    runs: dict[str, str] = {}

    diverged = client.create_run(experiment, run_name="diverged").info.run_id
    for step, (loss, error) in enumerate([(2.3, 0.9), (math.nan, math.nan)]):
        client.log_metric(diverged, "train/loss", loss, step=step * 10)
        client.log_metric(diverged, "train/error", error, step=step * 10)
        client.log_metric(diverged, "dev/error", error, step=step * 10)
    client.set_tag(diverged, DIVERGED_TAG, "epoch 1, step 10: train/loss = nan")
    client.set_terminated(diverged, "FINISHED")
    runs["diverged"] = diverged

    empty = client.create_run(experiment, run_name="empty").info.run_id
    client.set_terminated(empty, "FINISHED")
    runs["empty"] = empty

    live = client.create_run(experiment, run_name="live").info.run_id  # never terminated: RUNNING
    for step, (train, dev) in enumerate([(0.8, 0.82), (0.5, 0.6), (0.3, 0.5)]):
        client.log_metric(live, "train/error", train, step=step)
        client.log_metric(live, "dev/error", dev, step=step)
        client.log_metric(live, "train/loss", 2 * train, step=step)
    runs["live"] = live

    marked = client.create_run(experiment, run_name=MARKUP).info.run_id
    client.log_metric(marked, "train/error", 0.01, step=0)
    client.log_metric(marked, "dev/error", 0.11, step=0)
    client.set_tag(marked, STOPPED_TAG, "ASHA stopped it after epoch 2")
    client.set_terminated(marked, "FINISHED")
    runs["marked"] = marked
    return CachedReader(uri), runs


def test_home_lists_lone_runs_with_links_and_verdicts(store) -> None:
    reader, runs = store
    found = collect(home.content(reader, {}, {}))
    for run_id in runs.values():
        assert f"/run/{run_id}" in found["hrefs"]
    assert "Runs outside sweeps (4)" in found["text"] and MARKUP in found["text"]  # the name, as plain text
    assert "high variance" in found["text"]  # 1% / 11%: the course's high-variance case
    assert "1.0%" in found["text"] and "11.0%" in found["text"]
    assert collect(home.controls(reader))["text"] == [home.TITLE]


def test_home_of_an_empty_store_says_how_to_make_runs(tmp_path: Path) -> None:
    found = collect(home.content(CachedReader(f"sqlite:///{tmp_path / 'mlflow.db'}"), {}, {}))
    assert "has no runs yet" in found["all_text"]
    assert "make demo\n.venv/bin/fitlens sweep --study init" in found["text"]


def test_run_page_of_a_diverged_run_shows_notices_not_errors(store) -> None:
    reader, runs = store
    found = collect(run.content(reader, {"run_id": runs["diverged"]}, {"smoothing": 0.5}))
    text = found["all_text"]
    assert "train/loss is not finite (NaN or infinite) from step 10 on" in text
    assert "the run diverged: epoch 1, step 10: train/loss = nan" in text
    assert "no bias/variance verdict" in text
    assert "this view failed" not in text
    (curves, ) = found["figures"]
    smoothed = next(t for t in curves.data if t.name == "train/loss")
    assert smoothed.y[0] == pytest.approx(2.3) and math.isnan(smoothed.y[1])
    assert f"/layers/{runs['diverged']}" in found["hrefs"]
    assert not any(h.startswith("/gradcheck/") for h in found["hrefs"])  # it has no gradient check


def test_run_page_of_a_run_without_metrics(store) -> None:
    reader, runs = store
    found = collect(run.content(reader, {"run_id": runs["empty"]}, {}))
    assert "recorded no train or dev loss or error" in found["all_text"]
    assert "no train/dev loss or error recorded yet" in found["figures"][0].layout.annotations[0].text
    assert "no bias/variance verdict" in found["all_text"]


def test_run_page_of_a_run_in_progress_shows_its_curves_so_far(store) -> None:
    reader, runs = store
    found = collect(run.content(reader, {"run_id": runs["live"]}, {"smoothing": 0.0}))
    assert "the run is in progress" in found["all_text"] and "status RUNNING" in found["all_text"]
    (curves, ) = found["figures"]
    dev = next(t for t in curves.data if t.name == "dev/error")
    np.testing.assert_allclose(dev.y, [0.82, 0.6, 0.5])  # beta 0: the raw values
    assert "train 30.0%, dev 50.0%" in found["all_text"]


def test_run_page_controls_and_the_bias_variance_panel(store) -> None:
    reader, runs = store
    (slider,) = collect(run.controls(reader, run_id=runs["marked"]))["controls"]
    assert slider.id == {"type": "control", "name": "smoothing"} and slider.value == 0.6
    assert (slider.min, slider.max) == (0.0, 0.99)
    page = run.content(reader, {"run_id": runs["marked"]}, {})
    found = collect(page)
    text = found["all_text"]
    assert "high variance" in text and "variance (dev - train)" in text and "10.0 points" in text
    assert "stopped early by the sweep's scheduler: ASHA stopped it after epoch 2" in text
    # the recipe for high variance, in its order, in the bias/variance section
    (panel,) = [c for c in page._traverse() if getattr(c, "className", None) == "section"
                and c.children[0].children == "Bias and variance"]
    recipe = [t for t in collect(panel)["text"]
              if t.startswith(("Get more training data", "Regularize", "Try another"))]
    assert [r.split()[0] for r in recipe] == ["Get", "Regularize:", "Try"]


def test_bad_run_ids_and_a_lone_run_on_the_sweep_page_raise_data_errors(store) -> None:
    reader, runs = store
    with pytest.raises(DataError, match="is not a run id"):
        run.content(reader, {"run_id": "../../etc/passwd"}, {})
    with pytest.raises(DataError, match="no such run"):
        run.controls(reader, run_id="0" * 32)
    with pytest.raises(DataError, match="is not a sweep's parent run"):
        sweep.content(reader, {"run_id": runs["empty"]}, {})


def test_markdown_of_run_names_is_escaped() -> None:
    escaped = sweep.markdown_text(MARKUP)
    assert "<" not in escaped.replace("\\<", "") and "](" not in escaped
    assert escaped.replace("\\", "") == MARKUP


# --- real sweeps ----------------------------------------------------------------------------------------------

def test_sweep_page_of_the_overfit_sweep(overfit_sweep) -> None:
    _, summary = overfit_sweep
    reader = CachedReader(summary["tracking_uri"])
    parent = summary["parent_run_id"]
    trials = reader.trials_frame(parent)

    controls = collect(sweep.controls(reader, run_id=parent))
    (color_by,) = controls["controls"]
    assert color_by.id["name"] == "color_by" and [o["value"] for o in color_by.options] == ["reg.l2"]
    assert f"/regularization/{parent}" in controls["hrefs"] and f"/optimization/{parent}" in controls["hrefs"]

    found = collect(sweep.content(reader, {"run_id": parent}, {"color_by": "reg.l2"}))
    (table,) = found["tables"]
    assert sorted(row["reg.l2"] for row in table.data) == [0.0, 30.0]
    for run_id in summary["trial_run_ids"]:
        assert any(row["trial"].endswith(f"(/run/{run_id})") for row in table.data)
        assert any(row["layers"] == f"[layers](/layers/{run_id})" for row in table.data)
    assert table.filter_action == "native" and table.sort_action == "native"
    by_id = {row["layers"][len("[layers](/layers/"):-1]: row for row in table.data}
    for trial in trials.to_dict("records"):
        row = by_id[trial["run_id"]]
        assert row["train error"] == pytest.approx(trial["train_error"])
        assert row["avoidable bias"] == pytest.approx(trial["train_error"] - trial["reference_error"])
        assert row["variance"] == pytest.approx(trial["dev_error"] - trial["train_error"])

    parcoords = next(f for f in found["figures"] if f.layout.xaxis.ticktext)
    assert list(parcoords.layout.xaxis.ticktext) == ["reg.l2", "dev error"]
    scatter = next(f for f in found["figures"] if f.data and f.data[0].type == "scatter"
                   and f.layout.xaxis.title.text == "reg.l2")
    assert sorted(scatter.data[0].x) == [0.0, 30.0]
    bias_variance = next(f for f in found["figures"] if f.data and f.data[0].type == "scatter"
                         and "avoidable bias" in (f.layout.xaxis.title.text or ""))
    assert bias_variance.data[0].marker.colorbar.title.text == "reg.l2"
    expected = sorted(trials["train_error"] - trials["reference_error"])
    np.testing.assert_allclose(sorted(bias_variance.data[0].x), expected)
    assert f".venv/bin/fitlens sweep refine {parent} --top 3" in found["text"]
    assert "caveat:" in found["all_text"]  # 2 trials cannot rank anything


def test_run_page_of_an_overfit_trial_points_at_the_trial_that_regularized(overfit_sweep) -> None:
    _, summary = overfit_sweep
    reader = CachedReader(summary["tracking_uri"])
    trials = reader.trials_frame(summary["parent_run_id"]).set_index("reg.l2")
    plain, regularized = trials.loc[0.0, "run_id"], trials.loc[30.0, "run_id"]
    found = collect(run.content(reader, {"run_id": plain}, {"smoothing": 0.6}))
    assert f"/sweep/{summary['parent_run_id']}" in found["hrefs"]
    text = found["all_text"]
    if "high variance" in text:  # 60 epochs on ~120 examples: it memorizes them
        assert f"/run/{regularized}" in found["hrefs"]
        assert any(t.startswith("reg.l2 0.0 -> 30.0") for t in found["text"])
    curves = found["figures"][0]
    assert {t.name for t in curves.data} >= {"train/loss", "dev/loss", "train/error", "dev/error"}


def test_sweep_and_run_pages_of_the_init_study(init_study) -> None:
    _, summary = init_study
    reader = CachedReader(summary["tracking_uri"])
    parent = summary["parent_run_id"]
    found = collect(sweep.content(reader, {"run_id": parent}, {"color_by": "model.activation"}))
    (table,) = found["tables"]
    assert len(table.data) == 10
    assert {row["model.init"] for row in table.data} == {"zeros", "normal", "xavier", "he"}
    zeros = [row for row in table.data if row["model.init"] == "zeros"]
    assert all("identical_units" in row["flags"] for row in zeros)
    parcoords = next(f for f in found["figures"] if f.layout.xaxis.ticktext)
    labels = list(parcoords.layout.xaxis.ticktext)
    assert {"model.init", "model.activation"} <= set(labels) and labels[-1] == "dev error"
    importance = next(f for f in found["figures"] if f.data and f.data[0].type == "bar")
    assert set(importance.data[0].y) >= {"model.init", "model.activation"}
    bias_variance = next(f for f in found["figures"] if f.data and f.data[0].name
                         and f.data[0].name.startswith("model.activation = "))
    assert [t.name for t in bias_variance.data] == ["model.activation = relu", "model.activation = tanh"]

    trials = reader.trials_frame(parent)
    zero_run = trials[trials["model.init"] == "zeros"]["run_id"].iloc[0]
    page = run.content(reader, {"run_id": zero_run}, {})
    found = collect(page)
    assert "identical_units" in found["text"]
    assert f"/layers/{zero_run}" in found["hrefs"] and f"/sweep/{parent}" in found["hrefs"]
    # the diagnosis opens the page, cause first: identical units, and a random init to fix them
    sections = [c for c in page._traverse() if getattr(c, "className", None) == "section"]
    assert sections[0].children[0].children == "Diagnosis"
    first = next(c for c in sections[0]._traverse() if getattr(c, "className", None) == "finding")
    text = " ".join(str(t) for t in collect(first)["text"])
    assert first.to_plotly_json()["props"]["data-cause"] == "symmetry" and "model.init" in text
    # each piece of evidence at a layer and step links to the layers view there
    links = [h for h in collect(first)["hrefs"] if h.startswith(f"/layers/{zero_run}?")]
    assert links and all("at=" in h or "layer=" in h for h in links)
    assert zeros[0]["cause"] == "symmetry"  # the sweep table's column
    # the recipe below waits for the symmetry to be fixed; the best trial's recipe does not
    assert any(str(t).startswith("First fix what the diagnosis names (identical units") for t in found["text"])
    best = collect(run.content(reader, {"run_id": summary["best_run_id"]}, {}))
    assert not any(str(t).startswith("First fix") for t in best["text"])
    # the home page counts the sweep's primary causes, from the report the finished sweep kept
    counted = collections.Counter(row["cause"] for row in table.data)
    home_page = collect(home.content(reader, {}, {}))
    (cell,) = [str(t) for t in home_page["text"] if "symmetry " in str(t)]
    assert sorted(cell.split(", ")) == sorted(f"{cause.replace('_', ' ')} {n}" for cause, n in counted.items())
    assert counted["symmetry"] == len(zeros)

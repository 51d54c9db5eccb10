"""`fitlens report` and `fitlens diagnose` end to end, on real tiny runs and sweeps recorded in a real embedded
store (and a real local Ray cluster for the sweeps), run as a user runs them."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from analysis.gather import KEPT_VERSION, gather_sweep_report, kept_part
from dashboard.cache import CachedReader
from tests.commands import FITLENS, env, fitlens
from tracking.layout import KEPT_FILE
from tracking.reader import finished_file, runs_frame, search_trial_runs
from tracking.store import client_for

MNIST1D_REFERENCE = 0.04


@pytest.fixture(scope="module")
def logistic_regression(tmp_path_factory) -> tuple[Path, dict]:
    """A logistic regression (depth 0) on MNIST-1D: a linear model cannot fit it (the paper: ~32% accuracy)."""
    folder = tmp_path_factory.mktemp("logreg")
    code, summary, err = fitlens(folder, "train", "model.depth=0", "train.max_epochs=10", "train.threads=1",
                                 "diagnostics.preset=economy")
    assert code == 0, err[-3000:]
    return folder, summary


def test_a_logistic_regression_on_mnist1d_has_high_bias(logistic_regression) -> None:
    folder, summary = logistic_regression
    code, report, err = fitlens(folder, "report", summary["run_id"])
    assert code == 0, err[-3000:]
    assert report["kind"] == "run" and report["reference_error"] == MNIST1D_REFERENCE
    assert report["train_error"] == pytest.approx(summary["train/error"])
    assert report["avoidable_bias"] == pytest.approx(summary["train/error"] - MNIST1D_REFERENCE)
    assert report["variance"] == pytest.approx(summary["dev/error"] - summary["train/error"])
    assert report["avoidable_bias"] > 0.4  # the paper's ~68% error against 4%
    assert report["verdict"] == "high_bias"
    assert [r["action"] for r in report["recommendations"]][:2] == ["bigger_network", "train_longer"]
    assert report["flags"] == []  # a healthy fit, only an underpowered one


def test_report_prints_text_and_refuses_an_unknown_run(logistic_regression) -> None:
    folder, summary = logistic_regression
    text = subprocess.run([FITLENS, "report", summary["run_id"]], cwd=folder, env=env(), capture_output=True,
                          text=True, timeout=300)
    assert text.returncode == 0, text.stderr[-3000:]
    assert f"run {summary['run_id']}" in text.stdout
    assert "verdict: high_bias: train " in text.stdout and "1. [high_bias] Train a bigger network" in text.stdout
    missing = subprocess.run([FITLENS, "report", "0123abcd"], cwd=folder, env=env(), capture_output=True,
                             text=True, timeout=300)
    assert missing.returncode == 2
    assert "RUN_ID = '0123abcd': no such run in sqlite:///" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_diagnose_reads_raw_numbers_as_fractions_or_percentages(tmp_path) -> None:
    code, report, _ = fitlens(tmp_path, "diagnose", "--train-error", "15%", "--dev-error", "0.16",
                              "--reference-error", "15%")
    assert code == 0
    assert report["verdict"] == "good_fit" and report["recommendations"] == [] and report["flags"] == []
    assert report["avoidable_bias"] == pytest.approx(0.0) and report["variance"] == pytest.approx(0.01)
    bad = subprocess.run([FITLENS, "diagnose", "--train-error", "15", "--dev-error", "0.2"], cwd=tmp_path,
                         env=env(), capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2
    assert "--train-error = '15' is not allowed; it must be an error rate in [0, 1] (0.15) or a percentage" \
        in bad.stderr


def test_the_overfit_trial_has_high_variance_and_is_pointed_at_the_regularized_trial(overfit_sweep) -> None:
    folder, summary = overfit_sweep
    code, sweep_report, err = fitlens(folder, "report", summary["parent_run_id"])
    assert code == 0, err[-3000:]
    by_l2 = {t["point"]["reg.l2"]: t for t in sweep_report["trials"]}
    plain, regularized = by_l2[0.0], by_l2[30.0]
    code, report, err = fitlens(folder, "report", plain["run_id"])
    assert code == 0, err[-3000:]
    assert report["reference_error"] == pytest.approx(0.1)  # teacher-student: the label-noise rate
    assert report["train_error"] < 0.02 and report["verdict"] == "high_variance"
    assert report["variance"] > 0.25
    regularization = next(r for r in report["recommendations"] if r["action"] == "regularization")
    [evidence] = regularization["evidence"]
    assert evidence["run_id"] == regularized["run_id"]
    assert evidence["tried"] == [{"setting": "reg.l2", "from": 0.0, "to": 30.0}]
    assert evidence["also_changed"] == []
    assert evidence["variance"] == pytest.approx([report["variance"], regularized["variance"]])
    assert regularized["variance"] < report["variance"]  # the L2 term narrowed the gap
    # the sweep's own report: the curve over lambda, and too few trials to rank hyperparameters
    [curve] = sweep_report["regularization_curves"]
    assert curve["setting"] == "reg.l2" and [p["value"] for p in curve["points"]] == [0.0, 30.0]
    assert [p["gap"] for p in curve["points"]] == pytest.approx([plain["variance"], regularized["variance"]])
    assert curve["points"][1]["weight_norm"] < curve["points"][0]["weight_norm"]  # weight decay shrank W
    assert sweep_report["importance"]["n_trials"] == 2 and "only 2 trials" in sweep_report["importance"]["caveat"]
    assert sweep_report["refined_space"] == {"reg.l2": {"grid": [0.0, 30.0]}}


INIT_FLAGS = ("vanishing_gradients", "exploding_gradients", "saturated_units", "identical_units",
              "activations_collapsing", "activations_exploding", "dead_units")


def test_report_on_the_init_study_flags_the_bad_initializations_only(init_study) -> None:
    folder, summary = init_study
    code, report, err = fitlens(folder, "report", summary["parent_run_id"])
    assert code == 0, err[-3000:]
    flags = {}
    for trial in report["trials"]:
        model = trial["point"]["model"]
        name = f"{model['init']}{model.get('init_std', '')}-{trial['point']['model.activation']}"
        flags[name] = {f["name"] for f in trial["flags"]} & set(INIT_FLAGS)
    assert len(flags) == 10
    for activation in ("tanh", "relu"):
        assert {"identical_units", "vanishing_gradients"} <= flags[f"zeros-{activation}"]
        assert {"vanishing_gradients", "activations_collapsing"} <= flags[f"normal0.01-{activation}"]
    assert "saturated_units" in flags["normal1.0-tanh"]
    assert {"exploding_gradients", "activations_exploding"} <= flags["normal1.0-relu"]
    assert "activations_collapsing" in flags["xavier-relu"]  # Xavier halves the variance per ReLU layer
    assert flags["xavier-tanh"] == set() and flags["he-relu"] == set()
    zeros = next(t for t in report["trials"] if t["point"]["model"]["init"] == "zeros")
    identical = next(f for f in zeros["flags"] if f["name"] == "identical_units")
    assert identical["step"] == 0 and identical["severity"] == "error"  # from the start, never broken
    assert set(identical["values"].values()) == {1.0}
    # the diagnosis: each zero-initialized trial is told first that its units are identical, and to init at random
    for trial in report["trials"]:
        if trial["point"]["model"]["init"] == "zeros":
            first = trial["findings"][0]
            assert (trial["primary_cause"], first["cause"], first["severity"]) == ("symmetry", "symmetry", "error")
            assert first["actions"][0]["setting"] == "model.init" and first["actions"][0]["to"] in ("he", "xavier")
            assert "bigger" not in first["summary"]
            recipe = [f for f in trial["findings"] if f["cause"] == "high_bias"]
            assert all(f["severity"] == "info" for f in recipe)  # the recipe waits for a network that can learn


@pytest.fixture(scope="module")
def overregularized_sweep(tmp_path_factory) -> tuple[Path, dict]:
    """The default MLP on MNIST-1D for 6 epochs with L2 of 0 and 300: the second cannot fit its training set."""
    folder = tmp_path_factory.mktemp("overregularized")
    sweep = {"name": "overreg", "base": {"train": {"max_epochs": 6, "early_stopping": False, "threads": 1},
                                         "diagnostics": {"preset": "economy"}},
             "space": {"reg.l2": {"grid": [0.0, 300.0]}}, "search": "grid", "num_samples": 1, "max_concurrent": 2}
    (folder / "overreg.yaml").write_text(__import__("yaml").safe_dump(sweep))
    code, summary, err = fitlens(folder, "sweep", "--config", "overreg.yaml")
    assert code == 0, err[-3000:]
    return folder, summary


def test_the_over_regularized_trial_is_told_to_regularize_less_and_shown_the_trial_that_did(
        overregularized_sweep) -> None:
    folder, summary = overregularized_sweep
    code, report, err = fitlens(folder, "report", summary["parent_run_id"])
    assert code == 0, err[-3000:]
    strong = next(t for t in report["trials"] if t["point"]["reg.l2"] == 300.0)
    weak = next(t for t in report["trials"] if t["point"]["reg.l2"] == 0.0)
    assert strong["verdict"] in ("high_bias", "high_bias_high_variance") and weak["train_error"] < strong["train_error"]
    first = strong["findings"][0]
    assert (strong["primary_cause"], first["severity"]) == ("over_regularized", "error")
    assert first["actions"][0] == {"setting": "reg.l2", "from": 300.0, "to": 30.0,
                                   "text": "reg.l2: 300 -> 30 (a tenth)"}
    assert [t["run_id"] for t in first["tried"]] == [weak["run_id"]] and first["tried"][0]["value"] == 0.0
    assert "over_regularized" not in {f["cause"] for f in weak["findings"]}
    # the text report says so before the recipe's "bigger network", and the weak trial's recipe is not held back
    texts = {name: subprocess.run([FITLENS, "report", trial["run_id"]], cwd=folder, env=env(),
                                  capture_output=True, text=True, timeout=300).stdout
             for name, trial in (("strong", strong), ("weak", weak))}
    waits = "First fix what the diagnosis names (too much regularization holds the training error up)"
    assert texts["strong"].index(waits) < texts["strong"].index("1. [high_bias] Train a bigger network")
    assert "First fix" not in texts["weak"]


def test_a_finished_sweep_keeps_the_trials_and_the_report_its_page_shows(overfit_sweep) -> None:
    """`fitlens sweep` keeps the sweep page's trials frame and report with the trials as it finishes: what the page
    would compute from the runs, used only while this version computes it the same way."""
    _, summary = overfit_sweep
    client = client_for(summary["tracking_uri"])
    parent = client.get_run(summary["parent_run_id"])
    reader = CachedReader(summary["tracking_uri"])
    runs = search_trial_runs(client, parent)
    report = reader.kept(parent.info.run_id, "report")
    assert report is not None and report["best_run_id"] in summary["trial_run_ids"]
    computed = gather_sweep_report(client, parent, runs)
    assert json.dumps(report, sort_keys=True) == json.dumps(computed, sort_keys=True)
    assert reader.kept(parent.info.run_id, "trials") is not None
    pd.testing.assert_frame_equal(reader.trials_frame(parent.info.run_id), runs_frame(runs))
    # another version, other thresholds, or a part missing: the reader computes its own
    kept = finished_file(client, parent, KEPT_FILE)
    assert kept_part(kept, "report") == report
    assert kept_part(kept | {"version": KEPT_VERSION + 1}, "report") is None
    assert kept_part(kept | {"thresholds": kept["thresholds"] | {"high_bias": 0.5}}, "report") is None
    assert kept_part(None, "trials") is None and kept_part(kept | {"report": None}, "report") is None


def test_the_sweep_page_and_fitlens_report_list_the_same_findings_for_every_trial(init_study) -> None:
    """One diagnosis everywhere: the findings and flags `fitlens report` prints for each trial are those the sweep
    page's report holds (kept by the finished sweep, and computed by a page that finds nothing kept), and the
    table's cause column is each trial's first finding."""
    from dashboard.pages.sweep import content

    folder, summary = init_study
    code, printed, err = fitlens(folder, "report", summary["parent_run_id"])
    assert code == 0, err[-3000:]
    reader = CachedReader(summary["tracking_uri"])
    parent = reader.run(summary["parent_run_id"])
    kept = reader.kept(summary["parent_run_id"], "report")
    trials = reader.trials_frame(parent.info.run_id)
    fresh = gather_sweep_report(reader.client, parent, reader.trial_runs(parent.info.run_id), trials=trials,
                                evidence=lambda run, _row: reader.evidence(run, trials))  # the page's own path

    def by_trial(report: dict) -> dict:
        return {t["run_id"]: (t["primary_cause"], [(f["cause"], f["severity"]) for f in t["findings"]],
                              sorted(f["name"] for f in t["flags"])) for t in report["trials"]}

    assert by_trial(kept) == by_trial(printed) == by_trial(json.loads(json.dumps(fresh)))
    assert {cause for cause, _, _ in by_trial(printed).values()} >= {"symmetry", "init_too_small", "init_too_large"}
    table = next(c for c in content(reader, {"run_id": parent.info.run_id}, {})._traverse()
                 if getattr(c, "id", None) == "runs-table")
    shown = {row["trial"].rsplit("/run/", 1)[1].rstrip(")"): (row["cause"], row["flags"]) for row in table.data}
    assert shown == {run_id: (str(cause or "").replace("_", " "), ", ".join(sorted(set(flags))))
                     for run_id, (cause, _, flags) in by_trial(printed).items()}

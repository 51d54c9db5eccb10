"""dashboard.cache, the pages' cached view of the one MLflow reader: against the embedded store and a real `mlflow
server` over it, seeded by real sweeps; validation of ids from URLs; downsampling; caching; a corrupt histogram part."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.health import HEALTH_STATS
from dashboard.cache import CachedReader, check_run_id, downsample
from tests.commands import fitlens, free_port, start_server
from tracking.reader import DataError, diagnostics_frame


def test_run_ids_from_urls_are_validated() -> None:
    assert check_run_id("0123456789abcdef0123456789abcdef") == "0123456789abcdef0123456789abcdef"
    for bad in ("../../etc/passwd", "%2e%2e%2f", "/abs/path", "..\\..\\x", "<script>", "0123", "", "A" * 32):
        with pytest.raises(DataError, match="is not a run id"):
            check_run_id(bad)


def test_downsample_keeps_the_ends_and_at_most_max_points_per_key() -> None:
    history = pd.DataFrame({"key": ["a"] * 5000 + ["b"] * 10, "step": list(range(5000)) + list(range(10)),
                            "value": np.arange(5010.0)})
    small = downsample(history, max_points=100)
    a, b = small[small.key == "a"], small[small.key == "b"]
    assert len(a) == 100 and a.step.iloc[0] == 0 and a.step.iloc[-1] == 4999
    assert np.all(np.diff(a.step) > 0)
    assert b.step.tolist() == list(range(10))  # short curves untouched


@pytest.fixture(scope="module")
def mlflow_server(study_store: Path, init_study) -> Iterator[str]:
    """A real `mlflow server` process over the study store's database."""
    port = free_port()
    mlflow = str(Path(sys.executable).parent / "mlflow")
    proc = start_server([mlflow, "server", "--backend-store-uri", f"sqlite:///{study_store / 'mlflow.db'}",
                         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"], port, cwd=study_store)
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture(params=["embedded", "server"])
def reader(request, study_store: Path, init_study) -> CachedReader:
    if request.param == "embedded":
        return CachedReader(f"sqlite:///{study_store / 'mlflow.db'}")
    return CachedReader(request.getfixturevalue("mlflow_server"))


def test_the_reader_gives_sweeps_trials_curves_diagnostics_and_histograms(reader: CachedReader, init_study) -> None:
    _, summary = init_study
    parent = summary["parent_run_id"]
    assert parent in reader.sweeps()["run_id"].tolist()
    trials = reader.trials_frame(parent)
    assert sorted(trials["run_id"]) == sorted(summary["trial_run_ids"])
    assert set(trials["model.activation"]) == {"tanh", "relu"} and (trials["reference_error"] == 0.04).all()
    run_id = summary["trial_run_ids"][0]
    history = reader.history(run_id, ["train/loss", "dev/error", "no/such/key"])
    assert set(history["key"]) == {"train/loss", "dev/error"}
    assert history[history.key == "dev/error"]["step"].is_monotonic_increasing
    diag = reader.diagnostics(run_id, stats=("std",))
    assert set(diag["kind"]) == {"weight", "grad", "act"} and set(diag["stat"]) == {"std"}
    # the pages' statistics come from one fetch of them all: each view's share equals a fetch of its own
    for stats in (HEALTH_STATS, ("p05", "mean", "std"), ("frac_small",)):
        assert reader.diagnostics(run_id, stats).equals(diagnostics_frame(reader.client, reader.run(run_id), stats))
    steps = reader.histogram_steps(run_id)
    assert steps[:4] == [0, 1, 2, 4]  # the economy preset's log-spaced snapshots
    rows, problems = reader.histograms(run_id, [0, 4])
    assert problems == [] and sorted(set(rows["step"])) == [0, 4]
    first = rows.iloc[0]
    assert len(first["edges"]) == len(first["counts"]) + 1
    # a repeated view of a finished run is served from the cache: the very same frame, no query
    assert reader.trials_frame(parent) is trials
    assert reader.history(run_id, ["train/loss", "dev/error"]) is history


def test_unknown_and_malformed_run_ids_are_clear_errors(reader: CachedReader) -> None:
    with pytest.raises(DataError, match="is not a run id"):
        reader.run("../../etc/passwd")
    with pytest.raises(DataError, match="no such run"):
        reader.run("0" * 32)


def test_a_corrupt_histogram_part_is_named_and_the_others_still_load(tmp_path: Path) -> None:
    code, summary, err = fitlens(tmp_path, "train", "data.name=moons", "model.depth=1", "model.width=8",
                                 "train.max_epochs=2", "diagnostics.every=4")
    assert code == 0, err[-3000:]
    reader = CachedReader(f"sqlite:///{tmp_path / 'mlflow.db'}")
    steps = reader.histogram_steps(summary["run_id"])
    assert len(steps) >= 3
    [part] = list((tmp_path / "mlartifacts").rglob(f"hist-{steps[1]:09d}.parquet"))
    part.write_bytes(b"not parquet at all")
    rows, problems = reader.histograms(summary["run_id"])
    assert sorted(set(rows["step"])) == [s for s in steps if s != steps[1]]
    assert problems == [f"histogram part diagnostics/hist-{steps[1]:09d}.parquet of run {summary['run_id']} "
                        f"could not be read (ArrowInvalid)"]


def test_every_page_renders_from_the_embedded_store_and_the_server(reader: CachedReader, init_study) -> None:
    """The pages read only through the CachedReader, so each renders the same from either store."""
    from dashboard.app import render_content, render_controls

    _, summary = init_study
    parent, trial = summary["parent_run_id"], summary["trial_run_ids"][0]
    for path in ("/", f"/sweep/{parent}", f"/run/{trial}", f"/layers/{trial}", f"/regularization/{parent}",
                 f"/optimization/{parent}"):
        for part in (render_controls(reader, path, ""), render_content(reader, path, "", {})):
            text = str(part.to_plotly_json() if hasattr(part, "to_plotly_json") else part)
            assert "this view failed" not in text and "notice-error" not in text, f"{path}: {text[:1500]}"

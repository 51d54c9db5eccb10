"""The content callback's decision, called as a function (`dashboard.app.redraw`) against a real embedded store:
it sends the content only when it differs from what the page shows, so a live refresh of finished runs redraws
nothing in the browser, and a run in progress shows its new points."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from dash import no_update

from dashboard.app import drawn_record, redraw, render_page
from dashboard.cache import CachedReader
from tests.dashboard.tree import collect
from tracking.store import client_for


@pytest.fixture()
def store(tmp_path: Path) -> tuple[str, dict[str, str]]:
    """A finished run with curves, a finished run without metrics, and a run in progress."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = client_for(uri)
    experiment = client.create_experiment("app", artifact_location=str(tmp_path / "artifacts"))
    runs = {}
    for name in ("finished", "empty", "live"):
        runs[name] = client.create_run(experiment, run_name=name).info.run_id
    for step, (train, dev) in enumerate([(0.8, 0.85), (0.4, 0.5), (0.2, 0.35)]):
        for name in ("finished", "live"):
            client.log_metric(runs[name], "train/error", train, step=step)
            client.log_metric(runs[name], "dev/error", dev, step=step)
    client.set_terminated(runs["finished"], "FINISHED")
    client.set_terminated(runs["empty"], "FINISHED")
    return uri, runs


def first_answer(reader: CachedReader, path: str) -> tuple[dict, dict]:
    """What the route callback puts on the page: the controls' values and the drawn record of its content."""
    controls, content, drawn = render_page(reader, path, "")
    values = {c.id["name"]: c.value for c in collect(controls)["controls"]}
    assert drawn == drawn_record(values, content)
    return values, drawn


def test_a_refresh_of_a_finished_run_sends_nothing(store) -> None:
    uri, runs = store
    reader = CachedReader(uri)
    path = f"/run/{runs['finished']}"
    values, drawn = first_answer(reader, path)
    assert values == {"smoothing": 0.6}
    assert len(drawn["digest"]) == 32
    assert redraw(reader, path, "", values, drawn, refresh=True) == (no_update, no_update)
    # a fresh server (nothing cached) renders the same content: the digest is of the content, not of the process
    assert redraw(CachedReader(uri), path, "", values, drawn, refresh=True) == (no_update, no_update)
    # a page that has drawn nothing yet gets the content
    content, record = redraw(reader, path, "", values, None, refresh=True)
    assert record == drawn and "dev 35.0%" in collect(content)["all_text"]


def test_a_refresh_of_a_run_in_progress_sends_its_new_points(store) -> None:
    uri, runs = store
    path = f"/run/{runs['live']}"
    values, drawn = first_answer(CachedReader(uri), path)
    assert redraw(CachedReader(uri), path, "", values, drawn, refresh=True) == (no_update, no_update)
    client_for(uri).log_metric(runs["live"], "dev/error", 0.25, step=3, timestamp=int(time.time() * 1000))
    content, record = redraw(CachedReader(uri), path, "", values, drawn, refresh=True)
    assert record["values"] == values and record["digest"] != drawn["digest"]
    assert "dev 25.0%" in collect(content)["all_text"]
    [figure] = collect(content)["figures"]
    dev = [trace for trace in figure.data if "dev" in trace.name and trace.mode != "markers"]
    assert [list(trace.x) for trace in dev][0][-1] == 3


def test_a_control_change_redraws_only_a_different_content(store) -> None:
    uri, runs = store
    reader = CachedReader(uri)
    path = f"/run/{runs['finished']}"
    values, drawn = first_answer(reader, path)
    # a slider reporting the value the content was drawn with: nothing rendered, nothing sent
    assert redraw(reader, path, "", dict(values), drawn, refresh=False) == (no_update, no_update)
    raw, record = redraw(reader, path, "", {"smoothing": 0.0}, drawn, refresh=False)
    assert record == {"values": {"smoothing": 0.0}, "digest": record["digest"]} != drawn
    [figure] = collect(raw)["figures"]
    dev = next(trace for trace in figure.data if trace.name.startswith("dev"))
    assert list(dev.y) == pytest.approx([0.85, 0.5, 0.35])  # raw: unsmoothed
    # a run without curves looks the same at any smoothing: the new values are kept, nothing is redrawn
    path = f"/run/{runs['empty']}"
    values, drawn = first_answer(reader, path)
    assert redraw(reader, path, "", {"smoothing": 0.9}, drawn, refresh=False) == (
        no_update, {"values": {"smoothing": 0.9}, "digest": drawn["digest"]})

"""tracking.reader, the one MLflow reader, on a real embedded store. A finished sweep's trials file (written by
tracking.writer): what readers get from it equals what a search of the store gets, and a file that no longer
describes the sweep (it was resumed and ended again without writing one, or the file is unreadable) is ignored in
favour of the search; runs made with MlflowClient as `fitlens sweep` lays them out. The embedded store's one query
for many metric keys against MLflow's query per key, on a real sweep."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from tracking.layout import CAUSES_TAG, KIND_TAG, POINT_TAG, SWEEP_TAG, TRIALS_FILE, TRIALS_TAG
from tracking.reader import (
    SQL_KEYS_PER_QUERY,
    _sql_histories,
    _sql_store,
    search_trial_runs,
    sweep_causes,
    trial_runs,
)
from tracking.store import client_for
from tracking.writer import experiment_id, write_trials


@pytest.fixture
def sweep(tmp_path: Path) -> tuple[MlflowClient, str]:
    """A FINISHED parent with three finished trials (one with a NaN dev error), and its trials file."""
    client = client_for(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = experiment_id(client, "store")
    parent = client.create_run(exp, start_time=1000, tags={KIND_TAG: "sweep"}).info.run_id
    for i, dev in enumerate([0.3, 0.1, math.nan]):
        trial = client.create_run(exp, start_time=2000 + i, run_name=f"trial-{i}",
                                  tags={SWEEP_TAG: parent, POINT_TAG: json.dumps({"optim.lr": 10.0 ** -i})})
        client.log_batch(trial.info.run_id, params=[], metrics=[
            Metric("dev/error", dev, 5000, step) for step in (0, 10)] + [Metric("diag/grad/out/norm", 2.0, 5000, 7)])
        client.log_param(trial.info.run_id, "optim.lr", str(10.0 ** -i))
        client.set_terminated(trial.info.run_id, "FINISHED", end_time=9000 + i)
    client.set_terminated(parent, "FINISHED", end_time=10_000)
    finished = client.get_run(parent)
    write_trials(client, finished, search_trial_runs(client, finished))
    return client, parent


def snapshot(runs) -> list[tuple]:
    return [(r.info.run_id, r.info.run_name, r.info.status, r.info.start_time, r.info.end_time, r.data.params,
             r.data.tags, {k: v for k, v in r.data.metrics.items() if not math.isnan(v)},
             sorted(k for k, v in r.data.metrics.items() if math.isnan(v)),
             sorted((m.key, m.step) for m in r.data.to_proto().metrics)) for r in runs]


def test_the_file_holds_what_a_search_finds(sweep) -> None:
    client, parent_id = sweep
    parent = client.get_run(parent_id)
    assert parent.data.tags[TRIALS_TAG] == "10000"
    kept, searched = trial_runs(client, parent), search_trial_runs(client, parent)
    assert [r.info.run_name for r in kept] == ["trial-0", "trial-1", "trial-2"]  # oldest first
    assert snapshot(kept) == snapshot(searched)
    assert sorted(m.step for m in kept[1].data.to_proto().metrics if m.key == "dev/error") == [10]  # the latest
    # read from the file: a tag set on a trial after the sweep ended is not in it (the search has it)
    client.set_tag(kept[0].info.run_id, "later", "yes")
    assert "later" not in trial_runs(client, parent)[0].data.tags
    assert search_trial_runs(client, parent)[0].data.tags["later"] == "yes"


def test_a_file_of_an_earlier_end_is_ignored(sweep) -> None:
    client, parent_id = sweep
    late = client.create_run(client.get_run(parent_id).info.experiment_id, start_time=3000, run_name="late",
                             tags={SWEEP_TAG: parent_id})
    client.set_terminated(late.info.run_id, "FINISHED")
    client.set_terminated(parent_id, "FINISHED", end_time=20_000)  # resumed, ended again, no new file
    names = [r.info.run_name for r in trial_runs(client, client.get_run(parent_id))]
    assert names == ["trial-0", "trial-1", "trial-2", "late"]


def test_a_running_sweep_is_searched(sweep) -> None:
    client, parent_id = sweep
    client.update_run(parent_id, status="RUNNING")
    client.set_tag(parent_id, TRIALS_TAG, str(client.get_run(parent_id).info.end_time))  # even with a matching tag
    client.set_tag(search_trial_runs(client, client.get_run(parent_id))[0].info.run_id, "after", "yes")
    assert trial_runs(client, client.get_run(parent_id))[0].data.tags["after"] == "yes"


def test_an_unreadable_file_is_ignored(sweep, tmp_path: Path) -> None:
    client, parent_id = sweep
    broken = tmp_path / "upload" / TRIALS_FILE
    broken.parent.mkdir()
    broken.write_text('{"version": 1, "runs": [{"info": ')
    client.log_artifact(parent_id, str(broken))
    parent = client.get_run(parent_id)
    assert snapshot(trial_runs(client, parent)) == snapshot(search_trial_runs(client, parent))


def test_one_query_for_many_keys_gives_what_a_query_per_key_gives(init_study) -> None:
    """The embedded store's fast path (one SQL query for a run's keys) against MLflow's get_metric_history."""
    _, summary = init_study
    client = client_for(summary["tracking_uri"])
    run_id = summary["trial_run_ids"][0]
    keys = [*sorted(client.get_run(run_id).data.metrics), "no/such/key"]
    assert len(keys) > 100

    def points(metrics) -> list[tuple]:
        return [(m.key, str(m.value), m.timestamp, m.step) for m in metrics]  # str: NaN equals NaN
    slow = {key: points(client.get_metric_history(run_id, key)) for key in keys}
    for per_query in (SQL_KEYS_PER_QUERY, 7):
        fast = _sql_histories(_sql_store(client), run_id, keys, per_query)
        assert list(fast) == keys and {key: points(found) for key, found in fast.items()} == slow
    assert slow["no/such/key"] == [] and sum(map(len, slow.values())) > 1000


def test_a_sweep_s_cause_counts_hold_while_it_has_the_finish_they_were_kept_with(sweep) -> None:
    """CAUSES_TAG is read with the finish it names: a resumed sweep (RUNNING) or one that ended again without
    keeping its counts has none; a tag that is not JSON is none either."""
    client, parent = sweep
    counts = {"symmetry": 2, "high_bias": 1}
    client.set_tag(parent, CAUSES_TAG, json.dumps({"end_time": 10_000, "counts": counts}))
    assert sweep_causes(client.get_run(parent)) == counts
    client.set_tag(parent, CAUSES_TAG, json.dumps({"end_time": 9_999, "counts": counts}))
    assert sweep_causes(client.get_run(parent)) is None
    client.set_tag(parent, CAUSES_TAG, "not json")
    assert sweep_causes(client.get_run(parent)) is None
    client.set_tag(parent, CAUSES_TAG, json.dumps({"end_time": 10_000, "counts": counts}))
    client.update_run(parent, status="RUNNING")
    assert sweep_causes(client.get_run(parent)) is None

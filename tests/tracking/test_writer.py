"""The MLflow writer: every point stored once, in batches of at most 1000, from a sender process."""

from __future__ import annotations

import math

import pytest
from mlflow.tracking import MlflowClient

from tracking.sender import run_with_retries
from tracking.store import experiment_id
from tracking.writer import RunWriter, metric_batches


@pytest.fixture
def run(tmp_path) -> tuple[MlflowClient, str]:
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    return client, client.create_run(experiment_id(client, "writer")).info.run_id


def test_batches_hold_at_most_1000_points_in_order() -> None:
    points = [(f"k{i % 7}", float(i), 0, i) for i in range(2500)]
    batches = list(metric_batches(points))
    assert [len(b) for b in batches] == [1000, 1000, 500]
    assert [p for b in batches for p in b] == points


def test_every_point_arrives_once(run) -> None:
    client, run_id = run
    writer = RunWriter(client, run_id, flush_every_s=math.inf)
    for step in range(1250):
        writer.log_metrics({"a": step, "b": -step}, step=step)
    writer.close()
    history = client.get_metric_history(run_id, "a")
    assert sorted(m.step for m in history) == list(range(1250))
    assert sorted(m.value for m in client.get_metric_history(run_id, "b")) == sorted(-float(s) for s in range(1250))
    assert writer.failures == []
    assert writer._sender.returncode == 0


def test_retries_until_the_store_answers_and_records_what_never_does() -> None:
    calls: list[int] = []

    def flaky() -> None:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("store away")

    failures: list[str] = []
    run_with_retries(flaky, retry_for_s=10, failures=failures)
    assert (len(calls), failures) == (3, [])

    def down() -> None:
        raise ConnectionError("store away")

    run_with_retries(down, retry_for_s=0.1, failures=failures)
    assert failures == ["ConnectionError: store away"]


def test_params_in_batches_of_100_and_long_values_cut(run) -> None:
    client, run_id = run
    writer = RunWriter(client, run_id)
    writer.log_params({f"p{i}": i for i in range(250)} | {"long": "x" * 7000, "none": None})
    writer.close()
    params = client.get_run(run_id).data.params
    assert len(params) == 252
    assert params["p249"] == "249" and params["none"] == "null"
    assert len(params["long"]) == 6000 and params["long"].endswith("...")


def test_experiment_is_reused_and_embedded_artifacts_sit_beside_the_db(tmp_path) -> None:
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    first = experiment_id(client, "study")
    assert experiment_id(client, "study") == first
    location = client.get_experiment(first).artifact_location
    assert location == (tmp_path / "mlartifacts").as_uri()

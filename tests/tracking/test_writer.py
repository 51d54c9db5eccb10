"""The MLflow writer: every point stored once, sent in batches of at most 1000."""

from __future__ import annotations

import math
import threading

from mlflow.tracking import MlflowClient

from tracking.store import experiment_id
from tracking.writer import RunWriter


def test_points_are_batched_and_all_arrive(tmp_path) -> None:
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    run_id = client.create_run(experiment_id(client, "writer")).info.run_id
    batch_sizes: list[int] = []
    send = client.log_batch

    def counting_log_batch(run_id, metrics=(), **kwargs):
        batch_sizes.append(len(metrics))
        return send(run_id, metrics=metrics, **kwargs)

    client.log_batch = counting_log_batch  # a spy on the real client: the store still receives every call
    writer = RunWriter(client, run_id, flush_every_s=math.inf)
    for step in range(1250):
        writer.log_metrics({"a": step, "b": -step}, step=step)
    writer.flush()
    assert batch_sizes == [1000, 1000, 500]  # full batches leave as they fill, the rest on flush
    history = client.get_metric_history(run_id, "a")
    assert sorted(m.step for m in history) == list(range(1250))
    assert {m.value for m in client.get_metric_history(run_id, "b")} == {-float(s) for s in range(1250)}


def test_sending_happens_off_the_calling_thread_and_survives_a_failing_store(tmp_path) -> None:
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    run_id = client.create_run(experiment_id(client, "writer")).info.run_id
    threads: set[str] = set()
    failures_left = [2]
    send = client.log_batch

    def flaky_log_batch(run_id, metrics=(), **kwargs):
        threads.add(threading.current_thread().name)
        if failures_left[0]:
            failures_left[0] -= 1
            raise ConnectionError("store away")
        return send(run_id, metrics=metrics, **kwargs)

    client.log_batch = flaky_log_batch
    writer = RunWriter(client, run_id, flush_every_s=0.0)
    writer.log_metrics({"loss": 1.5}, step=3)
    writer.close()
    assert threads == {f"fitlens-writer-{run_id[:8]}"}
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "loss")] == [(3, 1.5)]  # once, after retries
    assert writer.failures == []


def test_params_in_batches_of_100_and_long_values_cut(tmp_path) -> None:
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    run_id = client.create_run(experiment_id(client, "writer")).info.run_id
    writer = RunWriter(client, run_id)
    writer.log_params({f"p{i}": i for i in range(250)} | {"long": "x" * 7000, "none": None})
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

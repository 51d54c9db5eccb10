"""The MLflow writer: every point stored once, in batches of at most 1000, from a sender process."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.commands import env
from tracking.sender import run_with_retries
from tracking.writer import RunWriter, experiment_id, metric_batches


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


CONCURRENT_WRITER = """
import sys
from tracking.store import client_for, retrying
from tracking.writer import RunWriter, experiment_id

uri, index, steps, keys = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
client = client_for(uri)
exp = experiment_id(client, "concurrent")
run_id = retrying(client.create_run, exp, run_name=f"writer-{index}").info.run_id
writer = RunWriter(client, run_id, flush_every_s=0.05)
writer.log_params({f"p{i}": i for i in range(150)})
for step in range(steps):
    writer.log_metrics({f"k{k}": index * 1e6 + step * 100 + k for k in range(keys)}, step=step)
writer.close()
retrying(client.set_terminated, run_id, "FINISHED")
assert writer.failures == [], writer.failures
print(run_id)
"""


def write_concurrently(uri: str, writers: int = 8, steps: int = 100, keys: int = 20,
                       symptoms: tuple[str, ...] = ("database is locked",)) -> None:
    """`writers` processes of CONCURRENT_WRITER at once into `uri`: each exits 0 with none of `symptoms` in its
    stderr, and afterwards every run is FINISHED with its 150 params and every point stored exactly once."""
    import subprocess
    import sys

    procs = [subprocess.Popen([sys.executable, "-c", CONCURRENT_WRITER, uri, str(i), str(steps), str(keys)],
                              cwd=Path(__file__).resolve().parents[2], env=env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(writers)]
    outputs = [p.communicate(timeout=600) for p in procs]
    for proc, (_out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
        for symptom in symptoms:
            assert symptom not in err.lower(), err
    client = MlflowClient(uri)
    runs = client.search_runs([experiment_id(client, "concurrent")], max_results=100)
    assert len(runs) == writers
    for run in runs:
        index = int(run.info.run_name.split("-")[1])
        assert run.info.status == "FINISHED" and len(run.data.params) == 150
        for k in range(keys):
            history = client.get_metric_history(run.info.run_id, f"k{k}")
            assert sorted(m.step for m in history) == list(range(steps))  # each step once, none missing
            assert sorted(m.value for m in history) == [index * 1e6 + s * 100 + k for s in range(steps)]


def test_concurrent_writers_to_the_embedded_store_lose_no_points(tmp_path) -> None:
    """8 processes (as 8 trials of a sweep, or 8 `fitlens train` at once) open one new SQLite store and write
    to it at once: the store's tables are created once, every point is stored exactly once, and no
    'database is locked' reaches any of them."""
    write_concurrently(f"sqlite:///{tmp_path / 'mlflow.db'}")


def test_a_resumed_writer_skips_the_steps_the_store_holds(run) -> None:
    client, run_id = run
    first = RunWriter(client, run_id)
    for step in range(10):
        first.log_metrics({"a": step, "b": step}, step=step)
    first.log_metrics({"a": 10}, step=10)  # the crash came between a's and b's point of step 10
    first.close()
    from tracking.reader import stored_steps

    assert stored_steps(client, run_id) == {"a": 10, "b": 9}
    resumed = RunWriter(client, run_id, stored_steps=stored_steps(client, run_id))
    for step in range(5, 15):  # recomputed from a checkpoint at step 5
        resumed.log_metrics({"a": 100 + step, "b": 100 + step}, step=step)
    resumed.close()
    a = {m.step: m.value for m in client.get_metric_history(run_id, "a")}
    b = {m.step: m.value for m in client.get_metric_history(run_id, "b")}
    assert len(client.get_metric_history(run_id, "a")) == 15 and len(client.get_metric_history(run_id, "b")) == 15
    assert [a[s] for s in range(15)] == [*range(11), 111, 112, 113, 114]  # the stored points stand
    assert [b[s] for s in range(15)] == [*range(10), 110, 111, 112, 113, 114]

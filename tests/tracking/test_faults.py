"""Faults against real processes: a sweep driver killed outright (SIGKILL) and a training run terminated
(SIGTERM), each checked in the embedded store it recorded to and in the processes it leaves behind."""

from __future__ import annotations

import collections
import io
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from lightning_modules.module import FitModule, evaluate
from tests.commands import FITLENS, env, fitlens
from tests.tracking.sweep.test_driver import _descendants, _trial_run, _wait_for, children, steps, store, write_sweep
from tracking.config import load_config
from tracking.layout import CHECKPOINT_DIR, RESUMED_TAG, SWEEP_TAG
from tracking.train import prepare


def _start_time(pid: int) -> int | None:
    """The start time of process `pid` (clock ticks after boot), None once it is gone: with the pid, it
    names one process even after the pid is reused."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()
    return None if fields[0] == "Z" else int(fields[19])  # a zombie has stopped running


def _still_running(processes: dict[int, tuple[int | None, str]]) -> list[str]:
    return [command for pid, (started, command) in processes.items()
            if started is not None and _start_time(pid) == started]


def _wait_until_ended(processes: dict[int, tuple[int | None, str]], timeout: float,
                      which: Callable[[list[str]], list[str]] = list) -> None:
    deadline = time.monotonic() + timeout
    while which(_still_running(processes)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not which(_still_running(processes)), _still_running(processes)


def _writers(commands: list[str]) -> list[str]:
    """The processes that could write to a run: all but Ray's node agents (DashboardAgent, RuntimeEnvAgent)."""
    return [c for c in commands if not (c.startswith("ray::") and c.split()[0].endswith("Agent"))]


def _duplicated_points(client: MlflowClient, run_id: str) -> dict[str, list[int]]:
    """key -> the steps stored more than once, for every metric of the run."""
    found = {}
    for key in client.get_run(run_id).data.metrics:
        counts = collections.Counter(steps(client, run_id, key))
        if any(n > 1 for n in counts.values()):
            found[key] = sorted(s for s, n in counts.items() if n > 1)
    return found


def test_a_sweep_whose_driver_is_killed_resumes_with_no_run_left_running_and_no_point_twice(tmp_path) -> None:
    epochs = 20
    path = write_sweep(tmp_path, "killed", max_concurrent=1,
                       base={"train": {"max_epochs": epochs}, "diagnostics": {"preset": "economy"}},
                       space={"optim.lr": {"grid": [0.03, 0.01, 0.003]}})
    command = [FITLENS, "sweep", "--config", str(path), "--json"]
    with tempfile.TemporaryFile("w+") as log:  # not a pipe: nobody reads it while the sweep runs
        driver = subprocess.Popen(command, cwd=tmp_path, env=env(), stdout=log, stderr=subprocess.STDOUT, text=True)
        client = store(tmp_path)
        first = _wait_for(_trial_run(client, " and status = 'FINISHED'"), 300, "the first trial to finish")
        second = _wait_for(_trial_run(client, " and status = 'RUNNING'"), 300, "the second trial's run")
        _wait_for(lambda: len(client.get_metric_history(second, "dev/error")) >= 3, 300, "the second trial's epochs")
        # The local Ray cluster the driver started, its trial process and the trial's sender process.
        spawned = {pid: (_start_time(pid), cmdline) for pid, cmdline in _descendants(driver.pid)}
        assert any(c.startswith("ray::ImplicitFunc") for _, c in spawned.values()), spawned
        assert any(f"tracking.sender {client.tracking_uri} {second}" in c for _, c in spawned.values()), spawned
        driver.send_signal(signal.SIGKILL)
        assert driver.wait(30) == -signal.SIGKILL
        # Nothing the dead driver started lives on to write into the runs the next command resumes (Ray's
        # processes share the driver's fate; the sender ends when its trial's pipe closes).
        # Ray's node agents outlive it a while (each reports the raylet's death to the dead GCS first, which
        # times out after ~60 s); they are waited for once the resumed sweep is over.
        _wait_until_ended(spawned, 60, _writers)
        log.seek(0)
        before = log.read()
    parent = client.get_run(second).data.tags[SWEEP_TAG]
    assert client.get_run(parent).info.status == "RUNNING"  # no one could close it: the driver was killed
    stored = {key: steps(client, second, key) for key in client.get_run(second).data.metrics}

    rc, summary, err = fitlens(tmp_path, *command[1:-1])
    assert rc == 0, before[-2000:] + err[-3000:]
    assert summary["resumed"] is True and summary["interrupted"] is False
    assert summary["parent_run_id"] == parent and client.get_run(parent).info.status == "FINISHED"
    runs = children(client, parent)
    assert len(runs) == 3 and {r.info.status for r in runs} == {"FINISHED"}
    assert sorted(summary["trial_run_ids"]) == sorted(r.info.run_id for r in runs)
    assert first in summary["trial_run_ids"] and second in summary["trial_run_ids"]
    everything = client.search_runs([client.get_run(parent).info.experiment_id], max_results=1000)
    assert [r.info.status for r in everything if r.info.status == "RUNNING"] == []
    assert len(everything) == 4  # the parent and its three trials: none started twice
    for run in everything:
        assert not _duplicated_points(client, run.info.run_id), (run.info.run_id, _duplicated_points(
            client, run.info.run_id))
    for run in runs:
        assert len(steps(client, run.info.run_id, "dev/error")) == epochs
    _wait_until_ended(spawned, 120)
    # The interrupted trial went on in its own run, keeping what was stored: from the last checkpoint that Tune's
    # saved state names (it saves every 10 s or so), or from the start when it names none yet.
    resumed = client.get_run(second)
    assert resumed.data.tags.get(RESUMED_TAG, "from the checkpoint of epoch ").startswith(
        "from the checkpoint of epoch ")
    for key, kept in stored.items():
        assert steps(client, second, key)[:len(kept)] == kept, key


def test_a_terminated_training_run_is_killed_and_keeps_a_whole_checkpoint_that_reproduces_its_dev_error(
        tmp_path) -> None:
    overrides = ["data.name=moons", "data.n_samples=4000", "data.batch_size=16", "train.max_epochs=500",
                 "train.early_stopping=false", "diagnostics.preset=off", "model.depth=2", "model.width=32"]
    scratch = tmp_path / "tmp"  # the process's temporary folder, where the kept checkpoint lives while it trains
    scratch.mkdir()
    process = subprocess.Popen([FITLENS, "train", *overrides], cwd=tmp_path, env={**env(), "TMPDIR": str(scratch)},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    client = store(tmp_path)
    run_id = _wait_for(lambda: _only_run(client), 120, "the run")
    # A reader of the kept checkpoint while it is replaced epoch after epoch: every read is a whole file.
    reads = 0
    deadline = time.monotonic() + 180
    while len(client.get_metric_history(run_id, "dev/error")) < 4 and time.monotonic() < deadline:
        for path in scratch.glob("fitlens-ckpt-*/best.ckpt"):
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                continue
            torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)  # half a file would raise
            reads += 1
        time.sleep(0.05)
    assert reads > 0, "no checkpoint to read before the fourth epoch"
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 143, stderr[-3000:]
    run = client.get_run(run_id)
    assert run.info.status == "KILLED"
    assert [a.path for a in client.list_artifacts(run_id, CHECKPOINT_DIR)] == [f"{CHECKPOINT_DIR}/best.ckpt"]
    assert not list(scratch.rglob("*.partial")) and not list(scratch.rglob("best.ckpt"))  # nothing half-written left

    # The kept checkpoint holds the best weights the run had reached when it was saved: loaded weights-only into
    # a freshly built model, a forward pass over the dev set gives the lowest dev error recorded up to then.
    local = client.download_artifacts(run_id, f"{CHECKPOINT_DIR}/best.ckpt", str(tmp_path / "download"))
    state = torch.load(local, map_location="cpu", weights_only=True)
    (kept,) = [v for v in state["callbacks"].values() if "best_model_score" in v]  # the checkpoint callback's
    recorded = [m.value for m in client.get_metric_history(run_id, "dev/error") if m.step < state["global_step"]]
    assert len(recorded) == state["epoch"] + 1  # the epochs up to the checkpoint's
    prepared = prepare(load_config(None, overrides))
    assert isinstance(prepared.module, FitModule)
    prepared.module.load_weights(local)
    dev_error = evaluate(prepared.module.net, prepared.datamodule.val_dataloader())["error"]
    assert dev_error == pytest.approx(min(recorded), abs=1e-6)
    assert float(kept["best_model_score"]) == pytest.approx(min(recorded), abs=1e-6)


def _only_run(client: MlflowClient) -> str | None:
    try:
        runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    except Exception:  # the store is being created
        return None
    return runs[0].info.run_id if runs else None

"""`fitlens sweep` end to end: real sweeps on a real local Ray cluster, recorded in a real embedded MLflow
store, read back with MlflowClient. Each test runs the command as a user does, in a fresh folder."""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from fitlens.cli import main
from tests.commands import FITLENS, env, fitlens
from tracking.layout import (
    BEST_RUN_TAG,
    DIVERGED_TAG,
    ERROR_TAG,
    PARENT_RUN_TAG,
    POINT_TAG,
    REFINED_FROM_TAG,
    RESUMED_TAG,
    SEARCH_SPACE_FILE,
    STOPPED_TAG,
    SWEEP_TAG,
    TRIAL_TAG,
    TRIALS_TAG,
)
from tracking.reader import search_trial_runs, trial_runs

MOONS = {"name": "moons", "n_samples": 600, "batch_size": 50}


def write_sweep(folder: Path, name: str, **fields) -> Path:
    sweep = {"name": name, "base": {"model": {"depth": 1, "width": 16}, "data": MOONS,
                                    "train": {"max_epochs": 4, "early_stopping": False},
                                    "diagnostics": {"preset": "off"}},
             "search": "grid", "num_samples": 1, "max_concurrent": 2}
    for key, value in fields.items():
        if key == "base":
            for section, values in value.items():
                sweep["base"][section] = {**sweep["base"].get(section, {}), **values}
        else:
            sweep[key] = value
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(sweep))
    return path


def store(folder: Path) -> MlflowClient:
    return MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")


def children(client: MlflowClient, parent: str) -> list:
    exp = client.get_run(parent).info.experiment_id
    return client.search_runs([exp], filter_string=f"tags.`{SWEEP_TAG}` = '{parent}'", max_results=1000)


def steps(client: MlflowClient, run_id: str, key: str) -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run_id, key))


# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def asha_sweep(tmp_path_factory) -> tuple[Path, dict]:
    """Four trials under ASHA, two at a time: two learning rates that learn and two that barely move."""
    folder = tmp_path_factory.mktemp("asha")
    path = write_sweep(folder, "asha", scheduler="asha", grace_period=1, reduction_factor=2,
                       base={"train": {"max_epochs": 6}},
                       space={"optim.lr": {"grid": [0.03, 1.0e-5, 0.01, 2.0e-5]},
                              "model.width": {"randint": [8, 64]}},
                       search="random")
    rc, summary, err = fitlens(folder, "sweep", "--config", str(path))
    assert rc == 0, err[-3000:]
    return folder, summary


def test_parent_and_child_runs_are_linked(asha_sweep) -> None:
    folder, summary = asha_sweep
    client = store(folder)
    parent = client.get_run(summary["parent_run_id"])
    assert parent.info.status == "FINISHED"
    runs = children(client, parent.info.run_id)
    assert sorted(r.info.run_id for r in runs) == sorted(summary["trial_run_ids"])
    assert len(runs) == 4 and len({r.data.tags[TRIAL_TAG] for r in runs}) == 4
    for run in runs:
        assert run.data.tags[PARENT_RUN_TAG] == parent.info.run_id  # MLflow's UI nests them
        assert run.info.experiment_id == parent.info.experiment_id
        assert run.data.params["optim.lr"] == str(json.loads(run.data.tags[POINT_TAG])["optim.lr"])
    assert summary["best_run_id"] in summary["trial_run_ids"]
    assert parent.data.tags[BEST_RUN_TAG] == summary["best_run_id"]
    best = client.get_run(summary["best_run_id"])
    assert min(m.value for m in client.get_metric_history(best.info.run_id, "dev/error")) == pytest.approx(
        summary["best_value"])
    assert json.loads(best.data.tags[POINT_TAG])["optim.lr"] in (0.03, 0.01)  # a rate that learns
    space = yaml.safe_load((folder / "mlartifacts" / parent.info.run_id / "artifacts" / SEARCH_SPACE_FILE).read_text())
    assert space["space"]["optim.lr"] == {"grid": [0.03, 1.0e-5, 0.01, 2.0e-5]}
    assert space["scheduler"] == "asha"
    assert not (folder / "sweeps" / parent.info.run_id).exists()  # Tune's state and checkpoints: removed
    # the finished sweep keeps its trials in one file, which readers use in place of a search
    assert parent.data.tags[TRIALS_TAG] == str(parent.info.end_time)
    kept = trial_runs(client, parent)
    assert [r.info.run_id for r in kept] == [r.info.run_id for r in search_trial_runs(client, parent)]
    assert {r.info.run_id: r.data.metrics for r in kept} == {r.info.run_id: r.data.metrics for r in runs}


def test_asha_stops_some_trials_early_and_tags_where_and_why(asha_sweep) -> None:
    folder, summary = asha_sweep
    client = store(folder)
    runs = children(client, summary["parent_run_id"])
    stopped = [r for r in runs if STOPPED_TAG in r.data.tags]
    assert stopped, [r.data.tags for r in runs]
    for run in stopped:
        assert run.info.status == "FINISHED"
        assert run.data.tags[STOPPED_TAG].startswith("ASHA stopped it after epoch ")
        assert "dev/error" in run.data.tags[STOPPED_TAG] and "cutoff" in run.data.tags[STOPPED_TAG]
        assert len(steps(client, run.info.run_id, "dev/error")) < 6
    best = client.get_run(summary["best_run_id"])
    assert STOPPED_TAG not in best.data.tags
    assert len(steps(client, best.info.run_id, "dev/error")) == 6
    rows = {t["run_id"]: t for t in summary["trials"]}
    assert {r.info.run_id for r in stopped} == {rid for rid, t in rows.items() if t["stopped_early"]}


def test_refine_narrows_around_the_best_trials_on_the_space_scale(asha_sweep, capsys) -> None:
    folder, summary = asha_sweep
    client = store(folder)
    assert main(["sweep", "refine", summary["parent_run_id"], "--top", "2", "--dry-run",
                 "--tracking-uri", client.tracking_uri]) == 0
    refined = yaml.safe_load(capsys.readouterr().out)
    scored = sorted((min(m.value for m in client.get_metric_history(r.info.run_id, "dev/error")),
                     json.loads(r.data.tags[POINT_TAG])) for r in children(client, summary["parent_run_id"])
                    if client.get_metric_history(r.info.run_id, "dev/error"))
    top = [point for _, point in scored[:2]]
    assert refined["space"]["optim.lr"] == {"grid": [v for v in [0.03, 1.0e-5, 0.01, 2.0e-5]
                                                     if v in {p["optim.lr"] for p in top}]}
    low, high = refined["space"]["model.width"]["randint"]
    widths = [p["model.width"] for p in top]
    assert 8 <= low <= min(widths) and max(widths) <= high <= 64
    pad = 0.25 * (64 - 8)  # the margin: a quarter of the old range on each side
    assert low >= min(widths) - pad - 1 and high <= max(widths) + pad + 1


def test_refine_launches_the_next_sweep_linked_by_a_tag(asha_sweep) -> None:
    folder, summary = asha_sweep
    rc, refined, err = fitlens(folder, "sweep", "refine", summary["parent_run_id"], "--top", "1", "--smoke")
    assert rc == 0, err[-3000:]
    client = store(folder)
    parent = client.get_run(refined["parent_run_id"])
    assert parent.data.tags[REFINED_FROM_TAG] == summary["parent_run_id"]
    assert parent.info.status == "FINISHED"
    assert len(refined["trial_run_ids"]) == 1  # the top trial's one learning rate, one smoke sample


def test_refine_refuses_a_run_that_is_not_a_sweep(asha_sweep, capsys) -> None:
    folder, summary = asha_sweep
    uri = store(folder).tracking_uri
    assert main(["sweep", "refine", summary["trial_run_ids"][0], "--tracking-uri", uri]) == 2
    assert "is not a sweep's parent run" in capsys.readouterr().err
    assert main(["sweep", "refine", "0" * 32, "--tracking-uri", uri]) == 2
    assert f"SWEEP_RUN_ID = '{'0' * 32}': no such run in {uri}" in capsys.readouterr().err


def test_a_two_worker_ddp_trial_logs_one_run(tmp_path) -> None:
    path = write_sweep(tmp_path, "ddp", resources={"cpus": 0.5, "workers": 2},
                       base={"train": {"max_epochs": 2}, "diagnostics": {"preset": "economy"}},
                       space={"optim.lr": {"grid": [0.01]}})
    rc, summary, err = fitlens(tmp_path, "sweep", "--config", str(path))
    assert rc == 0, err[-3000:]
    client = store(tmp_path)
    runs = client.search_runs([client.get_run(summary["parent_run_id"]).info.experiment_id], max_results=100)
    trials = [r for r in runs if r.info.run_id != summary["parent_run_id"]]
    assert len(trials) == 1 and trials[0].info.run_id == summary["best_run_id"]
    run = trials[0]
    assert run.info.status == "FINISHED"
    assert run.data.params["model.width"] == "16"
    # Rank zero alone records: one point per epoch and key, one best/ point, one checkpoint.
    assert len(steps(client, run.info.run_id, "dev/error")) == 2 == len(set(steps(client, run.info.run_id,
                                                                                    "dev/error")))
    assert len(client.get_metric_history(run.info.run_id, "best/dev/error")) == 1
    assert len(client.get_metric_history(run.info.run_id, "diag/grad/hidden.0.linear/norm")) >= 2
    assert [a.path for a in client.list_artifacts(run.info.run_id, "checkpoints")] == ["checkpoints/best.ckpt"]


def test_a_diverging_trial_is_tagged_and_the_others_finish(tmp_path) -> None:
    path = write_sweep(tmp_path, "nan", base={"train": {"max_epochs": 3}},
                       space={"optim": {"grid": [{"name": "sgd", "lr": 1.0e4}, {"name": "adam", "lr": 0.01}]}})
    rc, summary, err = fitlens(tmp_path, "sweep", "--config", str(path))
    assert rc == 0, err[-3000:]
    client = store(tmp_path)
    runs = {json.loads(r.data.tags[POINT_TAG])["optim"]["name"]: r for r in children(client, summary["parent_run_id"])}
    assert runs["sgd"].data.tags[DIVERGED_TAG].startswith("epoch 0, step ")
    assert "= nan" in runs["sgd"].data.tags[DIVERGED_TAG] or "= inf" in runs["sgd"].data.tags[DIVERGED_TAG]
    assert DIVERGED_TAG not in runs["adam"].data.tags
    assert {r.info.status for r in runs.values()} == {"FINISHED"}
    assert len(steps(client, runs["adam"].info.run_id, "dev/error")) == 3
    assert len(steps(client, runs["sgd"].info.run_id, "dev/error")) == 1  # stopped after its first epoch
    assert summary["best_run_id"] == runs["adam"].info.run_id


def _descendants(pid: int) -> list[tuple[int, str]]:
    """(pid, command line) of every process below `pid`."""
    parents: dict[int, int] = {}
    commands: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                commands[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rpartition(")")[2].split()[1])
    found, frontier = [], [pid]
    while frontier:
        current = frontier.pop()
        for child, parent in parents.items():
            if parent == current:
                found.append((child, commands.get(child, "")))
                frontier.append(child)
    return found


def _trial_run(client: MlflowClient, condition: str = ""):
    """A poll for the id of a trial's run (matching `condition`), None while there is none or no store yet."""

    def find() -> str | None:
        try:
            runs = client.search_runs(["1"], filter_string=f"tags.`{TRIAL_TAG}` != ''{condition}")
        except Exception:
            return None
        return runs[0].info.run_id if runs else None

    return find


def _wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_killed_trial_resumes_from_its_checkpoint_in_the_same_run(tmp_path) -> None:
    epochs = 12
    path = write_sweep(tmp_path, "kill", max_failures=2,
                       base={"model": {"depth": 3, "width": 256}, "data": {"name": "mnist1d"},
                             "train": {"max_epochs": epochs}, "diagnostics": {"preset": "default"}},
                       space={"optim.lr": {"grid": [0.001]}})
    driver = subprocess.Popen([FITLENS, "sweep", "--config", str(path), "--json"], cwd=tmp_path, env=env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    client = store(tmp_path)
    run_id = _wait_for(_trial_run(client), 300, "the trial's run")
    _wait_for(lambda: len(client.get_metric_history(run_id, "dev/error")) >= 3, 300, "three epochs")
    trial = [pid for pid, cmd in _descendants(driver.pid) if cmd.startswith("ray::ImplicitFunc")]
    assert len(trial) == 1
    os.kill(trial[0], signal.SIGKILL)
    out, err = driver.communicate(timeout=600)
    assert driver.returncode == 0, err[-3000:]
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["trial_run_ids"] == [run_id]  # the retried trial kept its run
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    resumed_at = int(run.data.tags[RESUMED_TAG].removeprefix("from the checkpoint of epoch "))
    assert resumed_at >= 1
    for key in ("dev/error", "train/loss", "lr", "diag/grad/hidden.0.linear/norm", "diag/act/hidden.2.act/std"):
        found = steps(client, run_id, key)
        duplicated = [s for s, n in collections.Counter(found).items() if n > 1]
        assert not duplicated, (key, duplicated)
    assert len(steps(client, run_id, "dev/error")) == epochs
    parts = sorted(p.name for p in (tmp_path / "mlartifacts" / run_id / "artifacts" / "diagnostics").glob("hist-*"))
    assert [int(p[5:14]) for p in parts] == steps(client, run_id, "diag/grad/hidden.0.linear/norm")


def test_an_interrupted_sweep_resumes_when_the_command_is_run_again(tmp_path) -> None:
    path = write_sweep(tmp_path, "resume", max_concurrent=1, base={"train": {"max_epochs": 40}},
                       space={"optim.lr": {"grid": [0.03, 0.01, 0.003]}})
    command = [FITLENS, "sweep", "--config", str(path), "--json"]
    driver = subprocess.Popen(command, cwd=tmp_path, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    client = store(tmp_path)
    first = _wait_for(_trial_run(client, " and status = 'FINISHED'"), 300, "the first trial to finish")
    driver.send_signal(signal.SIGINT)  # Ctrl-C
    out, err = driver.communicate(timeout=300)
    assert driver.returncode == 130, err[-3000:]
    interrupted = json.loads(out.strip().splitlines()[-1])
    assert interrupted["interrupted"] is True
    parent = interrupted["parent_run_id"]
    assert client.get_run(parent).info.status == "KILLED"
    assert all(r.info.status != "RUNNING" for r in children(client, parent))

    rc, summary, err = fitlens(tmp_path, *command[1:-1])
    assert rc == 0, err[-3000:]
    assert summary["resumed"] is True and summary["interrupted"] is False
    assert summary["parent_run_id"] == parent and client.get_run(parent).info.status == "FINISHED"
    runs = children(client, parent)
    assert len(runs) == 3 and {r.info.status for r in runs} == {"FINISHED"}
    assert first in summary["trial_run_ids"]
    assert len(steps(client, first, "dev/error")) == 40  # the finished trial was not run again
    lrs = sorted(json.loads(r.data.tags[POINT_TAG])["optim.lr"] for r in runs)
    assert lrs == [0.003, 0.01, 0.03]


def test_a_failing_trial_is_failed_with_its_error_and_the_sweep_goes_on(tmp_path) -> None:
    (tmp_path / "data.csv").write_text("a,b,y\n" + "".join(f"{i},{i % 3},{i % 2}\n" for i in range(60)))
    path = write_sweep(tmp_path, "fail", base={"train": {"max_epochs": 2}},
                       space={"data": {"grid": [MOONS, {"name": "csv", "path": "data.csv", "target": "label"}]}})
    rc, summary, err = fitlens(tmp_path, "sweep", "--config", str(path))
    assert rc == 0, err[-3000:]
    client = store(tmp_path)
    runs = {json.loads(r.data.tags[POINT_TAG])["data"]["name"]: r for r in children(client, summary["parent_run_id"])}
    assert runs["csv"].info.status == "FAILED"
    assert "data.target = 'label'" in runs["csv"].data.tags[ERROR_TAG]  # the run config's own message
    assert runs["moons"].info.status == "FINISHED" and summary["best_run_id"] == runs["moons"].info.run_id
    failed = next(t for t in summary["trials"] if t["run_id"] == runs["csv"].info.run_id)
    assert failed["status"] == "FAILED" and "data.target" in failed["error"]

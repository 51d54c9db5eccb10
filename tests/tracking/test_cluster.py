"""`fitlens sweep` on an existing Ray cluster (RAY_ADDRESS), recording to a shared `fitlens server`.

A real two-node cluster on this machine, started with `ray start` as an operator would (token authentication
on): a head that only coordinates (0 CPUs) and a worker node with 2 CPUs, so every trial runs on the worker.
Each node has its own --temp-dir and its own process group, and the test stops exactly those processes, never
`ray stop` (which kills every Ray process on the machine, another test's or another user's included).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from tests.commands import FITLENS, env, free_port
from tests.servers import TrackingServer
from tests.tracking.sweep.test_driver import _descendants, children, steps, store, write_sweep
from tests.tracking.test_faults import _start_time
from tracking.layout import CHECKPOINT_DIR, CONFIG_FILE, HOST_TAG, RAY_NODE_TAG, TRIAL_TAG

RAY = str(Path(sys.executable).parent / "ray")
NODE_START_S = 120
WORKER_RESOURCE = "worker_node"  # a custom resource that tells the worker node apart in ray.nodes()


@dataclass
class RayNode:
    """One `ray start --block` process: the node's processes are its children, in its own process group."""

    proc: subprocess.Popen
    log: Path
    cwd: Path
    temp_dir: Path

    def stop(self) -> None:
        """SIGTERM to `ray start`: it stops the node's processes (with draining off, at once); then SIGKILL to
        whatever of them is left: its process group, and the processes below it that have a group of their own
        (Ray's worker processes), each named by pid and start time so that no other process is hit."""
        below = {pid: _start_time(pid) for pid, _ in _descendants(self.proc.pid)}
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(10)
        for pid, started in below.items():
            if started is not None and _start_time(pid) == started:
                os.kill(pid, signal.SIGKILL)


@dataclass
class RayCluster:
    address: str
    auth_env: dict[str, str]  # what every process that talks to the cluster needs: the mode and the token
    head: RayNode
    worker: RayNode
    worker_node_id: str


def _start_node(name: str, args: list[str], root: Path, node_env: dict[str, str]) -> RayNode:
    cwd = root / name
    cwd.mkdir()
    log = root / f"{name}.log"
    # A short temp dir of its own: Ray's unix sockets live under it (a path of at most 107 bytes).
    temp_dir = Path(tempfile.mkdtemp(prefix=f"fl-{name}-", dir="/tmp"))
    with open(log, "w") as out:
        proc = subprocess.Popen([RAY, "start", "--block", *args, "--temp-dir", str(temp_dir),
                                 "--disable-usage-stats", "--object-store-memory", str(100 * 2**20)],
                                cwd=cwd, env=node_env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    node = RayNode(proc, log, cwd, temp_dir)
    deadline = time.monotonic() + NODE_START_S
    while "Ray runtime started" not in log.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            node.stop()
            raise AssertionError(f"ray start ({name}) did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)
    return node


def _worker_node_id(address: str, auth_env: dict[str, str]) -> str:
    """The node id of the node holding WORKER_RESOURCE, from Ray's own node table."""
    script = ("import json, sys, ray; ray.init(address=sys.argv[1], logging_level='ERROR'); "
              "print(json.dumps([n['NodeID'] for n in ray.nodes() if n['Alive'] and sys.argv[2] in n['Resources']]))")
    proc = subprocess.run([sys.executable, "-c", script, address, WORKER_RESOURCE], env={**env(), **auth_env},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (node_id,) = json.loads(proc.stdout.strip().splitlines()[-1])
    return node_id


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RayCluster]:
    """A head (0 CPUs: it only coordinates) and a worker node (2 CPUs), with token authentication."""
    root = tmp_path_factory.mktemp("cluster")
    port = free_port()
    auth_env = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    # No draining on SIGTERM: a node of a test goes at once (Ray's default waits up to 30 s).
    node_env = {**env(), **auth_env, "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"}
    nodes: list[RayNode] = []
    try:
        nodes.append(_start_node("head", ["--head", "--port", str(port), "--num-cpus", "0",
                                          "--include-dashboard=false"], root, node_env))
        nodes.append(_start_node("worker", ["--address", f"127.0.0.1:{port}", "--num-cpus", "2", "--resources",
                                            json.dumps({WORKER_RESOURCE: 1})], root, node_env))
        address = f"127.0.0.1:{port}"
        yield RayCluster(address, auth_env, nodes[0], nodes[1], _worker_node_id(address, auth_env))
    finally:
        for node in reversed(nodes):
            node.stop()
        for node in nodes:
            shutil.rmtree(node.temp_dir, ignore_errors=True)


def _tracking_files(folder: Path) -> list[Path]:
    """Anything the embedded store would have written under `folder`."""
    return [p for p in folder.rglob("*") if p.name.startswith("mlflow.db") or p.name == "mlartifacts"]


def test_a_sweep_on_an_existing_cluster_runs_on_its_worker_and_records_through_the_server(
        ray_cluster: RayCluster, tracking_server: TrackingServer, tmp_path: Path) -> None:
    driver = tmp_path / "driver"
    driver.mkdir()
    shared = tmp_path / "shared-storage"  # the cluster's shared storage for Tune's checkpoints (NFS, s3://)
    path = write_sweep(driver, "cluster", base={"train": {"max_epochs": 3}},
                       space={"optim.lr": {"grid": [0.03, 0.01]}})
    command_env = {**env(), **ray_cluster.auth_env, "RAY_ADDRESS": ray_cluster.address,
                   "MLFLOW_TRACKING_URI": tracking_server.uri, "FITLENS_SWEEPS_DIR": shared.as_uri()}
    proc = subprocess.run([FITLENS, "sweep", "--config", path.name, "--json"], cwd=driver, env=command_env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Connected to Ray cluster" in proc.stderr  # joined the cluster, did not start one of its own
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["tracking_uri"] == tracking_server.uri

    client = MlflowClient(tracking_server.uri)
    parent = client.get_run(summary["parent_run_id"])
    assert parent.info.status == "FINISHED"
    runs = children(client, parent.info.run_id)
    assert len(runs) == 2 and sorted(r.info.run_id for r in runs) == sorted(summary["trial_run_ids"])
    for run in runs:
        run_id = run.info.run_id
        assert run.info.status == "FINISHED"
        assert run.data.tags[RAY_NODE_TAG] == ray_cluster.worker_node_id, run.data.tags
        assert run.data.tags[HOST_TAG] == os.uname().nodename
        found = steps(client, run_id, "dev/error")
        assert len(found) == 3 == len(set(found))  # one point per epoch, none twice
        assert run.data.metrics["best/dev/error"] == pytest.approx(min(
            m.value for m in client.get_metric_history(run_id, "dev/error")))
        # Artifacts go through the server (mlflow-artifacts:/), which stores them in its own folder.
        assert run.info.artifact_uri.startswith("mlflow-artifacts:/"), run.info.artifact_uri
        listed = {a.path for a in client.list_artifacts(run_id)} | {
            a.path for a in client.list_artifacts(run_id, CHECKPOINT_DIR)}
        assert {CONFIG_FILE, f"{CHECKPOINT_DIR}/best.ckpt"} <= listed, listed
        stored = tracking_server.artifacts / run.info.experiment_id / run_id / "artifacts"
        assert (stored / CONFIG_FILE).is_file() and (stored / CHECKPOINT_DIR / "best.ckpt").is_file()
        local = client.download_artifacts(run_id, f"{CHECKPOINT_DIR}/best.ckpt", str(tmp_path))
        state = torch.load(local, map_location="cpu", weights_only=True)
        assert any(key.startswith("net.") for key in state["state_dict"])

    # Nothing of tracking touched a disk: no embedded store beside the driver or on either node, and the
    # driver's folder holds only the sweep file.
    assert sorted(p.name for p in driver.iterdir()) == [path.name]
    for folder in (driver, ray_cluster.head.cwd, ray_cluster.worker.cwd, ray_cluster.head.temp_dir,
                   ray_cluster.worker.temp_dir):
        assert not _tracking_files(folder), (folder, _tracking_files(folder))
    # Tune's own state and trial checkpoints are in the cluster's shared storage (FITLENS_SWEEPS_DIR).
    trials = sorted((shared / parent.info.run_id).glob("run_trial_*"))
    assert len(trials) == 2 and all(sorted(t.glob("checkpoint_*")) for t in trials), trials
    for run in runs:  # Tune names a trial's folder run_trial_<trial id>_<index>_<point>_<time>
        assert [t for t in trials if f"_{run.data.tags[TRIAL_TAG]}_" in t.name], (run.data.tags, trials)


def test_a_cluster_with_token_authentication_refuses_a_driver_without_its_token(ray_cluster: RayCluster,
                                                                              tmp_path: Path) -> None:
    path = write_sweep(tmp_path, "refused", space={"optim.lr": {"grid": [0.03]}})
    command_env = {**env(), "RAY_ADDRESS": ray_cluster.address, "RAY_AUTH_MODE": "token",
                   "RAY_AUTH_TOKEN": secrets.token_hex(32),  # a token, but not the cluster's
                   "RAY_gcs_server_port_wait_time_s": "3"}  # Ray retries the refused connection for ~30 s
    proc = subprocess.run([FITLENS, "sweep", "--config", path.name, "--json"], cwd=tmp_path, env=command_env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "InvalidAuthToken: Authentication token is missing or incorrect" in proc.stderr, proc.stderr[-3000:]
    client = store(tmp_path)  # the embedded store: the parent run exists, and is not left RUNNING
    (parent,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert parent.info.status == "KILLED"
    assert not children(client, parent.info.run_id)

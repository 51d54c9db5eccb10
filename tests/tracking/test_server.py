"""`fitlens server` against real processes: PostgreSQL, `mlflow server`, writers and `fitlens train` runs.

The faults a team's shared server meets: many writers at once, the server going away mid-training and coming
back, bad settings, and artifacts that must travel through the server rather than a shared disk.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.commands import FITLENS, env, free_port
from tests.servers import TrackingServer, drop_database, fresh_database
from tests.tracking.test_writer import write_concurrently
from tests.tracking.user_objects import LinearModule
from tracking.diagnostics import SnapshotSchedule
from tracking.server import mlflow_command, mlflow_environment, server_settings

REPO = Path(__file__).resolve().parents[2]
GAP_S = 60.0  # how long the server stays down mid-training


class PacedLinear(LinearModule):
    """LinearModule whose training steps take at least `pace_s`: the run lasts a known time on a busy machine or an
    idle one, so the server can be stopped while it is surely still training."""

    def __init__(self, pace_s: float = 0.1, **kwargs: float) -> None:
        super().__init__(**kwargs)
        self.pace_s = pace_s

    def training_step(self, batch, batch_idx):
        time.sleep(self.pace_s)
        return super().training_step(batch, batch_idx)


def _train_env(server: TrackingServer) -> dict[str, str]:
    """`fitlens train` logging to `server`; PYTHONPATH lets the config name this file's module."""
    return {**env(), "MLFLOW_TRACKING_URI": server.uri, "PYTHONPATH": str(REPO)}


# ----------------------------------------------------------------------------------------------
# a. many writers at once


def test_concurrent_writers_to_the_server_lose_no_points(tracking_server) -> None:
    """8 processes write 100 steps x 20 keys and 150 params each through one server into PostgreSQL at once:
    every point is stored exactly once, every run is FINISHED, and no lock or connection error reaches a user."""
    write_concurrently(tracking_server.uri, symptoms=("traceback", "lock", "connection", "giving up"))


# ----------------------------------------------------------------------------------------------
# b. the server away for a minute mid-training


def test_a_minute_without_the_server_mid_training_loses_no_points(tracking_server, tmp_path) -> None:
    """The server stops for 60 s while `fitlens train` runs: training goes on, and once the server is back every
    point measured meanwhile arrives exactly once; the run ends FINISHED and the command exits 0."""
    epochs, steps_per_epoch, every = 320, 2, 10  # ~0.25 s an epoch: ~80 s, so it goes on after the restart
    config = {
        "experiment": "outage",
        "module": "tests.tracking.test_server:PacedLinear",
        "module_args": {"pace_s": 0.1},
        "data": {"name": "tests.tracking.user_objects:BlobsData"},  # 100 training examples, batches of 50
        "train": {"max_epochs": epochs, "early_stopping": False},
        "diagnostics": {"every": every},
    }
    (tmp_path / "outage.yaml").write_text(yaml.safe_dump(config))
    out, err = (tmp_path / "train.out").open("w+"), (tmp_path / "train.err").open("w+")
    train = subprocess.Popen([FITLENS, "train", "--config", "outage.yaml", "--json"], cwd=tmp_path,
                             env=_train_env(tracking_server), stdout=out, stderr=err, text=True)
    client = MlflowClient(tracking_server.uri)
    run_id = _wait_for_epochs(client, "outage", train, epochs=2)

    tracking_server.stop()
    down_ms = int(time.time() * 1000)
    time.sleep(GAP_S)
    assert train.poll() is None, "fitlens train exited while the server was down"
    tracking_server.start()
    back_ms = int(time.time() * 1000)

    # Delivery: how long until the points measured up to the restart are in the store (or, when the training
    # ended in the gap, until the command has flushed them and exited).
    delivered_s = None
    deadline = time.monotonic() + 300
    while train.poll() is None and time.monotonic() < deadline:
        stamps = [m.timestamp for m in client.get_metric_history(run_id, "epoch")]
        if delivered_s is None and stamps and max(stamps) >= back_ms - 1000:
            delivered_s = time.time() - back_ms / 1000
        time.sleep(0.5)
    train.wait(timeout=10)
    finished_s = time.time() - back_ms / 1000
    delivered_s = finished_s if delivered_s is None else delivered_s
    out.seek(0), err.seek(0)
    stdout, stderr = out.read(), err.read()
    assert train.returncode == 0, stderr[-3000:]
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["run_id"] == run_id

    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert "giving up" not in stderr and "Traceback" not in stderr, stderr[-3000:]
    epoch_steps = [steps_per_epoch * (e + 1) - 1 for e in range(epochs)]
    schedule = SnapshotSchedule(every)
    snapshot_steps = [s for s in range(epochs * steps_per_epoch) if schedule(s)]
    in_gap = 0
    keys = sorted(run.data.metrics)
    assert {"epoch", "train/loss", "dev/error"} <= set(keys) and any(k.startswith("diag/") for k in keys)
    for key in keys:
        history = client.get_metric_history(run_id, key)
        steps = sorted(m.step for m in history)
        if key.startswith("diag/"):
            assert steps == snapshot_steps, key  # each step exactly once, none missing
        elif key.startswith(("best/", "test/")):
            assert len(steps) == 1, key
        elif key == "epoch":  # the test pass logs one more, at the last step
            assert steps == [*epoch_steps, epochs * steps_per_epoch], key
        else:
            assert steps == epoch_steps, key
        in_gap += sum(down_ms <= m.timestamp <= back_ms for m in history)
    epochs_in_gap = sum(down_ms <= m.timestamp <= back_ms for m in client.get_metric_history(run_id, "epoch"))
    assert epochs_in_gap >= 50, "training did not go on while the server was down"
    print(f"\n{in_gap} points ({epochs_in_gap} epochs) measured in the {GAP_S:.0f} s gap; those up to the restart "
          f"stored {delivered_s:.1f} s after it; the command exited {finished_s:.1f} s after it; {len(keys)} keys")


def _wait_for_epochs(client: MlflowClient, experiment: str, train: subprocess.Popen, epochs: int,
                     timeout: float = 120) -> str:
    """The run id of the one run in `experiment`, once the store holds its first `epochs` epochs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert train.poll() is None, "fitlens train ended before the server was stopped"
        found = client.get_experiment_by_name(experiment)
        runs = client.search_runs([found.experiment_id]) if found else []
        if runs and runs[0].data.metrics.get("epoch", -1) >= epochs - 1:
            return runs[0].info.run_id
        time.sleep(0.5)
    raise AssertionError(f"no run in experiment {experiment!r} reached {epochs} epochs in {timeout:.0f} s")


# ----------------------------------------------------------------------------------------------
# c. bad input, and what it binds to


def _server(args: list[str], backend_uri: str | None = None) -> subprocess.CompletedProcess:
    extra = {} if backend_uri is None else {"FITLENS_BACKEND_URI": backend_uri}
    return subprocess.run([FITLENS, "server", *args], env={**env(), **extra}, capture_output=True, text=True,
                          timeout=60)


@pytest.mark.parametrize(("args", "backend_uri", "expected"), [
    (["--port", "70000"], None, ["--port = 70000", "1..65535"]),
    (["--port", "0"], None, ["--port = 0", "1..65535"]),
    ([], "sqlite:///mlflow.db", ["FITLENS_BACKEND_URI = 'sqlite:///mlflow.db'", "postgresql://"]),
    ([], "postgresql://postgres@127.0.0.1:5432/", ["FITLENS_BACKEND_URI", "names no database"]),
    ([], "postgresql://postgres:secret@127.0.0.1:{free}/fitlens", ["FITLENS_BACKEND_URI", "postgres:***@",
                                                                 "cannot connect", "Connection refused"]),
    (["--", "--disable-security-middleware"], None, ["--disable-security-middleware is not allowed"]),
    (["--", "--backend-store-uri", "sqlite:///x.db"], None, ["--backend-store-uri", "FITLENS_BACKEND_URI"]),
])
def test_bad_input_is_refused_with_exit_2_naming_the_field(args, backend_uri, expected) -> None:
    """Nothing starts: the message names the field, the value given (a password hidden) and what is allowed."""
    if backend_uri is not None:
        backend_uri = backend_uri.replace("{free}", str(free_port()))
    started = time.monotonic()
    done = _server(args, backend_uri)
    assert done.returncode == 2, done.stderr
    for part in expected:
        assert part in done.stderr, done.stderr
    assert "secret" not in done.stderr and "Traceback" not in done.stderr
    assert time.monotonic() - started < 30  # refused up front, not after a server start


def test_the_mlflow_command_keeps_the_middleware_on_and_the_password_off_the_command_line(tmp_path) -> None:
    """What `fitlens server` execs, without starting it: the backend URI (psycopg2 named as its driver) travels
    in the environment, where other users of the machine cannot read it, and a shell's switch that would turn
    MLflow's security middleware off is dropped."""
    shell = {"FITLENS_BACKEND_URI": "postgresql://team:s3cret@db.internal/fitlens",
             "FITLENS_ARTIFACTS_DESTINATION": "rel/artifacts", "MLFLOW_SERVER_DISABLE_SECURITY_MIDDLEWARE": "true"}
    settings = server_settings("0.0.0.0", 5001, "mlflow.example.com:5001", ["--workers", "2"], environ=shell)
    command = mlflow_command(settings)
    assert command[1:4] == ["-m", "mlflow", "server"]
    assert command[4:] == ["--serve-artifacts", "--artifacts-destination", str(Path.cwd() / "rel/artifacts"),
                           "--host", "0.0.0.0", "--port", "5001", "--allowed-hosts", "mlflow.example.com:5001",
                           "--workers", "2"]
    assert "s3cret" not in " ".join(command)
    environment = mlflow_environment(settings, shell)
    assert environment["MLFLOW_BACKEND_STORE_URI"] == "postgresql+psycopg2://team:s3cret@db.internal/fitlens"
    assert "MLFLOW_SERVER_DISABLE_SECURITY_MIDDLEWARE" not in environment
    assert server_settings(environ={}).backend_uri == "postgresql://postgres@127.0.0.1:5432/fitlens"
    assert server_settings(environ={}).host == "127.0.0.1"


def test_binds_to_127_0_0_1_with_the_security_middleware_on(tracking_server) -> None:
    """By default only this machine can connect, a request for a foreign Host is refused (DNS rebinding), and
    SIGTERM stops the server with its workers."""
    listening = _listening_addresses(tracking_server.port)
    assert listening == {"127.0.0.1"}, listening
    with urllib.request.urlopen(f"{tracking_server.uri}/health", timeout=10) as response:
        assert response.status == 200
    foreign = urllib.request.Request(f"{tracking_server.uri}/api/2.0/mlflow/experiments/search?max_results=1",
                                     headers={"Host": "evil.example.com"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(foreign, timeout=10)
    assert refused.value.code in (400, 403)
    assert tracking_server.stop() == 0  # not killed: MLflow passed SIGTERM on to uvicorn, which shut down
    assert _listening_addresses(tracking_server.port) == set()


def _listening_addresses(port: int) -> set[str]:
    """The local addresses of the sockets listening on `port`, from /proc/net/tcp and tcp6 (no psutil here)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, port_hex = local.rsplit(":", 1)
            if state == "0A" and int(port_hex, 16) == port:  # 0A: LISTEN
                if len(address) == 8:  # IPv4, little-endian
                    found.add(".".join(str(int(address[i:i + 2], 16)) for i in (6, 4, 2, 0)))
                else:
                    found.add(f"ipv6:{address}")
    return found


# ----------------------------------------------------------------------------------------------
# d. artifacts through the proxy, read by the dashboard


def test_artifacts_go_through_the_server_and_the_dashboard_lists_the_run(tracking_server, tmp_path) -> None:
    """A run logged through the server keeps its artifacts under the server's destination (mlflow-artifacts:, no
    shared disk), and the dashboard's reader, pointed at the server, lists the run and reads its histograms."""
    from dashboard.cache import CachedReader

    config = {"experiment": "proxied", "model": {"depth": 1, "width": 8},
              "data": {"name": "moons", "n_samples": 200, "batch_size": 32},
              "train": {"max_epochs": 2}, "diagnostics": {"every": 2}}
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(config))
    project = tmp_path / "project"
    project.mkdir()
    done = subprocess.run([FITLENS, "train", "--config", str(tmp_path / "tiny.yaml"), "--json"], cwd=project,
                          env=_train_env(tracking_server), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    run_id = summary["run_id"]
    assert summary["tracking_uri"] == tracking_server.uri
    assert not (project / "mlflow.db").exists() and not (project / "mlartifacts").exists()

    run = MlflowClient(tracking_server.uri).get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.info.artifact_uri.startswith("mlflow-artifacts:")
    stored = tracking_server.artifacts / run.info.experiment_id / run_id / "artifacts"
    assert (stored / "config.yaml").is_file()
    assert yaml.safe_load((stored / "config.yaml").read_text())["experiment"] == "proxied"
    assert (stored / "checkpoints" / "best.ckpt").is_file()
    assert sorted(p.name for p in (stored / "diagnostics").iterdir())[-1] == "schema.json"

    reader = CachedReader(tracking_server.uri)
    assert run_id in reader.lone_runs()["run_id"].tolist()
    assert reader.histogram_steps(run_id)[:3] == [0, 1, 2]  # the parts, downloaded through the server


def test_the_database_is_created_when_missing(tmp_path) -> None:
    """`fitlens server` on a database that does not exist yet creates it before MLflow starts."""
    name = f"fitlens_created_by_server_{uuid.uuid4().hex[:8]}"
    uri = fresh_database(name)
    drop_database(name)
    try:
        with TrackingServer(uri, tmp_path / "artifacts") as server:
            assert MlflowClient(server.uri).search_experiments()  # the Default experiment: tables exist
    finally:
        drop_database(name)


def test_make_server_passes_port_and_args() -> None:
    """`make server PORT=... ARGS=...` runs the same command (checked with make -n, nothing started)."""
    done = subprocess.run(["make", "-n", "server", "PORT=5123", "ARGS=--allowed-hosts mlflow.example.com"],
                          cwd=REPO, capture_output=True, text=True, env=env(), timeout=60)
    assert done.returncode == 0, done.stderr
    assert "fitlens server --port 5123 --allowed-hosts mlflow.example.com" in done.stdout

"""How fast runs are recorded, measured side by side in one run (`make bench`).

The same training-like stream of metric points (per epoch: one diagnostics snapshot of a 5-layer MLP,
weight, grad and act statistics of every layer, then the epoch's train/dev metrics) is recorded three ways,
into the embedded store (SQLite in a temporary folder) and into `fitlens server` (PostgreSQL, started here
as a user runs it, on a database created for the run and dropped after):

1. naive per-point logging: `MlflowClient.log_metric` once per point, on the training thread;
2. naive per-snapshot logging: one `MlflowClient.log_batch` per call, on the training thread;
3. fitlens' write path: `tracking.writer.RunWriter.log_metrics`, then `flush()` (the sender process stores).

Points/s counts until every point is stored (fitlens: the final flush included; the sender's start and
stop, once per run, are timed apart). The block time is the wall time of the call(s) that hand one snapshot
over, with some training (matrix products) before each call, so fitlens' feeder thread and sender process
compete with the training thread as in a fit. Every run is read back afterwards: a method that loses,
duplicates or alters a point fails the benchmark. Without PostgreSQL, only the embedded store is measured.

Prints a Markdown table and, with --json FILE, writes the numbers.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from tracking.config import load_config
from tracking.layout import STAT_NAMES, diag_key
from tracking.store import client_for, is_embedded, quiet_libraries
from tracking.train import torch_threads
from tracking.writer import RunWriter, experiment_id

FITLENS = str(Path(sys.executable).parent / "fitlens")
POSTGRES = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
STEPS_PER_EPOCH = 32  # the default run: 3200 training examples in batches of 100
LAYERS = [f"net.{2 * i}" for i in range(5)]  # the Linear layers of a 5-layer MLP
SNAPSHOT_KINDS = ("weight", "grad", "act")
EPOCH_KEYS = ("train/loss", "train/error", "dev/loss", "dev/error", "lr", "epoch")
EMBEDDED, SERVER = "embedded (SQLite)", "fitlens server (PostgreSQL)"
SERVER_START_S = 180  # a fresh database gets MLflow's ~100 migrations before /health answers
SERVER_STOP_S = 30

Call = tuple[int, dict[str, float], bool]  # step, metrics, is a snapshot


def snapshot_keys() -> list[str]:
    """The diagnostics keys of one snapshot, as DiagnosticsCallback names them (44 per layer)."""
    return [diag_key(kind, layer, stat) for layer in LAYERS for kind in SNAPSHOT_KINDS for stat in STAT_NAMES[kind]]


def training_calls(epochs: int, seed: int = 0) -> list[Call]:
    """What a fit hands its logger: per epoch one snapshot at the epoch's first step, then the epoch's metrics
    at its last step; every (key, step) once, with random values."""
    rng = random.Random(seed)
    keys = snapshot_keys()
    calls: list[Call] = []
    for epoch in range(epochs):
        first, last = epoch * STEPS_PER_EPOCH, (epoch + 1) * STEPS_PER_EPOCH - 1
        calls.append((first, {key: rng.gauss(0, 1) for key in keys}, True))
        calls.append((last, {key: float(epoch) if key == "epoch" else rng.random() for key in EPOCH_KEYS}, False))
    return calls


class PerPoint:
    """Naive: one synchronous `log_metric` per point."""

    label = "log_metric per point (sync)"

    def __init__(self, client: MlflowClient, run_id: str) -> None:
        self.client, self.run_id = client, run_id

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        for key, value in metrics.items():
            self.client.log_metric(self.run_id, key, value, step=step)

    def flush(self) -> None:
        """Return once every point handed over is stored."""

    def stop(self) -> None:
        """Release what the method holds (once per run)."""


class PerCall(PerPoint):
    """Naive, batched: one synchronous `log_batch` per call (a snapshot is one request)."""

    label = "log_batch per call (sync)"

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        now_ms = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, v, now_ms, step) for k, v in metrics.items()])


class Fitlens:
    """fitlens: the training thread queues, the sender process stores."""

    label = "fitlens RunWriter"

    def __init__(self, client: MlflowClient, run_id: str) -> None:
        start = time.perf_counter()
        self.writer = RunWriter(client, run_id)
        # The sender's start and its opening of the store (a first request) are paid once per run, while
        # a fit sets up: timed apart, not per point.
        self.writer.submit(MlflowClient.get_run)
        self.writer.flush()
        if self.writer.failures:
            raise SystemExit(f"bench_tracking: the sender cannot read run {run_id}: {self.writer.failures}")
        self.start_s = time.perf_counter() - start

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self.writer.log_metrics(metrics, step)

    def flush(self) -> None:
        self.writer.flush()
        if self.writer.failures:
            raise SystemExit(f"bench_tracking: the sender failed to store points: {self.writer.failures[:3]}")

    def stop(self) -> None:
        self.writer.close()  # stops the sender: once per run, like its start


METHODS = {"per_point": PerPoint, "per_call": PerCall, "fitlens": Fitlens}


def _train_for(seconds: float, a: torch.Tensor) -> None:
    """Training between snapshots: matrix products on torch's threads, from this (the training) thread."""
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        a @ a


def record(client: MlflowClient, method: str, epochs: int, train_s: float) -> dict[str, Any]:
    """Record `epochs` epochs of points into a new run with `method`, `train_s` of training before each call;
    check the run holds exactly those points. `seconds` is the time until every point is stored, training
    excluded: with train_s = 0, the wall time from the first call until flush() returns."""
    run_id = client.create_run(experiment_id(client, "bench-tracking")).info.run_id
    calls = training_calls(epochs)
    logger = METHODS[method](client, run_id)
    a = torch.randn(128, 128)
    blocks: list[float] = []
    busy = 0.0
    start = time.perf_counter()
    for step, metrics, is_snapshot in calls:
        if train_s:
            _train_for(train_s, a)
        called = time.perf_counter()
        logger.log_metrics(metrics, step)
        took = time.perf_counter() - called
        busy += took
        if is_snapshot:
            blocks.append(took)
    flushed = time.perf_counter()
    logger.flush()
    flush_s = time.perf_counter() - flushed
    wall = time.perf_counter() - start
    stopped = time.perf_counter()
    logger.stop()
    stop_s = time.perf_counter() - stopped
    points = sum(len(metrics) for _, metrics, _ in calls)
    _check_stored(client, run_id, calls, f"{METHODS[method].label} into {client.tracking_uri}")
    seconds = wall if not train_s else busy + flush_s
    result = {"points": points, "snapshots": len(blocks), "seconds": seconds, "points_per_s": points / seconds,
              "block_median_ms": 1000 * statistics.median(blocks), "block_p95_ms": 1000 * _p95(blocks),
              "block_max_ms": 1000 * max(blocks), "flush_s": flush_s, "train_ms": 1000 * train_s}
    if isinstance(logger, Fitlens):
        result |= {"sender_start_s": logger.start_s, "sender_stop_s": stop_s}
    return result


def _p95(values: list[float]) -> float:
    """The 95th percentile, interpolated (statistics.quantiles needs two values; one snapshot is its own)."""
    return statistics.quantiles(values, n=20, method="inclusive")[-1] if len(values) > 1 else values[0]


def _check_stored(client: MlflowClient, run_id: str, calls: list[Call], what: str) -> None:
    """Fail unless the run holds exactly the points of `calls`: each (key, step) once, with its value."""
    expected = {(key, step): value for step, metrics, _ in calls for key, value in metrics.items()}
    keys = sorted({key for key, _ in expected})
    # One request per key: a few at a time, or reading back would take longer than writing to a server.
    with ThreadPoolExecutor(max_workers=8) as pool:
        histories = pool.map(lambda key: client.get_metric_history(run_id, key), keys)
    stored: dict[tuple[str, int], list[float]] = {}
    for key, history in zip(keys, histories, strict=True):
        for metric in history:
            stored.setdefault((key, metric.step), []).append(metric.value)
    missing = [point for point in expected if point not in stored]
    doubled = [point for point, values in stored.items() if len(values) > 1]
    extra = [point for point in stored if point not in expected]
    altered = [point for point, values in stored.items() if point in expected and values[0] != expected[point]]
    if missing or doubled or extra or altered:
        raise SystemExit(
            f"bench_tracking: {what} stored {sum(map(len, stored.values()))} points, expected {len(expected)}: "
            f"{len(missing)} missing (e.g. {missing[:2]}), {len(doubled)} stored twice, {len(extra)} unexpected, "
            f"{len(altered)} with another value (e.g. {altered[:2]})")


# ----------------------------------------------------------------------------------------------
# fitlens server on a database of its own


def _postgres_connection(dbname: str = "postgres") -> Any:
    import psycopg2

    conn = psycopg2.connect(dbname=dbname, connect_timeout=5, **POSTGRES)
    conn.autocommit = True  # CREATE / DROP DATABASE cannot run in a transaction
    return conn


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def tracking_server(folder: Path) -> Iterator[str | None]:
    """The URI of a `fitlens server` (started as a user runs it) on a fresh database; None, with a message,
    when PostgreSQL is unreachable. The server's process group is stopped and the database dropped on exit,
    whatever happened."""
    import psycopg2

    database = f"fitlens_bench_tracking_{os.getpid()}"
    where = f"postgresql://{POSTGRES['user']}@{POSTGRES['host']}:{POSTGRES['port']}"
    try:
        conn = _postgres_connection()
    except psycopg2.OperationalError as err:
        print(f"bench_tracking: PostgreSQL is not reachable at {where} ({' '.join(str(err).split())}); "
              "measuring the embedded store only (start it with `pg_ctlcluster --skip-systemctl-redirect "
              "$(ls /etc/postgresql) main start`)\n", file=sys.stderr)
        yield None
        return
    with contextlib.closing(conn), conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        cur.execute(f'CREATE DATABASE "{database}"')
    proc: subprocess.Popen | None = None
    log_path = folder / "server.log"
    try:
        port = _free_port()
        env = {**os.environ, "FITLENS_BACKEND_URI": f"{where}/{database}",
               "FITLENS_ARTIFACTS_DESTINATION": str(folder / "server-artifacts")}
        with open(log_path, "w") as log:  # a file, not a pipe: a full pipe would stall a chatty server
            # Its own process group: stopping it reaches MLflow's uvicorn workers too.
            proc = subprocess.Popen([FITLENS, "server", "--port", str(port)], env=env, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        uri = f"http://127.0.0.1:{port}"
        _wait_for_health(uri, proc, log_path)
        yield uri
    finally:
        if proc is not None:
            _stop_process_group(proc)
        with contextlib.closing(_postgres_connection()) as conn, conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def _wait_for_health(uri: str, proc: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + SERVER_START_S
    while True:
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            state = f"exited {proc.returncode}" if proc.poll() is not None else f"no answer after {SERVER_START_S} s"
            raise SystemExit(f"bench_tracking: fitlens server on {uri}: {state}:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.3)


def _stop_process_group(proc: subprocess.Popen) -> None:
    """SIGTERM to the server's process group (MLflow stops its workers cleanly), SIGKILL to what lingers."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(SERVER_STOP_S)
    deadline = time.monotonic() + 10  # workers outlive their parent by a moment
    while _group_alive(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


# ----------------------------------------------------------------------------------------------


def _timed(store: str, what: str, measure: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    start = time.perf_counter()
    result = measure()
    print(f"bench_tracking: {store}, {METHODS[what].label if what in METHODS else what}: {result['points']} points "
          f"checked, {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return result


def measure_store(name: str, client: MlflowClient, args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Every method into one store. fitlens is recorded twice: back to back (its points/s: nothing else
    competes for the sender) and with training between snapshots (its block time)."""
    train_s = args.train_ms / 1000
    naive_epochs = args.naive_epochs if is_embedded(client.tracking_uri) else args.naive_server_epochs
    naive = _timed(name, "per_point", lambda: record(client, "per_point", naive_epochs, train_s))
    batched = _timed(name, "per_call", lambda: record(client, "per_call", args.epochs, train_s))
    fast = _timed(name, "fitlens, back to back", lambda: record(client, "fitlens", args.epochs, 0.0))
    training = _timed(name, "fitlens, with training", lambda: record(client, "fitlens", args.epochs, train_s))
    fitlens = {**{k: fast[k] for k in ("points", "seconds", "points_per_s", "flush_s", "sender_start_s",
                                       "sender_stop_s")},
               **{k: training[k] for k in ("snapshots", "block_median_ms", "block_p95_ms", "block_max_ms",
                                           "train_ms")},
               "back_to_back": fast}
    return {"per_point": naive, "per_call": batched, "fitlens": fitlens}


def print_table(results: dict[str, Any]) -> None:
    print(f"Recording metric points on {results['machine']}; total {results['total_s']:.0f} s. Per epoch one "
          f"diagnostics snapshot ({results['snapshot_keys']} keys: 5 layers x weight/grad/act statistics) and "
          f"{results['epoch_keys']} epoch metrics; {results['train_ms']:g} ms of training before each call.\n")
    print("| store | method | points | seconds | points/s | block median (ms) | block p95 (ms) |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for store, rows in results["stores"].items():
        for method, row in rows.items():
            print(f"| {store} | {METHODS[method].label} | {row['points']} | {row['seconds']:.2f} | "
                  f"{row['points_per_s']:.0f} | {row['block_median_ms']:.2f} | {row['block_p95_ms']:.2f} |")
    print("\nseconds: until every point is stored, training excluded; block: the training thread's time in the "
          f"call(s) handing one snapshot over (per point: {results['snapshot_keys']} calls). fitlens: points/s "
          "recorded back to back (no training) until the final flush returns; the sender's start (with its first "
          "request to the store) and stop, once per run, are not counted. Back to back, fitlens' block "
          "median / p95 / max (ms):")
    for store, rows in results["stores"].items():
        fast = rows["fitlens"]["back_to_back"]
        print(f"- {store}: {fast['block_median_ms']:.2f} / {fast['block_p95_ms']:.2f} / {fast['block_max_ms']:.2f}; "
              f"sender start {rows['fitlens']['sender_start_s']:.1f} s, stop {rows['fitlens']['sender_stop_s']:.1f} s")
    if "server_start_s" in results:
        print(f"- fitlens server: up in {results['server_start_s']:.0f} s (a fresh database: MLflow's migrations)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=200,
                        help="epochs (one snapshot each) for log_batch and fitlens (default: 200)")
    parser.add_argument("--naive-epochs", type=int, default=4,
                        help="epochs for per-point logging into the embedded store, which is slow (default: 4)")
    parser.add_argument("--naive-server-epochs", type=int, default=2,
                        help="likewise into the server, slower still (default: 2)")
    parser.add_argument("--train-ms", type=float, default=20.0,
                        help="training before each logger call, ms (default: 20, less than the ~170 ms of the "
                        "default run's 100 steps between snapshots: the writer is pressed harder than in a fit)")
    parser.add_argument("--no-server", action="store_true", help="measure the embedded store only")
    parser.add_argument("--json", metavar="FILE", help="also write the numbers here")
    args = parser.parse_args()
    quiet_libraries()
    # SIGTERM unwinds like Ctrl-C, so the server is stopped and its database dropped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    torch.set_num_threads(torch_threads(load_config()))  # as fitlens train does: every core but one
    machine = (f"{os.cpu_count()} cores ({torch.get_num_threads()} torch thread(s) training), shared and noisy: "
               f"load average {os.getloadavg()[0]:.1f} at the start")
    started = time.perf_counter()
    results: dict[str, Any] = {"machine": machine, "snapshot_keys": len(snapshot_keys()),
                               "epoch_keys": len(EPOCH_KEYS), "train_ms": args.train_ms, "stores": {}}
    with tempfile.TemporaryDirectory(prefix="fitlens-bench-tracking-") as tmp:
        folder = Path(tmp)
        embedded = client_for(f"sqlite:///{folder / 'mlflow.db'}")
        results["stores"][EMBEDDED] = measure_store(EMBEDDED, embedded, args)
        if not args.no_server:
            server_started = time.perf_counter()
            with tracking_server(folder) as uri:
                if uri is not None:
                    results["server_start_s"] = time.perf_counter() - server_started
                    results["stores"][SERVER] = measure_store(SERVER, client_for(uri), args)
    results["total_s"] = time.perf_counter() - started
    results["machine"] += f", {os.getloadavg()[0]:.1f} at the end"
    print_table(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

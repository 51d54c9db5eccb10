"""The sender process of a `RunWriter`: reads jobs from its stdin and runs them against the store.

Started as `python -m tracking.sender URI RUN_ID RETRY_FOR_S` (a plain subprocess, so no user script is
re-imported, as multiprocessing's spawn would). Messages are pickles on a private pipe between the two
processes of one run: (job, args) runs job(client, run_id, *args); ("flush", token) is answered on
stdout with (token, failures) once everything before it is stored; None or the end of stdin stops it.
"""

from __future__ import annotations

import logging
import os
import pickle
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

Point = tuple[str, float, int, int]  # key, value, timestamp in ms, step


def run_with_retries(job: Callable[[], None], retry_for_s: float, failures: list[str]) -> None:
    """Run `job`, retrying with backoff while the store is away, for at most `retry_for_s` seconds;
    a job that still fails is recorded in `failures`."""
    deadline = time.monotonic() + retry_for_s
    delay = 0.5
    while True:
        try:
            job()
            return
        except Exception as err:  # the store's errors are many and varied; all are worth a retry
            if time.monotonic() + delay > deadline:
                failures.append(f"{type(err).__name__}: {err}")
                log.error("fitlens: giving up on a write: %s", err)
                return
            time.sleep(delay)
            delay = min(2 * delay, 5.0)


def log_points(client, run_id: str, points: list[Point]) -> None:
    """Job: one log_batch of metric points."""
    from mlflow.entities import Metric

    client.log_batch(run_id, metrics=[Metric(key, value, timestamp, step) for key, value, timestamp, step in points])


def log_artifact(client, run_id: str, local_path: str, artifact_path: str | None, delete: bool) -> None:
    """Job: upload a file, then remove it when `delete`."""
    client.log_artifact(run_id, local_path, artifact_path)
    if delete:
        Path(local_path).unlink(missing_ok=True)


def main(argv: list[str]) -> int:
    uri, run_id, retry_for_s = argv[0], argv[1], float(argv[2])
    # Ctrl-C and SIGTERM are for the training process, which then flushes through us: keep running.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    inbox = sys.stdin.buffer
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    sys.stdout = sys.stderr  # nothing but answers may reach the pipe
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    # Against a tracking server, MLflow's HTTP client retries a refused connection itself, waiting up to 2 min
    # between tries: a server back after a minute's outage would see the points a minute later still, and
    # retry_for_s would bound nothing. One try per attempt leaves the waiting to run_with_retries (<= 5 s apart,
    # within retry_for_s); an explicit MLFLOW_HTTP_REQUEST_MAX_RETRIES is kept.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    failures: list[str] = []
    while True:
        try:
            message = pickle.load(inbox)
        except EOFError:
            return 0  # the training process is gone: everything it sent is stored
        if message is None:
            return 0
        if message[0] == "flush":
            pickle.dump((message[1], failures), answers)
            answers.flush()
            failures = []
            continue
        job, args = message
        run_with_retries(lambda job=job, args=args: job(client, run_id, *args), retry_for_s, failures)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

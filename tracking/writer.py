"""The one path that writes MLflow: a run's buffered metric points, artifacts and params, sent by a separate
sender process (`RunWriter`; `tracking.logger` is the Lightning logger over it), and the few direct writes
(experiments, runs, tags, status, small artifacts) as functions, each retried while the embedded store is locked.

As MLflow's own Lightning autolog (`BatchMetricsLogger`): the writer is handed its client and run id
(no global active run), logs from rank zero only, and sends points in batches, flushing at the end.
Unlike it, the sending happens in another process: MLflow's store spends ~0.1 ms of Python per point,
which on a training thread's GIL (or on a thread beside it) would slow every step near a snapshot.
The training process only queues plain tuples.
"""

from __future__ import annotations

import json
import pickle
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from mlflow.entities import Param, Run
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from tracking import sender
from tracking.layout import ERROR_TAG, RUN_INFO_FIELDS, TRIALS_FILE, TRIALS_TAG, TRIALS_VERSION
from tracking.sender import Point
from tracking.store import EMBEDDED_ARTIFACTS, embedded_folder, is_embedded, latest_metrics, retrying

MAX_METRICS_PER_BATCH = 1000  # MLflow's log_batch limit
MAX_PARAMS_PER_BATCH = 100  # likewise, for params
MAX_PARAM_LENGTH = 6000  # longer values are refused by the store
MAX_TAG_LENGTH = 5000  # a tag value is cut to this (an error message, a trial's point)



class RunWriter:
    """Sends the metric points and artifacts of one MLflow run from a sender process; params synchronously."""

    def __init__(
        self, client: MlflowClient, run_id: str, flush_every_s: float = 2.0, retry_for_s: float = 120.0,
        stored_steps: Mapping[str, int] | None = None,
    ) -> None:
        self.client = client
        self.run_id = run_id
        # A resumed run (a retried trial) recomputes the steps after its checkpoint: points at a step
        # the store already has for that key were sent before the crash and are not sent twice.
        self.stored_steps = dict(stored_steps or {})
        # Points wait at most this long, so a live view of the run stays current.
        self.flush_every_s = flush_every_s
        self.failures: list[str] = []
        self._pending: list[Point] = []
        self._lock = threading.Lock()
        self._last_send = time.monotonic()
        self._flushes = 0
        # Its own session: Ctrl-C in a terminal reaches the training process, which flushes, not the sender.
        self._sender = subprocess.Popen(
            [sys.executable, "-m", "tracking.sender", client.tracking_uri, run_id, str(retry_for_s)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True)
        # A feeder thread writes to the pipe, so a full pipe never blocks the training thread.
        self._outbox: queue.Queue[Any] = queue.Queue()
        self._feeder = threading.Thread(target=self._feed, name=f"fitlens-feeder-{run_id[:8]}", daemon=True)
        self._feeder.start()

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        """Queue one point per metric at `step`; sent when a batch is full or `flush_every_s` has passed."""
        now_ms = int(time.time() * 1000)
        step = int(step)
        points = [(key, float(value), now_ms, step) for key, value in metrics.items()
                  if step > self.stored_steps.get(key, -1)]
        with self._lock:
            self._pending.extend(points)
            full = len(self._pending) >= MAX_METRICS_PER_BATCH
            due = full or time.monotonic() - self._last_send >= self.flush_every_s
        if due:
            self._send_pending()

    @property
    def sender_pid(self) -> int:
        """The process id of the sender (a restarted trial waits for a dead trial's sender to finish)."""
        return self._sender.pid

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log params now, synchronously (they are few, fixed, and wanted before training starts)."""
        log_params(self.client, self.run_id, params)

    def submit(self, job: Callable[..., None], *args: Any) -> None:
        """Run job(client, run_id, *args) in the sender, after everything submitted before it; `job` is a
        module-level function (it travels by name)."""
        self._outbox.put((job, args))

    def log_artifact(self, local_path: Path, artifact_path: str | None = None, delete: bool = False) -> None:
        """Upload a file from the sender; `delete` removes the local file once it is stored."""
        self.submit(sender.log_artifact, str(local_path), artifact_path, delete)

    def flush(self) -> None:
        """Send every queued point and artifact, and wait until the store has them."""
        self._send_pending()
        self._flushes += 1
        self._outbox.put(("flush", self._flushes))
        while True:
            try:
                token, failures = pickle.load(self._sender.stdout)
            except EOFError:
                raise RuntimeError(f"the MLflow sender of run {self.run_id} stopped "
                                   f"(exit code {self._sender.poll()})") from None
            self.failures.extend(failures)
            if token == self._flushes:
                return

    def close(self) -> None:
        """Flush and stop the sender."""
        if self._sender.poll() is not None:
            return
        self.flush()
        self._outbox.put(None)
        self._feeder.join(timeout=30)
        self._sender.wait(timeout=30)

    def _send_pending(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, []
            self._last_send = time.monotonic()
        for batch in metric_batches(pending):
            self.submit(sender.log_points, batch)

    def _feed(self) -> None:
        pipe = self._sender.stdin
        while True:
            message = self._outbox.get()
            try:
                pickle.dump(message, pipe)
                pipe.flush()
                if message is None:
                    pipe.close()
                    return
            except (BrokenPipeError, ValueError):
                return  # the sender is gone; flush() reports it


# ----------------------------------------------------------------------------------------------
# Direct writes: experiments, runs, tags, status and small artifacts


def experiment_id(client: MlflowClient, name: str) -> str:
    """The id of experiment `name`, created if missing; an embedded store keeps its artifacts beside the db."""
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    uri = client.tracking_uri
    location = (embedded_folder(uri) / EMBEDDED_ARTIFACTS).resolve().as_uri() if is_embedded(uri) else None
    try:
        return retrying(client.create_experiment, name, artifact_location=location)
    except MlflowException:
        # Another process created it between our look-up and create: use theirs.
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


def create_run(client: MlflowClient, experiment: str, run_name: str, tags: Mapping[str, str]) -> str:
    """A new RUNNING run in the experiment of id `experiment`; its run id."""
    tags = {key: str(value)[:MAX_TAG_LENGTH] for key, value in tags.items()}
    return retrying(client.create_run, experiment, run_name=run_name, tags=tags).info.run_id


def reopen_run(client: MlflowClient, run_id: str) -> None:
    """Mark a run RUNNING again (a resumed sweep, a retried trial)."""
    retrying(client.update_run, run_id, status="RUNNING")


def end_run(client: MlflowClient, run_id: str, status: str, error: str | None = None) -> None:
    """Close a run as `status` (FINISHED, FAILED, KILLED), with `error` in ERROR_TAG when given."""
    if error:
        set_tags(client, run_id, {ERROR_TAG: error})
    retrying(client.set_terminated, run_id, status)


def set_tags(client: MlflowClient, run_id: str, tags: Mapping[str, str]) -> None:
    """Set each tag of `tags` on the run, values cut to MAX_TAG_LENGTH."""
    for key, value in tags.items():
        retrying(client.set_tag, run_id, key, str(value)[:MAX_TAG_LENGTH])


def log_value(client: MlflowClient, run_id: str, key: str, value: float) -> None:
    """One metric point now (a sweep's best value, once): points of a fit go through `RunWriter`."""
    retrying(client.log_metric, run_id, key, value)


def log_text(client: MlflowClient, run_id: str, text: str, artifact_file: str) -> None:
    """A small text artifact (config.yaml, search_space.yaml, a report) at `artifact_file`."""
    retrying(client.log_text, run_id, text, artifact_file)


def log_json(client: MlflowClient, run_id: str, doc: Any, artifact_file: str, indent: int | None = None) -> None:
    """A JSON artifact at `artifact_file`."""
    log_text(client, run_id, json.dumps(doc, indent=indent), artifact_file)


def log_file(client: MlflowClient, run_id: str, local_path: str, artifact_dir: str | None = None) -> None:
    """Upload a file into the run's folder `artifact_dir` now (the kept checkpoint, after the fit)."""
    retrying(client.log_artifact, run_id, local_path, artifact_dir)


def run_doc(run: Run) -> dict[str, Any]:
    """A run as TRIALS_FILE keeps it (`tracking.reader.run_from_doc` reads it back)."""
    return {"info": {name: getattr(run.info, name) for name in RUN_INFO_FIELDS},
            "params": run.data.params, "tags": run.data.tags,
            "metrics": [[m.key, m.value, m.timestamp, m.step] for m in latest_metrics(run)]}


def write_trials(client: MlflowClient, parent: Run, runs: Iterable[Run]) -> None:
    """Keep the trial runs of the FINISHED sweep `parent` in its TRIALS_FILE, tagged with the sweep's end time: a
    reader trusts the file only while the parent has that end time."""
    log_json(client, parent.info.run_id, {"version": TRIALS_VERSION, "runs": [run_doc(run) for run in runs]},
             TRIALS_FILE)
    set_tags(client, parent.info.run_id, {TRIALS_TAG: str(parent.info.end_time)})


def log_params(client: MlflowClient, run_id: str, params: Mapping[str, Any]) -> None:
    """Log params in batches MLflow accepts, long values cut to what the store keeps."""
    items = [Param(key, _param_text(value)) for key, value in params.items()]
    for start in range(0, len(items), MAX_PARAMS_PER_BATCH):
        retrying(client.log_batch, run_id, params=items[start : start + MAX_PARAMS_PER_BATCH])


def metric_batches(points: list[Point]) -> Iterable[list[Point]]:
    """`points` in batches of at most MAX_METRICS_PER_BATCH, in order."""
    for start in range(0, len(points), MAX_METRICS_PER_BATCH):
        yield points[start : start + MAX_METRICS_PER_BATCH]


def _param_text(value: Any) -> str:
    text = "null" if value is None else str(value)
    return text if len(text) <= MAX_PARAM_LENGTH else text[: MAX_PARAM_LENGTH - 3] + "..."

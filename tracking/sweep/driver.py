"""`fitlens sweep`'s own process: a sweep file run on Ray Tune and recorded in MLflow.

One parent run per sweep (the sweep file as `search_space.yaml`, the best trial) and one child run per trial
(`tracking.sweep.trial`), with the full run layout of `fitlens train`. The driver closes a child run when the
trial's process cannot: a scheduler's stop (`tracking.sweep.scheduler`), a process that died more often than
`max_failures`, an interrupted sweep.

Writes: each trial's own sender process writes its points, in batches, straight to the store. On the embedded
SQLite store concurrent trials take turns on its write lock; every write is retried while the store is locked,
and a retried batch is never stored twice (MLflow drops a point equal to a stored one), so concurrent trials lose
no points and no lock error reaches the user.

An interrupted sweep is continued by running the same command again (or `fitlens sweep --resume`). When a sweep
finishes, its parent run keeps its trial runs in its trials file (`tracking.writer.write_trials`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import shutil
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ray
from ray import tune

from tracking.layout import (
    BEST_RUN_TAG,
    KIND_SWEEP,
    KIND_TAG,
    REFINED_FROM_TAG,
    SEARCH_SPACE_FILE,
    STOPPED_TAG,
    STUDY_TAG,
    SWEEP_HASH_TAG,
)
from tracking.reader import find_trial_run, get_run, runs_by_trial_id, search_trial_runs, unfinished_parent
from tracking.store import client_for, embedded_folder, is_embedded, quiet_libraries, tracking_uri
from tracking.sweep.scheduler import make_scheduler, make_searcher
from tracking.sweep.space import to_tune
from tracking.sweep.summary import sweep_summary
from tracking.sweep.trial import TrialJob, run_trial
from tracking.sweep_config import SweepConfig, dump_sweep, with_smoke
from tracking.writer import (
    create_run,
    end_run,
    experiment_id,
    log_params,
    log_text,
    log_value,
    reopen_run,
    set_tags,
    write_trials,
)

if TYPE_CHECKING:  # annotations only: MLflow is read and written through tracking.reader and tracking.writer
    from mlflow.tracking import MlflowClient

SWEEPS_DIR = "sweeps"  # Tune's experiment folders, beside an embedded store (else in the working directory)
MAX_ERROR_LENGTH = 5000


def run_sweep(
    sweep: SweepConfig, uri: str | None = None, smoke: bool = False, resume: bool = True,
    refined_from: str | None = None, progress: bool = False,
) -> dict[str, Any]:
    """Run `sweep` (continuing the unfinished run of the same sweep when `resume`); returns the summary
    that `fitlens sweep --json` prints."""
    quiet_libraries()
    if smoke:
        sweep = with_smoke(sweep)
    uri = tracking_uri(uri)
    client = client_for(uri)
    exp_id = experiment_id(client, sweep.base.experiment)
    identity = sweep_hash(sweep, uri)
    parent = unfinished_parent(client, exp_id, identity) if resume else None
    if parent is None:
        parent = _create_parent(client, exp_id, sweep, identity, refined_from)
        resumed = False
    else:
        reopen_run(client, parent)
        resumed = True
    folder = sweeps_folder(uri)
    job = TrialJob(sweep, parent, exp_id, uri)
    if resumed:
        # Runs left RUNNING by a driver that died (SIGKILL) are KILLED; the trials Tune continues reopen theirs.
        _close_running_trials(client, job)
    started_ray = False
    try:
        started_ray = _init_ray()  # inside: a cluster that refuses the driver leaves the parent KILLED, not RUNNING
        results = _tune(job, folder, resumed, progress)
    except BaseException:
        _close_running_trials(client, job)
        end_run(client, parent, "KILLED")
        raise
    finally:
        if started_ray:
            ray.shutdown()
    summary = sweep_summary(job, results, runs_by_trial_id(client, parent))
    # Ctrl-C: Tune's own handler stops the trials and saves the experiment, and fit() returns. Some trials
    # then have no run, or one that is not closed (scheduler stops and failures are closed by now).
    closed = [t for t in summary["trials"] if t["status"] in ("FINISHED", "FAILED")]
    interrupted = len(closed) < sweep.num_trials
    summary |= {"resumed": resumed, "interrupted": interrupted}
    if interrupted:
        _close_running_trials(client, job)
        end_run(client, parent, "KILLED")
        return summary
    if summary["best_run_id"]:
        set_tags(client, parent, {BEST_RUN_TAG: summary["best_run_id"]})
        log_value(client, parent, f"best/{sweep.metric}", summary["best_value"])
    end_run(client, parent, "FINISHED")
    try:
        finished = get_run(client, parent)
        write_trials(client, finished, search_trial_runs(client, finished))
    except Exception as err:  # the sweep is done; only reading it back gets slower
        print(f"fitlens sweep: the trials file was not written ({type(err).__name__}: {err}); readers search "
              "the store instead", file=sys.stderr)
    _remove_tune_state(folder, parent)
    return summary


def sweep_hash(sweep: SweepConfig, uri: str) -> str:
    """What makes two commands the same sweep: the sweep as run (after --smoke) and the store."""
    return hashlib.sha256(f"{uri}\n{dump_sweep(sweep)}".encode()).hexdigest()[:16]


def sweeps_folder(uri: str) -> str:
    """Where Tune keeps each sweep's state and trial checkpoints: beside an embedded store, else in the
    working directory. FITLENS_SWEEPS_DIR overrides both: a folder, or a storage URI Ray takes (s3://,
    gs://, file://). On a cluster of several machines every node writes its trials' checkpoints there, so
    it must be one they all reach (Ray fails a trial that reports a checkpoint to a folder it cannot see)."""
    given = os.environ.get("FITLENS_SWEEPS_DIR")
    if given:
        return given.rstrip("/") if "://" in given else str(Path(given).resolve())
    if is_embedded(uri):
        return str(embedded_folder(uri).resolve() / SWEEPS_DIR)
    return str(Path.cwd() / SWEEPS_DIR)


def _remove_tune_state(folder: str, parent_run_id: str) -> None:
    """Tune's state of a FINISHED sweep and its trials' checkpoints (every epoch's: see `_tune`) are removed
    from a local folder: a finished sweep is never continued (the same command starts a new one), and each
    trial's kept best checkpoint is in its MLflow run. Under a storage URI they are left to the user."""
    if "://" not in folder:
        shutil.rmtree(Path(folder) / parent_run_id, ignore_errors=True)


def _create_parent(client: MlflowClient, exp_id: str, sweep: SweepConfig, identity: str,
                   refined_from: str | None) -> str:
    tags = {SWEEP_HASH_TAG: identity, KIND_TAG: KIND_SWEEP, STUDY_TAG: sweep.name}
    if refined_from:
        tags[REFINED_FROM_TAG] = refined_from
    run_id = create_run(client, exp_id, f"{sweep.name}-sweep-{uuid.uuid4().hex[:6]}", tags)
    params = {
        "search": sweep.search, "scheduler": sweep.scheduler, "num_samples": sweep.num_samples,
        "trials": sweep.num_trials, "metric": sweep.metric, "max_concurrent": sweep.max_concurrent,
        **{f"resources.{k}": v for k, v in dataclasses.asdict(sweep.resources).items()},
        **{f"space.{key}": json.dumps(dist.to_dict()) for key, dist in sweep.space.items()},
    }
    log_params(client, run_id, params)
    log_text(client, run_id, dump_sweep(sweep), SEARCH_SPACE_FILE)
    return run_id


def _init_ray() -> bool:
    """Join the cluster at RAY_ADDRESS, else start a local one; True when this process started it."""
    if ray.is_initialized():
        return False
    env = {"RAY_CHDIR_TO_TRIAL_DIR": "0"}  # trials see the working directory's relative paths (CSV data)
    os.environ.update(env)
    # Tune's own tables and hints would bury the one line per trial that fitlens prints.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # A checkpoint per epoch is the design (a killed trial loses at most one epoch), not a mistake to warn of.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    logging.getLogger("ray.tune").setLevel(logging.WARNING)
    logging.getLogger("ray.tune.analysis").setLevel(logging.ERROR)  # "no result.json" of a never-started trial
    runtime_env = {"env_vars": env}
    if os.environ.get("RAY_ADDRESS"):
        ray.init(address=os.environ["RAY_ADDRESS"], runtime_env=runtime_env, log_to_driver=False)
    else:
        ray.init(num_cpus=len(os.sched_getaffinity(0)), include_dashboard=False, runtime_env=runtime_env,
                 log_to_driver=False, logging_level=logging.WARNING)
    return True


def _tune(job: TrialJob, folder: str, resumed: bool, progress: bool) -> Any:
    sweep = job.sweep
    trainable = tune.with_parameters(run_trial, job=job)
    res = sweep.resources
    if res.workers > 1:
        # The trial only drives the TorchTrainer; its workers hold the CPUs and GPUs (0 is refused).
        trainable = tune.with_resources(trainable, {"cpu": 0.01})
    else:
        trainable = tune.with_resources(trainable, {"cpu": res.cpus, "gpu": res.gpus})
    path = f"{folder}/{job.parent_run_id}"  # a folder or a URI
    if resumed and tune.Tuner.can_restore(path):
        tuner = tune.Tuner.restore(path, trainable, resume_unfinished=True, resume_errored=True,
                                   param_space=_param_space(job))
    else:
        tune_config = tune.TuneConfig(
            # max_concurrent is the searcher's own: Tune ignores max_concurrent_trials beside a searcher object.
            metric=sweep.metric, mode="min", num_samples=sweep.num_samples, scheduler=make_scheduler(job),
            search_alg=make_searcher(sweep),
        )
        run_config = tune.RunConfig(
            name=job.parent_run_id, storage_path=folder, verbose=0, callbacks=[TrialRuns(job, progress)],
            failure_config=tune.FailureConfig(max_failures=sweep.max_failures),
            # Keep them all. PBT restores a trial from another trial's checkpoint, which must still be there; and
            # Tune deletes a trial's old checkpoints before it saves the experiment state that stops naming
            # them, so a driver killed in between (SIGKILL) would leave a state that no resume can restore.
            checkpoint_config=tune.CheckpointConfig(num_to_keep=None),
        )
        tuner = tune.Tuner(trainable, param_space=_param_space(job), tune_config=tune_config, run_config=run_config)
    return tuner.fit()


def _param_space(job: TrialJob) -> dict[str, Any]:
    return {key: to_tune(dist) for key, dist in job.sweep.space.items()}


class TrialRuns(tune.Callback):
    """Closes the run of a trial that could not close it itself (stopped by a scheduler, or its process
    died too often), and prints one line per finished trial (and per epoch with `progress`)."""

    def __init__(self, job: TrialJob, progress: bool) -> None:
        self.job = job
        self.progress = progress
        self.ended: set[str] = set()

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        if self.progress:
            print(f"  trial {trial.trial_id} epoch {result.get('epoch')}: {self.job.sweep.metric} "
                  f"{result.get(self.job.sweep.metric, math.nan):.4f}", flush=True)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._close(trial.trial_id, "FINISHED", None)
        self.ended.add(trial.trial_id)
        print(f"trial {trial.trial_id} done ({len(self.ended)}/{self.job.sweep.num_trials} this session)", flush=True)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        try:
            error = trial.get_pickled_error()
        except Exception:  # the error file is gone or unreadable: say what is known
            error = None
        last = f"; the last error: {type(error).__name__}: {error}" if error is not None else ""
        self._close(trial.trial_id, "FAILED", f"the trial failed {self.job.sweep.max_failures + 1} times "
                    f"(max_failures = {self.job.sweep.max_failures}){last}"[:MAX_ERROR_LENGTH])
        self.ended.add(trial.trial_id)
        print(f"trial {trial.trial_id} failed ({len(self.ended)}/{self.job.sweep.num_trials} this session)",
              flush=True)

    def _close(self, trial_id: str, status: str, error: str | None) -> None:
        client = client_for(self.job.tracking_uri)
        run_id = find_trial_run(client, self.job.experiment_id, self.job.parent_run_id, trial_id)
        if run_id is None:
            return
        run = get_run(client, run_id)
        if run.info.status != "RUNNING":
            return  # the trial closed it
        if status == "FINISHED" and STOPPED_TAG not in run.data.tags:
            return  # stopped because the sweep is interrupted: KILLED, and continued on resume
        end_run(client, run_id, status, error)


def _close_running_trials(client: MlflowClient, job: TrialJob) -> None:
    """An interrupted sweep: its trials' runs are KILLED until the sweep is continued."""
    for run in runs_by_trial_id(client, job.parent_run_id).values():
        if run.info.status == "RUNNING":
            end_run(client, run.info.run_id, "KILLED")

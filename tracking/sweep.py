"""`fitlens sweep`: a sweep file run on Ray Tune and recorded in MLflow.

One parent run per sweep (the sweep file as `search_space.yaml`, the best trial) and one child run
per trial, with the full run layout of `fitlens train` (params, config.yaml, curves, diagnostics,
the kept checkpoint). Trials are Ray Tune function trainables; a trial with one worker fits in its
own process with Lightning, a trial with N workers runs Ray Train's TorchTrainer with Lightning's
Ray DDP strategy inside the Tune trial (the Ray 2.60 pattern: a Trainer is not handed to a Tuner).

Who closes a child run: the trial itself when its fit ends (FINISHED, FAILED with the error, or
tagged diverged); the driver when the trial's process cannot: a scheduler's stop (ASHA, tagged
with where and why), a process that died more often than `max_failures`, an interrupted sweep.

Writes: each trial's own sender process writes its points, in batches, straight to the store. On
the embedded SQLite store concurrent trials take turns on its write lock; every write is retried
while the store is locked, and a retried batch is never stored twice (MLflow drops a point equal to
a stored one), so concurrent trials lose no points and no lock error reaches the user.

Fault tolerance: a trial reports (and Tune keeps) a checkpoint at the end of every epoch, after its
points are stored. A trial whose process dies is restarted from its last checkpoint, reopens its
own MLflow run (found by the trial id) and does not send again the points the store already has.
An interrupted sweep is continued by running the same command again (or `fitlens sweep --resume`).
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
import tempfile
import threading
import time
import uuid
from collections.abc import Mapping
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import ray
from mlflow.tracking import MlflowClient
from ray import tune
from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler, PopulationBasedTraining, TrialScheduler

from lightning_modules.config import RunConfig
from tracking.config import config_from_dict, config_to_dict
from tracking.layout import (
    BEST_RUN_TAG,
    DIVERGED_TAG,
    ERROR_TAG,
    HOST_TAG,
    PARENT_RUN_TAG,
    POINT_TAG,
    RAY_NODE_TAG,
    REFINED_FROM_TAG,
    RESUMED_TAG,
    SEARCH_SPACE_FILE,
    STOPPED_TAG,
    SWEEP_HASH_TAG,
    SWEEP_KIND_TAG,
    SWEEP_TAG,
    TRIAL_TAG,
)
from tracking.recording import Recording, recorded_run, stored_steps
from tracking.store import client_for, experiment_id, is_embedded, quiet_libraries, retrying, tracking_uri
from tracking.sweep_config import SweepConfig, apply, dump_sweep, with_smoke
from tracking.sweep_store import search_trials, write_trials
from tracking.train import Prepared, fit, prepare
from tracking.writer import RunWriter, log_params

CHECKPOINT_FILE = "last.ckpt"  # inside each Tune checkpoint of a one-worker trial
SENDER_FILE = "sender.json"  # beside it: the sender process that stored the points up to it
SWEEPS_DIR = "sweeps"  # Tune's experiment folders, beside an embedded store (else in the working directory)


@dataclass(frozen=True)
class TrialJob:
    """What every trial of a sweep needs, shipped once to Ray's object store."""

    sweep: SweepConfig
    parent_run_id: str
    experiment_id: str
    tracking_uri: str
    searcher: bool  # a model-based searcher (TPE) draws log_one_minus keys as 1 - beta

    def trial_config(self, point: Mapping[str, Any], trial_id: str) -> RunConfig:
        """The run config of the trial at `point` (Tune's config: the space's keys)."""
        values = self.values(point)
        cfg = apply(self.sweep.base, values)
        threads = cfg.train.threads or max(1, math.floor(self.sweep.resources.cpus))
        return dataclasses.replace(
            cfg, run_name=f"{self.sweep.name}-{trial_id}", train=dataclasses.replace(cfg.train, threads=threads)
        )

    def values(self, point: Mapping[str, Any]) -> dict[str, Any]:
        """The run-config values of Tune's config (1 - x back to beta for a searched log_one_minus key)."""
        return {key: self.sweep.space[key].from_tune(point[key], self.searcher) for key in self.sweep.space}


# ----------------------------------------------------------------------------------------------
# inside a trial (a Ray worker process)


def run_trial(point: dict[str, Any], job: TrialJob) -> None:
    """The Tune function trainable: one trial, recorded as one child run of the sweep."""
    quiet_libraries()
    trial_id = tune.get_context().get_trial_id()
    cfg = job.trial_config(point, trial_id)
    pl.seed_everything(cfg.train.seed, workers=True, verbose=False)
    try:
        prepared: Prepared | Exception = prepare(cfg)
    except Exception as err:  # this trial's config cannot be built (a data file, say): its run says why
        prepared = err
    client = client_for(job.tracking_uri)
    existing = find_trial_run(client, job.experiment_id, job.parent_run_id, trial_id)
    checkpoint = tune.get_checkpoint()
    tags = {
        PARENT_RUN_TAG: job.parent_run_id, SWEEP_TAG: job.parent_run_id, TRIAL_TAG: trial_id,
        POINT_TAG: json.dumps(job.values(point), default=str)[:5000],
        "fitlens.dataset": cfg.data.name, "fitlens.arch": cfg.module or cfg.model.arch,
        RAY_NODE_TAG: ray.get_runtime_context().get_node_id(), HOST_TAG: os.uname().nodename,
    }
    if existing is not None and checkpoint is not None:
        _wait_for_old_sender(checkpoint, existing)
    try:
        _record_trial(job, cfg, prepared, client, tags, existing, checkpoint)
    except Exception as err:
        # The run is FAILED with the error. An exception is the same on every attempt, so the trial ends
        # here; only a process that dies (Tune sees its actor die) is retried, up to max_failures. Its
        # metric is NaN for Tune: never the best, and a failed trial to Optuna.
        print(f"fitlens: trial {trial_id} failed: {type(err).__name__}: {err}", file=sys.stderr)
        tune.report({job.sweep.metric: math.nan, "epoch": -1})


def _record_trial(job: TrialJob, cfg: RunConfig, prepared: Prepared | Exception, client: MlflowClient,
                  tags: dict[str, str], existing: str | None, checkpoint: tune.Checkpoint | None) -> None:
    trial_id = tags[TRIAL_TAG]
    config = cfg if isinstance(prepared, Exception) else prepared.config
    with recorded_run(config, job.tracking_uri, tags, resume_run_id=existing) as run:
        if isinstance(prepared, Exception):
            raise prepared
        if existing is not None:  # PBT changes a trial's point when it exploits another trial; a retry may
            for key in (POINT_TAG, RAY_NODE_TAG, HOST_TAG):  # run on another node
                retrying(client.set_tag, run.run_id, key, tags[key])
        if job.sweep.resources.workers > 1:
            _fit_data_parallel(job, prepared.config, run.run_id, trial_id)
            return
        workdir = Path(tune.get_context().get_trial_dir()) / "best"
        with checkpoint.as_directory() if checkpoint is not None else nullcontext(None) as restored:
            resume_from = None
            if restored is not None:
                resume_from = str(Path(restored) / CHECKPOINT_FILE)
                epoch = json.loads((Path(restored) / SENDER_FILE).read_text())["epoch"]
                retrying(client.set_tag, run.run_id, RESUMED_TAG, f"from the checkpoint of epoch {epoch}")
            fit(prepared, run, callbacks=[TuneReport(run.writer)], workdir=str(workdir), resume_from=resume_from)


def find_trial_run(client: MlflowClient, exp_id: str, parent_run_id: str, trial_id: str) -> str | None:
    """The run id of a sweep's trial, None before its first start."""
    runs = retrying(client.search_runs, [exp_id], max_results=1,
                    filter_string=f"tags.`{SWEEP_TAG}` = '{parent_run_id}' and tags.`{TRIAL_TAG}` = '{trial_id}'")
    return runs[0].info.run_id if runs else None


def _wait_for_old_sender(checkpoint: tune.Checkpoint, run_id: str, wait_s: float = 120.0) -> None:
    """A restarted trial reads what its run already holds: first let the dead process's sender (on this
    node) store what it was handed, so nothing is counted missing and then sent twice. (A checkpoint of
    another trial, which PBT hands over, has a live sender of its own: not waited for.)"""
    with checkpoint.as_directory() as folder:
        info = json.loads((Path(folder) / SENDER_FILE).read_text())
    if info.get("host") != os.uname().nodename or info.get("run_id") != run_id:
        return
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            os.kill(info["pid"], 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)


def _tune_metrics(callback_metrics: Mapping[str, Any]) -> dict[str, float]:
    return {key: float(value) for key, value in callback_metrics.items()
            if key.split("/")[0] in ("train", "dev") and not key.startswith("best/")}


class TuneReport(pl.Callback):
    """At the end of each epoch: store the epoch's points, save a checkpoint and report the epoch's metrics
    with it to Tune (which stops, keeps or restores the trial on them)."""

    def __init__(self, writer: RunWriter) -> None:
        self.writer = writer

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        metrics = _tune_metrics(trainer.callback_metrics)
        self.writer.flush()  # the checkpoint is reported after the points it covers are stored
        with tempfile.TemporaryDirectory(prefix="fitlens-trial-") as folder:
            trainer.save_checkpoint(Path(folder) / CHECKPOINT_FILE)
            info = {"pid": self.writer.sender_pid, "host": os.uname().nodename, "run_id": self.writer.run_id,
                    "epoch": trainer.current_epoch}
            (Path(folder) / SENDER_FILE).write_text(json.dumps(info))
            try:
                tune.report({**metrics, "epoch": trainer.current_epoch},
                            checkpoint=tune.Checkpoint.from_directory(folder))
            except SystemExit:
                # Tune stopped the trial (a scheduler, or the sweep is interrupted) and is tearing the
                # process down; the driver closes the run, so nothing more is written from here.
                threading.Event().wait()


def _fit_data_parallel(job: TrialJob, cfg: RunConfig, run_id: str, trial_id: str) -> None:
    """N workers with Ray Train's TorchTrainer and Lightning's Ray DDP strategy; rank 0 records."""
    from ray import train as ray_train
    from ray.train.torch import TorchTrainer
    from ray.tune import get_context
    from ray.tune.integration.ray_train import TuneReportCallback

    res = job.sweep.resources
    per_worker = {"CPU": res.cpus, **({"GPU": res.gpus} if res.gpus else {})}
    trainer = TorchTrainer(
        _data_parallel_worker,
        train_loop_config={"config": config_to_dict(cfg), "tracking_uri": job.tracking_uri, "run_id": run_id},
        scaling_config=ray_train.ScalingConfig(num_workers=res.workers, use_gpu=res.gpus > 0,
                                               resources_per_worker=per_worker),
        run_config=ray_train.RunConfig(name=f"ddp-{trial_id}", storage_path=get_context().get_trial_dir(),
                                       callbacks=[TuneReportCallback()]),
    )
    trainer.fit()


def _data_parallel_worker(loop_config: dict[str, Any]) -> None:
    """One Ray Train worker: the same fit as `fitlens train`, on a DDP strategy over gloo (CPU) or NCCL."""
    from ray import train as ray_train
    from ray.train.lightning import RayDDPStrategy, RayLightningEnvironment

    quiet_libraries()
    cfg = config_from_dict(loop_config["config"])
    pl.seed_everything(cfg.train.seed, workers=True, verbose=False)
    prepared = prepare(cfg)
    client = client_for(loop_config["tracking_uri"])
    run_id = loop_config["run_id"]
    rank = ray_train.get_context().get_world_rank()
    # Every rank needs a writer object; only rank zero's ever sends (the logger and callbacks are rank-zero).
    writer = RunWriter(client, run_id, stored_steps=stored_steps(client, run_id) if rank == 0 else None)
    run = Recording(client, loop_config["tracking_uri"], "", run_id, writer)
    try:
        trainer_args = {"strategy": RayDDPStrategy(), "plugins": [RayLightningEnvironment()], "devices": "auto"}
        fit(prepared, run, callbacks=[_TrainReport(writer)], trainer_args=trainer_args)
    finally:
        writer.close()


class _TrainReport(pl.Callback):
    """Each epoch's metrics to Ray Train (every rank must report), which hands rank zero's to Tune."""

    def __init__(self, writer: RunWriter) -> None:
        self.writer = writer

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        from ray import train as ray_train

        if trainer.is_global_zero:
            self.writer.flush()
        ray_train.report({**_tune_metrics(trainer.callback_metrics), "epoch": trainer.current_epoch})


# ----------------------------------------------------------------------------------------------
# the driver


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
    parent = _unfinished_parent(client, exp_id, identity) if resume else None
    if parent is None:
        parent = _create_parent(client, exp_id, sweep, identity, refined_from)
        resumed = False
    else:
        retrying(client.update_run, parent, status="RUNNING")
        resumed = True
    folder = sweeps_folder(uri)
    job = TrialJob(sweep, parent, exp_id, uri, searcher=sweep.search == "tpe")
    if resumed:
        # Runs left RUNNING by a driver that died (SIGKILL) are KILLED; the trials Tune continues reopen theirs.
        _close_running_trials(client, job)
    started_ray = False
    try:
        started_ray = _init_ray()  # inside: a cluster that refuses the driver leaves the parent KILLED, not RUNNING
        results = _tune(job, folder, resumed, progress)
    except BaseException:
        _close_running_trials(client, job)
        retrying(client.set_terminated, parent, "KILLED")
        raise
    finally:
        if started_ray:
            ray.shutdown()
    summary = _summarize(client, job, results)
    # Ctrl-C: Tune's own handler stops the trials and saves the experiment, and fit() returns. Some trials
    # then have no run, or one that is not closed (scheduler stops and failures are closed by now).
    closed = [t for t in summary["trials"] if t["status"] in ("FINISHED", "FAILED")]
    interrupted = len(closed) < sweep.num_trials
    summary |= {"resumed": resumed, "interrupted": interrupted}
    if interrupted:
        _close_running_trials(client, job)
        retrying(client.set_terminated, parent, "KILLED")
        return summary
    if summary["best_run_id"]:
        retrying(client.set_tag, parent, BEST_RUN_TAG, summary["best_run_id"])
        retrying(client.log_metric, parent, f"best/{sweep.metric}", summary["best_value"])
    retrying(client.set_terminated, parent, "FINISHED")
    try:
        write_trials(client, parent)
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
        return str(Path(uri.removeprefix("sqlite:///")).parent.resolve() / SWEEPS_DIR)
    return str(Path.cwd() / SWEEPS_DIR)


def _remove_tune_state(folder: str, parent_run_id: str) -> None:
    """Tune's state of a FINISHED sweep and its trials' checkpoints (every epoch's: see `_tune`) are removed
    from a local folder: a finished sweep is never continued (the same command starts a new one), and each
    trial's kept best checkpoint is in its MLflow run. Under a storage URI they are left to the user."""
    if "://" not in folder:
        shutil.rmtree(Path(folder) / parent_run_id, ignore_errors=True)


def _unfinished_parent(client: MlflowClient, exp_id: str, identity: str) -> str | None:
    runs = retrying(client.search_runs, [exp_id], max_results=1, order_by=["attributes.start_time DESC"],
                    filter_string=f"tags.`{SWEEP_HASH_TAG}` = '{identity}'")
    if runs and runs[0].info.status != "FINISHED":  # interrupted, or its driver died
        return runs[0].info.run_id
    return None


def _create_parent(client: MlflowClient, exp_id: str, sweep: SweepConfig, identity: str,
                   refined_from: str | None) -> str:
    tags = {SWEEP_HASH_TAG: identity, SWEEP_KIND_TAG: "sweep", "fitlens.study": sweep.name}
    if refined_from:
        tags[REFINED_FROM_TAG] = refined_from
    run_name = f"{sweep.name}-sweep-{uuid.uuid4().hex[:6]}"
    run_id = retrying(client.create_run, exp_id, run_name=run_name, tags=tags).info.run_id
    params = {
        "search": sweep.search, "scheduler": sweep.scheduler, "num_samples": sweep.num_samples,
        "trials": sweep.num_trials, "metric": sweep.metric, "max_concurrent": sweep.max_concurrent,
        **{f"resources.{k}": v for k, v in dataclasses.asdict(sweep.resources).items()},
        **{f"space.{key}": json.dumps(dist.to_dict()) for key, dist in sweep.space.items()},
    }
    log_params(client, run_id, params)
    retrying(client.log_text, run_id, dump_sweep(sweep), SEARCH_SPACE_FILE)
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
            metric=sweep.metric, mode="min", num_samples=sweep.num_samples, scheduler=_scheduler(job),
            search_alg=_searcher(sweep),
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
    return {key: dist.to_tune(searcher=job.searcher) for key, dist in job.sweep.space.items()}


def _scheduler(job: TrialJob) -> TrialScheduler:
    sweep = job.sweep
    if sweep.scheduler == "asha":
        return RecordingASHA(StopTags(job), time_attr="training_iteration", max_t=sweep.base.train.max_epochs,
                             grace_period=sweep.grace_period, reduction_factor=sweep.reduction_factor,
                             stop_last_trials=False)  # a trial that reaches max_epochs ends by itself
    if sweep.scheduler == "pbt":
        mutations = {key: dist.to_tune() for key, dist in sweep.space.items() if dist.kind != "grid"}
        return PopulationBasedTraining(time_attr="training_iteration",
                                       perturbation_interval=sweep.perturbation_interval,
                                       hyperparam_mutations=mutations)
    return FIFOScheduler()


def _searcher(sweep: SweepConfig) -> Any:
    """Random draws crossed with the grid keys (Tune's BasicVariantGenerator), seeded by base.train.seed so
    that two schedulers compared on one sweep see the same trials; or Optuna's TPE."""
    from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter

    if sweep.search != "tpe":
        return BasicVariantGenerator(random_state=sweep.base.train.seed, max_concurrent=sweep.max_concurrent)
    from ray.tune.search.optuna import OptunaSearch

    return ConcurrencyLimiter(OptunaSearch(seed=sweep.base.train.seed), max_concurrent=sweep.max_concurrent)


class StopTags:
    """Tags a trial's run when a scheduler stops it (in the driver, as the decision is made)."""

    def __init__(self, job: TrialJob) -> None:
        self.job = job

    def __call__(self, trial_id: str, why: str) -> None:
        client = client_for(self.job.tracking_uri)
        run_id = find_trial_run(client, self.job.experiment_id, self.job.parent_run_id, trial_id)
        if run_id is not None:
            retrying(client.set_tag, run_id, STOPPED_TAG, why)


class RecordingASHA(AsyncHyperBandScheduler):
    """ASHA that says, for each trial it stops, at which epoch and against which cutoff."""

    def __init__(self, on_stop: StopTags, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.on_stop = on_stop

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        # The rung this result meets and its cutoff, read before ASHA records the result in it
        # (ASHA's own bookkeeping: ray 2.60's _Bracket, pinned in pyproject.toml).
        rung = None
        bracket = self._trial_info.get(trial.trial_id)
        if bracket is not None and self._time_attr in result:
            for milestone, recorded in bracket._rungs:
                if result[self._time_attr] >= milestone and trial.trial_id not in recorded:
                    rung = (milestone, bracket.cutoff(recorded), len(recorded))
                    break
        action = super().on_trial_result(tune_controller, trial, result)
        if action == TrialScheduler.STOP and rung is not None:
            milestone, cutoff, others = rung
            self.on_stop(trial.trial_id, (
                f"ASHA stopped it after epoch {result[self._time_attr]} (rung {milestone:g}): {self._metric} "
                f"{result[self._metric]:.4f} is worse than {self._metric_op * cutoff:.4f}, the cutoff of the best "
                f"1/{self._reduction_factor:g} of the {others} trials that reached the rung before it"))
        return action


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
                    f"(max_failures = {self.job.sweep.max_failures}){last}"[:5000])
        self.ended.add(trial.trial_id)
        print(f"trial {trial.trial_id} failed ({len(self.ended)}/{self.job.sweep.num_trials} this session)",
              flush=True)

    def _close(self, trial_id: str, status: str, error: str | None) -> None:
        client = client_for(self.job.tracking_uri)
        run_id = find_trial_run(client, self.job.experiment_id, self.job.parent_run_id, trial_id)
        if run_id is None:
            return
        run = retrying(client.get_run, run_id)
        if run.info.status != "RUNNING":
            return  # the trial closed it
        if status == "FINISHED" and STOPPED_TAG not in run.data.tags:
            return  # stopped because the sweep is interrupted: KILLED, and continued on resume
        if error:
            retrying(client.set_tag, run_id, ERROR_TAG, error)
        retrying(client.set_terminated, run_id, status)


def _trial_runs(client: MlflowClient, job: TrialJob) -> dict[str, Any]:
    """trial id -> the child run of the sweep."""
    runs = search_trials(client, retrying(client.get_run, job.parent_run_id))
    return {r.data.tags[TRIAL_TAG]: r for r in runs}


def _close_running_trials(client: MlflowClient, job: TrialJob) -> None:
    """An interrupted sweep: its trials' runs are KILLED until the sweep is continued."""
    for run in _trial_runs(client, job).values():
        if run.info.status == "RUNNING":
            retrying(client.set_terminated, run.info.run_id, "KILLED")


def _summarize(client: MlflowClient, job: TrialJob, results: Any) -> dict[str, Any]:
    runs = _trial_runs(client, job)
    metric = job.sweep.metric
    best_run_id, best_value, trials = None, math.inf, []
    for result in results:
        trial_id = result.metrics.get("trial_id") if result.metrics else None
        run = runs.get(trial_id)
        tags = run.data.tags if run else {}
        history = result.metrics_dataframe
        values = [] if history is None or metric not in history else [v for v in history[metric] if math.isfinite(v)]
        value = min(values) if values else None
        row = {
            "trial_id": trial_id, "run_id": run.info.run_id if run else None,
            "status": run.info.status if run else ("FAILED" if result.error else "PENDING"), metric: value,
            "epochs": int(result.metrics.get("epoch", -1)) + 1 if result.metrics else 0,  # epoch counts from 0
            "stopped_early": tags.get(STOPPED_TAG), "diverged": tags.get(DIVERGED_TAG),
            "error": tags.get(ERROR_TAG) or (str(result.error)[:2000] if result.error else None),
            "point": json.loads(tags[POINT_TAG]) if POINT_TAG in tags else None,
        }
        trials.append(row)
        if value is not None and not row["diverged"] and value < best_value:
            best_run_id, best_value = row["run_id"], value
    return {
        "parent_run_id": job.parent_run_id, "experiment_id": job.experiment_id, "tracking_uri": job.tracking_uri,
        "sweep": job.sweep.name, "metric": metric, "trial_run_ids": [t["run_id"] for t in trials if t["run_id"]],
        "best_run_id": best_run_id, "best_value": best_value if best_run_id else None, "trials": trials,
    }


def describe(summary: Mapping[str, Any]) -> str:
    """The text `fitlens sweep` prints at the end: one line per trial, best first."""
    metric = summary["metric"]
    head = (f"sweep {summary['sweep']}: parent run {summary['parent_run_id']} (experiment "
            f"{summary['experiment_id']}) in {summary['tracking_uri']}")
    if summary.get("interrupted"):
        head += "\n  interrupted: run the same command again (or fitlens sweep --resume) to continue"
    lines = [head]
    for t in sorted(summary["trials"], key=lambda t: (t[metric] is None, t[metric] or 0.0)):
        value = "n/a" if t[metric] is None else f"{100 * t[metric]:.2f}%"
        notes = [note for note, on in (("stopped early", t["stopped_early"]), (f"diverged: {t['diverged']}",
                 t["diverged"]), (f"error: {(t['error'] or '')[:160]}", t["error"])) if on]
        mark = "*" if t["run_id"] == summary["best_run_id"] else " "
        lines.append(f"{mark} {t['run_id'] or '-':32}  {t['status']:8}  {metric} {value:>7}  {t['epochs']:>3} epochs  "
                     f"{json.dumps(t['point'], default=str)}" + (f"  [{'; '.join(notes)}]" if notes else ""))
    return "\n".join(lines)

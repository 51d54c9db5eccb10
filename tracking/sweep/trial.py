"""Inside a Tune worker: one trial of a sweep, recorded as one child run of the sweep's parent run.

A trial with one worker fits in its own process with Lightning; a trial with N workers runs Ray Train's
TorchTrainer with Lightning's Ray DDP strategy inside the Tune trial (the Ray 2.60 pattern: a Trainer is not
handed to a Tuner), and rank zero records.

The trial closes its run itself when its fit ends (FINISHED, FAILED with the error, or tagged diverged). Each
epoch it stores its points, then reports its metrics with a checkpoint to Tune; a trial whose process dies is
restarted from its last checkpoint, reopens its own MLflow run (found by the trial id) and does not send again
the points the store already has.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytorch_lightning as pl
import ray
from ray import tune

from lightning_modules.config import RunConfig
from tracking.config import config_from_dict, config_to_dict
from tracking.layout import HOST_TAG, PARENT_RUN_TAG, POINT_TAG, RAY_NODE_TAG, RESUMED_TAG, SWEEP_TAG, TRIAL_TAG
from tracking.reader import find_trial_run, stored_steps
from tracking.recording import Recording, config_tags, recorded_run
from tracking.store import client_for, quiet_libraries
from tracking.sweep.space import from_tune
from tracking.sweep_config import SweepConfig, apply
from tracking.train import Prepared, fit, prepare
from tracking.writer import RunWriter, set_tags

if TYPE_CHECKING:  # annotations only: MLflow is read and written through tracking.reader and tracking.writer
    from mlflow.tracking import MlflowClient

CHECKPOINT_FILE = "last.ckpt"  # inside each Tune checkpoint of a one-worker trial
SENDER_FILE = "sender.json"  # beside it: the sender process that stored the points up to it


@dataclass(frozen=True)
class TrialJob:
    """What every trial of a sweep needs, shipped once to Ray's object store."""

    sweep: SweepConfig
    parent_run_id: str
    experiment_id: str
    tracking_uri: str

    def trial_config(self, point: Mapping[str, Any], trial_id: str) -> RunConfig:
        """The run config of the trial at `point` (Tune's config: the space's keys)."""
        values = self.values(point)
        cfg = apply(self.sweep.base, values)
        threads = cfg.train.threads or max(1, math.floor(self.sweep.resources.cpus))
        return dataclasses.replace(
            cfg, run_name=f"{self.sweep.name}-{trial_id}", train=dataclasses.replace(cfg.train, threads=threads)
        )

    def values(self, point: Mapping[str, Any]) -> dict[str, Any]:
        """The run-config values of Tune's config (1 - x back to beta for a loguniform_one_minus key)."""
        return {key: from_tune(self.sweep.space[key], point[key]) for key in self.sweep.space}


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
        POINT_TAG: json.dumps(job.values(point), default=str), **config_tags(cfg),
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
            set_tags(client, run.run_id, {key: tags[key] for key in (POINT_TAG, RAY_NODE_TAG, HOST_TAG)})  # move
        if job.sweep.resources.workers > 1:
            _fit_data_parallel(job, prepared.config, run.run_id, trial_id)
            return
        workdir = Path(tune.get_context().get_trial_dir()) / "best"
        with checkpoint.as_directory() if checkpoint is not None else nullcontext(None) as restored:
            resume_from = None
            if restored is not None:
                resume_from = str(Path(restored) / CHECKPOINT_FILE)
                epoch = json.loads((Path(restored) / SENDER_FILE).read_text())["epoch"]
                set_tags(client, run.run_id, {RESUMED_TAG: f"from the checkpoint of epoch {epoch}"})
            fit(prepared, run, callbacks=[TuneReport(run.writer)], workdir=str(workdir), resume_from=resume_from)


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

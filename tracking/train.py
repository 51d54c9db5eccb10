"""One tracked fit: build everything from the config (all user errors surface here, before any run
exists), train with Lightning, and record the run in MLflow in the layout of `tracking.layout`."""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint

from lightning_modules.config import ConfigError, RunConfig, import_object
from lightning_modules.data import build_datamodule
from lightning_modules.models import build_model
from lightning_modules.module import FitModule, evaluate, load_checkpoint
from lightning_modules.optim import check_optim_config
from tracking.callback import DiagnosticsCallback
from tracking.diagnostics import resolve, select_layers
from tracking.layout import CHECKPOINT_DIR, DIVERGED_TAG, INPUT_STD_TAG, M_TRAIN_TAG, MAJORITY_TAG, N_CLASSES_TAG
from tracking.logger import MlflowLogger
from tracking.recording import Recording, config_tags, recorded_run
from tracking.signals import Terminated
from tracking.store import quiet_libraries
from tracking.writer import log_file, set_tags

MONITOR = "dev/error"  # early stopping and the kept checkpoint both follow the dev error


@dataclass
class Prepared:
    """What a fit needs, built and checked before anything is logged."""

    config: RunConfig  # resolved: data.reference_error holds the value actually used
    datamodule: pl.LightningDataModule
    module: pl.LightningModule


def prepare(cfg: RunConfig) -> Prepared:
    """Build the data module and the LightningModule; every invalid input raises ConfigError here."""
    check_optim_config(cfg.optim)
    if cfg.train.devices != 1:
        # Lightning's DDP launcher would re-run this command once per device, each recording its own run.
        raise ConfigError(f"train.devices = {cfg.train.devices} is not allowed; fitlens train runs one process on "
                          "one device, so use 1 (data-parallel training over several workers is not available yet)")
    datamodule = build_datamodule(cfg.data)
    datamodule.setup("fit")
    reference_error = cfg.data.reference_error
    if reference_error is None:
        reference_error = getattr(datamodule, "reference_error", None)
    resolved = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, reference_error=reference_error))
    if cfg.module is not None:
        module = _user_module(cfg.module, cfg.module_args)
    else:
        missing = [a for a in ("input_shape", "n_classes", "m_train") if not hasattr(datamodule, a)]
        if missing:
            raise ConfigError(
                f"data.name = {cfg.data.name!r}: the built-in model needs the data module to set "
                f"{', '.join(missing)} in setup(); set them, or name your own LightningModule in `module`"
            )
        net = build_model(cfg.model, tuple(datamodule.input_shape), int(datamodule.n_classes))
        module = FitModule(net, cfg.optim, cfg.reg, int(datamodule.m_train), cfg.train.max_epochs)
    settings = resolve(cfg.diagnostics)
    if settings.enabled:
        select_layers(getattr(module, "net", module), settings.include, settings.exclude)  # patterns match something
    return Prepared(resolved, datamodule, module)


def _user_module(path: str, args: dict[str, Any]) -> pl.LightningModule:
    cls = import_object(path, "module")
    if not (isinstance(cls, type) and issubclass(cls, pl.LightningModule)):
        raise ConfigError(f"module = {path!r} is not a pytorch_lightning.LightningModule subclass")
    try:
        return cls(**args)
    except TypeError as err:
        raise ConfigError(f"module_args = {args!r} do not fit {path}: {err}") from None


def train(cfg: RunConfig, uri: str | None = None, progress: bool = False) -> dict[str, Any]:
    """Run one fit and record it as one MLflow run; returns the summary that `fitlens train --json` prints."""
    quiet_libraries()
    pl.seed_everything(cfg.train.seed, workers=True, verbose=False)
    prepared = prepare(cfg)
    cfg = prepared.config
    with recorded_run(cfg, uri, config_tags(cfg)) as run:
        metrics = fit(prepared, run, progress)
    return {"run_id": run.run_id, "experiment_id": run.experiment_id, "tracking_uri": run.tracking_uri,
            "reference_error": cfg.data.reference_error, **metrics}


def data_tags(datamodule: pl.LightningDataModule) -> dict[str, str]:
    """What the diagnosis needs to know of the training split, as far as the data module says: its size, the number
    of classes, the majority class's fraction and the inputs' scale (a user's module may have none of them)."""
    facts = {M_TRAIN_TAG: ("m_train", int), N_CLASSES_TAG: ("n_classes", int),
             MAJORITY_TAG: ("majority_fraction", float), INPUT_STD_TAG: ("input_std", float)}
    return {tag: str(kind(getattr(datamodule, name))) for tag, (name, kind) in facts.items()
            if isinstance(getattr(datamodule, name, None), (int, float))}


def torch_threads(cfg: RunConfig) -> int:
    """train.threads, else every core this process may use but one (left to the MLflow sender)."""
    return cfg.train.threads or max(1, len(os.sched_getaffinity(0)) - 1)


class KeptCheckpoint(ModelCheckpoint):
    """The best-dev checkpoint, replaced whole: saved under a temporary name in its folder, then renamed over
    the old one (os.replace), so a reader, or a signal that stops the save, never meets half a file.
    (Lightning's own save renames only when the system's temporary folder is on the same disk.)"""

    def _save_checkpoint(self, trainer: pl.Trainer, filepath: str) -> None:
        partial = f"{filepath}.partial"
        super()._save_checkpoint(trainer, partial)
        if trainer.is_global_zero:
            os.replace(partial, filepath)
        self._last_checkpoint_saved = filepath


def _log_checkpoint(run: Recording, path: str) -> None:
    """The kept checkpoint into the run's artifacts (checkpoints/best.ckpt), at the end of a fit or when it is
    stopped."""
    log_file(run.client, run.run_id, path, CHECKPOINT_DIR)


class DivergenceStop(pl.Callback):
    """Stops training at the end of the first epoch whose training loss is NaN or infinite, and tags the
    run with where (a sweep goes on with its other trials; the kept weights are the last good ones).

    It reads the epoch's logged mean, so a step without a snapshot costs nothing extra (no per-step
    device sync). `where` says when it happened; None while the loss stays finite.
    """

    KEYS = ("train/cost", "train/loss")  # the first one the module logs is watched

    def __init__(self, run: Recording) -> None:
        self.run = run
        self.where: str | None = None

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for key in self.KEYS:
            value = trainer.callback_metrics.get(key)
            if value is not None:
                if not torch.isfinite(value):
                    self.where = f"epoch {trainer.current_epoch}, step {trainer.global_step}: {key} = {float(value)}"
                    trainer.should_stop = True
                    if trainer.is_global_zero:  # tagged at once: a sweep's scheduler may stop the trial next
                        set_tags(self.run.client, self.run.run_id, {DIVERGED_TAG: self.where})
                return


def fit(
    prepared: Prepared, run: Recording, progress: bool = False, callbacks: Sequence[pl.Callback] = (),
    workdir: str | None = None, resume_from: str | None = None, trainer_args: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Train `prepared` into `run`: test the kept (best-dev) weights, log best/* and the checkpoint.

    `workdir` keeps the best checkpoint (default: a temporary folder); `resume_from` is a Lightning
    checkpoint to continue from (a retried sweep trial); `trainer_args` replace Trainer arguments (a
    data-parallel strategy). Returns the summary's metrics; only rank zero writes to the run.
    """
    if workdir is None:
        with tempfile.TemporaryDirectory(prefix="fitlens-ckpt-") as tmp:
            return fit(prepared, run, progress, callbacks, tmp, resume_from, trainer_args)
    cfg, datamodule, module, writer = prepared.config, prepared.datamodule, prepared.module, run.writer
    torch.set_num_threads(torch_threads(cfg))
    checkpoint = KeptCheckpoint(dirpath=workdir, filename="best", monitor=MONITOR, mode="min",
                                save_top_k=1, auto_insert_metric_name=False)
    divergence = DivergenceStop(run)
    all_callbacks: list[pl.Callback] = [checkpoint, divergence]
    if resolve(cfg.diagnostics).enabled:
        all_callbacks.append(DiagnosticsCallback(cfg.diagnostics))
    if cfg.train.early_stopping:
        all_callbacks.append(EarlyStopping(monitor=MONITOR, mode="min", patience=cfg.train.patience))
    all_callbacks += callbacks
    limit = cfg.train.limit_batches or 1.0
    args = dict(
        max_epochs=cfg.train.max_epochs,
        accelerator=cfg.train.accelerator,
        devices=cfg.train.devices,
        precision=cfg.train.precision,
        logger=MlflowLogger(writer),
        callbacks=all_callbacks,
        enable_progress_bar=progress,
        enable_model_summary=progress,
        num_sanity_val_steps=0,
        limit_train_batches=limit,
        limit_val_batches=limit,
        limit_test_batches=limit,
    )
    trainer = pl.Trainer(**{**args, **(trainer_args or {})})
    if trainer.is_global_zero:
        set_tags(run.client, run.run_id, data_tags(datamodule))
    if trainer_args and "strategy" in trainer_args:
        from ray.train.lightning import prepare_trainer

        trainer = prepare_trainer(trainer)
    if resume_from is not None:
        load_checkpoint(resume_from)  # weights only, or a CheckpointError before Lightning reads it
    # weights_only=True said outright: Lightning's None lets TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD unpickle anything.
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=resume_from, weights_only=True)
    except (Terminated, KeyboardInterrupt, SystemExit):
        # Stopped mid-fit (SIGTERM; Ctrl-C, which Lightning turns into SystemExit): the run keeps the best
        # weights it reached, logged before it is marked KILLED.
        if trainer.is_global_zero and checkpoint.best_model_path and os.path.exists(checkpoint.best_model_path):
            _log_checkpoint(run, checkpoint.best_model_path)
        raise
    last_epoch = {key: float(value) for key, value in trainer.callback_metrics.items()}
    best = checkpoint.best_model_path or None
    # The test set is touched once, at the end, with the kept (best-dev) weights.
    trainer.test(module, datamodule=datamodule, ckpt_path=best, verbose=False, weights_only=True)
    summary = {key: float(trainer.callback_metrics[key])
               for key in ("test/error", "test/loss") if key in trainer.callback_metrics}
    if isinstance(module, FitModule):
        # Train and dev error of the kept weights, in eval mode: no dropout, no augmentation.
        for split, loader in (("train", datamodule.train_eval_dataloader()), ("dev", datamodule.val_dataloader())):
            for stat, value in evaluate(module.net, loader).items():
                summary[f"{split}/{stat}"] = value
    else:
        # A user's module is measured by its own logging: the values of the last epoch.
        summary |= {key: last_epoch[key] for key in ("train/error", "train/loss", "dev/error", "dev/loss")
                    if key in last_epoch}
    if trainer.is_global_zero:
        writer.log_metrics({f"best/{key}": value for key, value in summary.items() if not key.startswith("test/")},
                           step=trainer.global_step)
        writer.flush()
        if best:
            _log_checkpoint(run, best)
    summary["epochs"] = trainer.current_epoch
    summary["diverged"] = divergence.where
    return summary

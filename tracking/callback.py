"""`DiagnosticsCallback`: per-layer weight, bias, gradient, pre-activation, activation and update
statistics and histograms, computed on the device and logged to MLflow.

On a snapshot step (tracking.diagnostics.SnapshotSchedule) forward hooks catch the pre-activations and
activations of the training batch, `on_before_optimizer_step` reads the weights and gradients before the
update and `on_train_batch_end` the update itself; everything is reduced on the device and reaches the
host in one transfer; the writer's sender process stores it. Other steps do no extra work: no hooks exist then.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from lightning_modules.config import DiagnosticsConfig
from tracking.diagnostics import (
    Settings,
    SnapshotSchedule,
    activation_modules,
    resolve,
    saturation_name,
    select_layers,
)
from tracking.histograms import HistogramParts, HistogramRow
from tracking.layout import diag_key
from tracking.stats import Summary, summarize
from tracking.writer import RunWriter

# Normalization layers sit between a layer and its activation; the activation belongs to the layer.
NORMALIZATION = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)


@dataclass
class _Entry:
    kind: str
    layer: str
    summary: Summary  # the stats and histogram, on the device


@dataclass
class _Snapshot:
    step: int
    entries: list[_Entry] = field(default_factory=list)
    layer_outputs: dict[str, Tensor] = field(default_factory=dict)  # outputs with no activation after them yet
    with_activation: set[str] = field(default_factory=set)
    last_layer: str | None = None
    weights_before: dict[str, Tensor] = field(default_factory=dict)
    params_done: bool = False


class DiagnosticsCallback(pl.Callback):
    """Records diagnostics of every parametrized leaf module (or the configured ones) on a schedule.

    Works on fitlens' own modules and on any LightningModule: the watched network is `pl_module.net`
    when there is one, else the module itself. The writer is `writer`, else the trainer's fitlens
    MlflowLogger's. Under DDP only rank zero computes and writes.
    """

    def __init__(self, config: DiagnosticsConfig | Settings | None = None, writer: RunWriter | None = None) -> None:
        super().__init__()
        self.settings = config if isinstance(config, Settings) else resolve(config or DiagnosticsConfig())
        self.schedule = SnapshotSchedule(self.settings.every, self.settings.log_spaced)
        self.writer = writer
        self.snapshots_taken = 0
        self._parts: HistogramParts | None = None
        self._layers: dict[str, nn.Module] = {}
        self._activations: dict[str, nn.Module] = {}
        self._handles: list[RemovableHandle] = []
        self._snapshot: _Snapshot | None = None

    # Lightning hooks: thin, handing off to the helpers below.

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit" or not self.settings.enabled:
            return
        root = pl_module.net if isinstance(getattr(pl_module, "net", None), nn.Module) else pl_module
        self._layers = select_layers(root, self.settings.include, self.settings.exclude)
        self._activations = activation_modules(root)
        if trainer.is_global_zero:
            self.writer = self.writer or getattr(trainer.logger, "writer", None)
            if self.writer is None:
                raise ValueError("DiagnosticsCallback needs a RunWriter: pass writer=..., or train with tracking's "
                                 "MlflowLogger")
            self._parts = HistogramParts(self.writer, self.settings.bins, self.settings.kinds)

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self._parts is None or not self.schedule(trainer.global_step):
            return
        self._snapshot = _Snapshot(step=trainer.global_step)
        if {"preact", "act"} & set(self.settings.kinds):
            self._add_forward_hooks()

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Any) -> None:
        if self._snapshot is not None:
            self._capture_parameters(self._snapshot)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        snapshot, self._snapshot = self._snapshot, None
        if snapshot is None:
            return
        self._capture_parameters(snapshot)  # no-op when on_before_optimizer_step did it
        self._capture_updates(snapshot)
        self._store(snapshot)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._remove_hooks()
        self._snapshot = None

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._remove_hooks()
        if stage == "fit" and self._parts is not None:
            self._parts.close()
            self._parts = None

    # Capture.

    def _add_forward_hooks(self) -> None:
        for name, module in self._layers.items():
            if not isinstance(module, NORMALIZATION):
                self._handles.append(module.register_forward_hook(self._layer_hook(name)))
        for module in self._activations.values():
            self._handles.append(module.register_forward_hook(self._activation_hook(saturation_name(module))))

    def _layer_hook(self, name: str):
        def hook(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
            snapshot = self._snapshot
            if snapshot is None or not isinstance(output, Tensor):
                return
            snapshot.last_layer = name
            snapshot.layer_outputs[name] = output.detach()

        return hook

    def _activation_hook(self, saturation: str | None):
        def hook(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
            snapshot = self._snapshot
            if snapshot is None or snapshot.last_layer is None or snapshot.last_layer in snapshot.with_activation:
                return
            layer = snapshot.last_layer
            snapshot.with_activation.add(layer)
            snapshot.layer_outputs.pop(layer, None)
            # The activation's input is z (after any normalization), its output a = g(z).
            self._add(snapshot, "preact", layer, inputs[0].detach(), unit_dim=1)
            self._add(snapshot, "act", layer, output.detach(), unit_dim=1, activation=saturation)

        return hook

    def _capture_parameters(self, snapshot: _Snapshot) -> None:
        if snapshot.params_done:
            return
        snapshot.params_done = True
        self._remove_hooks()
        for layer, output in snapshot.layer_outputs.items():
            self._add(snapshot, "preact", layer, output, unit_dim=1)  # a layer with no activation: z is its output
        snapshot.layer_outputs.clear()
        for layer, module in self._layers.items():
            weight, bias = getattr(module, "weight", None), getattr(module, "bias", None)
            if isinstance(weight, Tensor):
                self._add(snapshot, "weight", layer, weight.detach())
                if weight.grad is not None:
                    self._add(snapshot, "grad", layer, weight.grad.detach())
                if "update" in self.settings.kinds:
                    snapshot.weights_before[layer] = weight.detach().clone()
            if isinstance(bias, Tensor):
                self._add(snapshot, "bias", layer, bias.detach())

    def _capture_updates(self, snapshot: _Snapshot) -> None:
        for layer, before in snapshot.weights_before.items():
            after = self._layers[layer].weight.detach()
            self._add(snapshot, "update", layer, after, before=before)
        snapshot.weights_before.clear()

    def _add(self, snapshot: _Snapshot, kind: str, layer: str, x: Tensor, *, unit_dim: int = 0,
             activation: str | None = None, before: Tensor | None = None) -> None:
        if kind not in self.settings.kinds:
            return
        summary = summarize(kind, x, self.settings.bins, before=before, activation=activation, unit_dim=unit_dim)
        snapshot.entries.append(_Entry(kind, layer, summary))

    def _remove_hooks(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    # Store.

    def _store(self, snapshot: _Snapshot) -> None:
        if not snapshot.entries or self._parts is None or self.writer is None:
            return
        parts = [t for e in snapshot.entries for t in e.summary[1:]]
        host = torch.cat(parts).cpu().numpy()  # the one device-to-host transfer of the snapshot
        metrics: dict[str, float] = {}
        rows: list[HistogramRow] = []
        offset = 0
        for entry in snapshot.entries:
            names, values, edges, counts = entry.summary
            sizes = np.cumsum([offset, values.numel(), edges.numel(), counts.numel()])
            values, edges, counts = (host[a:b] for a, b in zip(sizes[:-1], sizes[1:], strict=True))
            offset = int(sizes[-1])
            metrics.update({diag_key(entry.kind, entry.layer, n): float(v) for n, v in zip(names, values, strict=True)})
            rows.append(HistogramRow(snapshot.step, entry.kind, entry.layer, edges, counts.astype(np.int64)))
        self.writer.log_metrics(metrics, snapshot.step)
        self._parts.write(rows)
        self.snapshots_taken += 1


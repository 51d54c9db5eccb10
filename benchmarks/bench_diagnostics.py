"""How much the diagnostics cost, measured side by side in one run (`make bench`).

1. Step time of a real fit with the DiagnosticsCallback at its default preset against none, for the
   default MLP and a 1-D CNN on MNIST-1D, logging to a real (temporary) MLflow store. The two
   conditions alternate, so drift in the machine's speed hits both alike.
2. The cost of one snapshot of the same tensors (weights, biases, gradients, pre-activations,
   activations of every layer) with the same bins: fitlens' on-device statistics and histograms with
   one transfer, TensorBoard's `SummaryWriter.add_histogram`, and a wandb.watch-style loop (`.cpu()`
   then a histogram per tensor).

Prints a Markdown table (the README holds a copy) and, with --json FILE, writes the numbers.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor, nn

from lightning_modules.config import RunConfig
from tracking.callback import DiagnosticsCallback
from tracking.config import load_config
from tracking.diagnostics import PRESETS, activation_modules
from tracking.logger import MlflowLogger
from tracking.stats import summarize
from tracking.store import client_for, quiet_libraries
from tracking.train import prepare, torch_threads
from tracking.writer import RunWriter, experiment_id

ARCHS = {
    "mlp": [],  # the default config: 2 hidden layers of 100 ReLU units
    "cnn1d": ["model.arch=cnn1d", "model.channels=[32,32,32]"],
}


class StepTimer(pl.Callback):
    """Wall time of each training step, from batch start to batch end (the snapshot work included)."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._start = 0.0

    def on_train_batch_start(self, *args: Any) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(self, *args: Any) -> None:
        self.times.append(time.perf_counter() - self._start)


def _fit_step_times(cfg: RunConfig, store: Path, diagnostics: bool) -> list[float]:
    pl.seed_everything(0, verbose=False)
    torch.set_num_threads(torch_threads(cfg))  # as fitlens train does
    prepared = prepare(cfg)
    client = client_for(f"sqlite:///{store / 'mlflow.db'}")
    run_id = client.create_run(experiment_id(client, "bench")).info.run_id
    writer = RunWriter(client, run_id)
    writer.flush()  # the sender is up (its start is paid once per run, not per step)
    timer = StepTimer()
    callbacks: list[pl.Callback] = [timer] + ([DiagnosticsCallback(cfg.diagnostics)] if diagnostics else [])
    trainer = pl.Trainer(max_epochs=cfg.train.max_epochs, accelerator=cfg.train.accelerator, devices=1,
                         logger=MlflowLogger(writer), callbacks=callbacks, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False, num_sanity_val_steps=0)
    trainer.fit(prepared.module, datamodule=prepared.datamodule)
    writer.close()
    return timer.times[1:]  # the first step pays one-time allocation costs in both conditions


def step_overhead(arch: str, epochs: int, repeats: int, accelerator: str) -> dict[str, float]:
    """Median total step time with and without the callback, alternating conditions."""
    cfg = load_config(None, [*ARCHS[arch], f"train.max_epochs={epochs}", "train.early_stopping=false",
                             f"train.accelerator={accelerator}"])
    totals: dict[bool, list[float]] = {False: [], True: []}
    steps = 0
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(repeats):
            for diagnostics in (False, True) if repeat % 2 == 0 else (True, False):
                times = _fit_step_times(cfg, Path(tmp), diagnostics)
                totals[diagnostics].append(sum(times))
                steps = len(times)
    base, with_diag = statistics.median(totals[False]), statistics.median(totals[True])
    return {"steps": steps, "step_ms_without": 1000 * base / steps, "step_ms_with": 1000 * with_diag / steps,
            "overhead": with_diag / base - 1}


def _snapshot_tensors(arch: str, accelerator: str) -> list[tuple[str, str, Tensor]]:
    """(kind, layer, tensor) of one training step of the network, as the callback sees them."""
    cfg = load_config(None, ARCHS[arch])
    prepared = prepare(cfg)
    device = torch.device("cuda" if accelerator == "gpu" else "cpu")
    net = prepared.module.net.to(device)
    x, y = next(iter(prepared.datamodule.train_dataloader()))
    x, y = x.to(device), y.to(device)
    captured: list[tuple[str, str, Tensor]] = []
    hooks = [m.register_forward_hook(lambda m, i, o, name=name: captured.extend(
        [("preact", name, i[0].detach()), ("act", name, o.detach())]))
        for name, m in activation_modules(net).items()]
    nn.functional.cross_entropy(net(x), y).backward()
    for h in hooks:
        h.remove()
    for name, module in net.named_modules():
        if isinstance(getattr(module, "weight", None), Tensor) and not any(True for _ in module.children()):
            captured += [("weight", name, module.weight.detach()), ("grad", name, module.weight.grad.detach())]
            if module.bias is not None:
                captured.append(("bias", name, module.bias.detach()))
    return captured


def _fitlens_snapshot(tensors: list[tuple[str, str, Tensor]], bins: int) -> None:
    parts = []
    for kind, _, x in tensors:
        parts += summarize(kind, x, bins, unit_dim=1 if kind in ("preact", "act") else 0)[1:]
    torch.cat(parts).cpu()  # the one transfer


def _tensorboard_snapshot(writer: Any, tensors: list[tuple[str, str, Tensor]], bins: int, step: int) -> None:
    for kind, layer, x in tensors:
        writer.add_histogram(f"{kind}/{layer}", x, step, bins=bins)
    writer.flush()


def _wandb_style_snapshot(tensors: list[tuple[str, str, Tensor]], bins: int) -> None:
    # wandb.watch's log_tensor_stats: the tensor to the host, then min, max and histc there.
    for _, _, x in tensors:
        flat = x.detach().reshape(-1).cpu()
        low, high = flat.min().item(), flat.max().item()
        torch.histc(flat, bins=bins, min=low, max=high).tolist()


def snapshot_costs(arch: str, repeats: int, accelerator: str) -> dict[str, float]:
    """Median milliseconds per snapshot of each path, interleaved."""
    from torch.utils.tensorboard import SummaryWriter

    bins = PRESETS["default"].bins
    tensors = _snapshot_tensors(arch, accelerator)
    sync = torch.cuda.synchronize if accelerator == "gpu" else (lambda: None)
    costs: dict[str, list[float]] = {"fitlens": [], "tensorboard": [], "wandb_style": []}
    with tempfile.TemporaryDirectory() as tmp:
        tb = SummaryWriter(tmp)
        paths = {
            "fitlens": lambda step: _fitlens_snapshot(tensors, bins),
            "tensorboard": lambda step: _tensorboard_snapshot(tb, tensors, bins, step),
            "wandb_style": lambda step: _wandb_style_snapshot(tensors, bins),
        }
        for step in range(repeats):
            for name, run in paths.items():
                sync()
                start = time.perf_counter()
                run(step)
                sync()
                costs[name].append(1000 * (time.perf_counter() - start))
        tb.close()
    medians = {name: statistics.median(values[2:]) for name, values in costs.items()}  # skip warm-up
    return {"tensors": len(tensors), **{f"{k}_ms": v for k, v in medians.items()},
            "fitlens_vs_tensorboard": medians["fitlens"] / medians["tensorboard"],
            "fitlens_vs_wandb_style": medians["fitlens"] / medians["wandb_style"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=50,
                        help="epochs per fit (32 steps each; the default run takes ~50)")
    parser.add_argument("--repeats", type=int, default=3, help="fits per condition")
    parser.add_argument("--snapshots", type=int, default=30, help="snapshots per path")
    parser.add_argument("--accelerator", default="cpu", choices=["cpu", "gpu"])
    parser.add_argument("--json", metavar="FILE", help="also write the numbers here")
    args = parser.parse_args()
    quiet_libraries()
    threads = torch_threads(load_config())
    device = torch.cuda.get_device_name() if args.accelerator == "gpu" else f"CPU, {threads} torch thread(s)"
    results: dict[str, Any] = {"device": device, "preset": "default", "overhead": {}, "snapshot": {}}
    for arch in ARCHS:
        results["overhead"][arch] = step_overhead(arch, args.epochs, args.repeats, args.accelerator)
        results["snapshot"][arch] = snapshot_costs(arch, args.snapshots, args.accelerator)
    print(f"Diagnostics cost on {device}, preset default (every {PRESETS['default'].every} steps + log-spaced)\n")
    print("| network | steps | step without (ms) | step with (ms) | overhead | snapshot: fitlens (ms) | "
          "TensorBoard add_histogram (ms) | wandb.watch-style (ms) | fitlens / TensorBoard | fitlens / wandb-style |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for arch in ARCHS:
        o, s = results["overhead"][arch], results["snapshot"][arch]
        print(f"| {arch} | {o['steps']} | {o['step_ms_without']:.2f} | {o['step_ms_with']:.2f} | "
              f"{100 * o['overhead']:+.1f}% | {s['fitlens_ms']:.2f} | {s['tensorboard_ms']:.2f} | "
              f"{s['wandb_style_ms']:.2f} | {s['fitlens_vs_tensorboard']:.2f} | {s['fitlens_vs_wandb_style']:.2f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

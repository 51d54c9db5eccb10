"""The diagnostics callback on real fits: the initialization lessons (docs/conventions.md) in the step-0
statistics, histograms equal to numpy's, one snapshot per scheduled step, and SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import pytorch_lightning as pl
from mlflow.tracking import MlflowClient

from tracking.config import load_config
from tracking.diagnostics import SnapshotSchedule
from tracking.layout import DIAGNOSTICS_DIR, SCHEMA_FILE, diag_key
from tracking.train import prepare, train

DEEP = 6  # the course's 6-layer network
LAYERS = [f"hidden.{i}.linear" for i in range(DEEP)]


def _fit(tmp_path: Path, overrides: list[str]) -> tuple[MlflowClient, str]:
    cfg = load_config(None, [
        "data.batch_size=256", "train.max_epochs=1", "train.limit_batches=3", "optim.lr=0.01",
        f"model.depth={DEEP}", "model.width=256", *overrides])
    summary = train(cfg, uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    return MlflowClient(summary["tracking_uri"]), summary["run_id"]


def _at_step(client: MlflowClient, run_id: str, key: str, step: int = 0) -> float:
    values = [m.value for m in client.get_metric_history(run_id, key) if m.step == step]
    assert len(values) == 1, (key, step, values)
    return values[0]


def _depth_profile(client: MlflowClient, run_id: str, kind: str, stat: str) -> np.ndarray:
    return np.array([_at_step(client, run_id, diag_key(kind, layer, stat)) for layer in LAYERS])


def test_small_normal_init_makes_tanh_activations_vanish_layer_by_layer(tmp_path) -> None:
    client, run_id = _fit(tmp_path, ["model.activation=tanh", "model.init=normal", "model.init_std=0.01"])
    std = _depth_profile(client, run_id, "act", "std")
    # Each layer multiplies the spread by about sqrt(256) * 0.01 = 0.16.
    assert np.all(std[1:] / std[:-1] < 0.3), std
    assert std[-1] < 1e-3 * std[0]


def test_large_normal_init_saturates_tanh(tmp_path) -> None:
    client, run_id = _fit(tmp_path, ["model.activation=tanh", "model.init=normal", "model.init_std=1.0"])
    saturated = _depth_profile(client, run_id, "act", "frac_saturated")
    assert np.all(saturated[1:] > 0.6), saturated  # z has a spread of ~16: most |tanh(z)| > 0.99


def test_xavier_keeps_tanh_activations_stable(tmp_path) -> None:
    client, run_id = _fit(tmp_path, ["model.activation=tanh", "model.init=xavier"])
    std = _depth_profile(client, run_id, "act", "std")
    assert np.all(std[1:] / std[:-1] > 0.6), std
    assert np.all(std > 0.2)
    assert np.all(_depth_profile(client, run_id, "act", "frac_saturated") < 0.1)


def test_he_keeps_relu_alive_where_xavier_halves_the_variance(tmp_path) -> None:
    ratios = {}
    for init in ("xavier", "he"):
        client, run_id = _fit(tmp_path / init, ["model.activation=relu", f"model.init={init}"])
        std = _depth_profile(client, run_id, "preact", "std")
        ratios[init] = float(np.exp(np.mean(np.log(std[1:] / std[:-1]))))  # geometric mean per layer
    assert ratios["xavier"] == pytest.approx(np.sqrt(0.5), abs=0.08)  # variance halves per layer
    assert ratios["he"] == pytest.approx(1.0, abs=0.1)


def test_zero_init_is_flagged_by_the_symmetry_measure(tmp_path) -> None:
    client, run_id = _fit(tmp_path / "zeros", ["model.activation=tanh", "model.init=zeros"])
    last_step = max(m.step for m in client.get_metric_history(run_id, diag_key("weight", "hidden.1.linear", "norm")))
    assert last_step > 0
    for step in (0, last_step):  # symmetry never breaks
        assert _at_step(client, run_id, diag_key("weight", "hidden.1.linear", "symmetry"), step) == 1.0
    client, run_id = _fit(tmp_path / "xavier", ["model.activation=tanh", "model.init=xavier"])
    assert _at_step(client, run_id, diag_key("weight", "hidden.1.linear", "symmetry")) < 0.1


def _read_parts(client: MlflowClient, run_id: str, dest: Path) -> tuple[dict, pd.DataFrame]:
    local = Path(client.download_artifacts(run_id, DIAGNOSTICS_DIR, str(dest)))
    schema = json.loads((local / SCHEMA_FILE).read_text())
    parts = sorted(local.glob("hist-*.parquet"))
    return schema, pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)


def test_histograms_read_back_equal_numpy_and_follow_the_schedule(tmp_path, monkeypatch) -> None:
    overrides = ["data.name=moons", "data.n_samples=2000", "model.depth=2", "model.width=32",
                 "diagnostics.every=5", "diagnostics.bins=16", "train.limit_batches=0"]
    cfg = load_config(None, ["data.batch_size=32", "train.max_epochs=1", *overrides])
    staging = tmp_path / "tmp"
    staging.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(staging))
    summary = train(cfg, uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert list(staging.glob("fitlens-hist-*")) == []  # the parts' staging folder goes with the fit
    client, run_id = MlflowClient(summary["tracking_uri"]), summary["run_id"]
    schema, rows = _read_parts(client, run_id, tmp_path)
    assert schema["schema_version"] == 1 and schema["bins"] == 16
    steps_per_epoch = 40  # 2000 * 0.8 * 0.8 / 32
    expected = [s for s in range(steps_per_epoch) if SnapshotSchedule(5, log_spaced=True)(s)]
    assert sorted(rows["step"].unique()) == expected
    assert set(rows["kind"]) == {"weight", "bias", "grad", "preact", "act", "update"}
    # One row per (step, kind, layer): nothing lost, nothing twice.
    assert not rows.duplicated(["step", "kind", "layer"]).any()
    # The step-0 weights are the initialization, which the same seed rebuilds exactly.
    pl.seed_everything(cfg.train.seed, verbose=False)
    net = prepare(cfg).module.net
    for layer in ("hidden.0.linear", "hidden.1.linear", "out"):
        weight = dict(net.named_modules())[layer].weight.detach().numpy()
        row = rows[(rows.step == 0) & (rows.kind == "weight") & (rows.layer == layer)].iloc[0]
        counts, edges = np.histogram(weight.astype(np.float64), bins=16)
        np.testing.assert_allclose(row.edges, edges, rtol=1e-12)
        np.testing.assert_array_equal(row.counts, counts)
        assert _at_step(client, run_id, diag_key("weight", layer, "std")) == pytest.approx(weight.std(), rel=1e-5)


def test_no_snapshot_without_diagnostics(tmp_path) -> None:
    cfg = load_config(None, ["data.name=moons", "data.n_samples=200", "train.max_epochs=1",
                             "diagnostics.preset=off"])
    summary = train(cfg, uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    client = MlflowClient(summary["tracking_uri"])
    keys = client.get_run(summary["run_id"]).data.metrics
    assert not [k for k in keys if k.startswith("diag/")]
    assert not client.list_artifacts(summary["run_id"], DIAGNOSTICS_DIR)


def test_sigterm_keeps_every_part_written_and_marks_the_run_killed(tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    command = [str(Path(sys.executable).parent / "fitlens"), "train", "data.name=moons", "data.n_samples=4000",
               "data.batch_size=16", "train.max_epochs=500", "train.early_stopping=false", "diagnostics.every=10"]
    process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    artifacts = tmp_path / "mlartifacts"
    deadline = time.monotonic() + 120
    parts: list[Path] = []
    while time.monotonic() < deadline and len(parts) < 5:
        time.sleep(0.5)
        parts = sorted(artifacts.glob(f"*/artifacts/{DIAGNOSTICS_DIR}/hist-*.parquet"))
    assert len(parts) >= 5, "the run wrote no histogram parts in time"
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 143, stderr
    assert "marked KILLED" in stderr
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("fitlens").experiment_id])
    assert run.info.status == "KILLED"
    after = sorted(artifacts.glob(f"*/artifacts/{DIAGNOSTICS_DIR}/hist-*.parquet"))
    assert set(parts) <= set(after)
    for part in after:  # every part is whole and readable
        assert len(pd.read_parquet(part)) > 0


def test_forward_hooks_exist_only_on_snapshot_steps(tmp_path) -> None:
    from tracking.callback import DiagnosticsCallback
    from tracking.diagnostics import Settings
    from tracking.logger import MlflowLogger
    from tracking.store import client_for
    from tracking.writer import RunWriter, experiment_id

    class HookCounter(pl.Callback):
        """Counts the forward hooks on the network while each training step runs."""

        def __init__(self) -> None:
            self.hooks_per_step: dict[int, int] = {}

        def on_before_backward(self, trainer, pl_module, loss) -> None:
            modules = list(pl_module.net.modules())
            self.hooks_per_step[trainer.global_step] = sum(len(m._forward_hooks) for m in modules)

    cfg = load_config(None, ["data.name=moons", "data.n_samples=500", "data.batch_size=16", "model.depth=2"])
    pl.seed_everything(0, verbose=False)
    prepared = prepare(cfg)
    client = client_for(f"sqlite:///{tmp_path / 'mlflow.db'}")
    writer = RunWriter(client, client.create_run(experiment_id(client, "hooks")).info.run_id)
    counter = HookCounter()
    diagnostics = DiagnosticsCallback(Settings(kinds=("act", "weight"), every=10, log_spaced=False, bins=8))
    trainer = pl.Trainer(max_epochs=1, logger=MlflowLogger(writer), callbacks=[diagnostics, counter],
                         enable_checkpointing=False, enable_progress_bar=False, num_sanity_val_steps=0)
    trainer.fit(prepared.module, datamodule=prepared.datamodule)
    writer.close()
    snapshot_steps = {s for s in counter.hooks_per_step if s % 10 == 0}
    assert diagnostics.snapshots_taken == len(snapshot_steps) == 2  # steps 0 and 10 of 20
    for step, hooks in counter.hooks_per_step.items():
        assert hooks == (5 if step in snapshot_steps else 0), step  # 3 layers + 2 activations, or none

"""Checkpoints are read with torch.load(weights_only=True) or refused: a checkpoint whose pickle would run code
(its __reduce__ calls os.system or exec) is refused with a CheckpointError by every path in fitlens that reads
one, and the code never runs (its marker file is never created); a genuine fitlens checkpoint still loads.

The paths: `load_checkpoint`, `FitModule.load_weights`, `FitModule.load_from_checkpoint` and `tracking.train.fit`
(`resume_from`, a retried sweep trial's checkpoint, and the final test on the kept checkpoint). Every refusal is
checked with TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 set, the switch that turns Lightning's default (weights_only=None,
passed on to torch.load) into a full unpickling: fitlens must say weights_only=True itself.
"""

from __future__ import annotations

import builtins
import os
import pickle
from pathlib import Path
from typing import Any

import pytest
import pytorch_lightning as pl
import torch
from lightning_fabric.utilities.cloud_io import _load as lightning_load
from mlflow.tracking import MlflowClient
from pytorch_lightning.callbacks import ModelCheckpoint
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_modules.config import OptimConfig, RegConfig
from lightning_modules.module import CheckpointError, FitModule, evaluate, load_checkpoint
from tracking.config import load_config
from tracking.layout import ERROR_TAG
from tracking.recording import recorded_run
from tracking.train import fit, prepare


class RunsShell:
    """Unpickling this runs `touch MARKER` through os.system."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return os.system, (f"touch {self.marker}",)


class RunsPython:
    """Unpickling this runs Python that writes MARKER, no shell needed."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return builtins.exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",)


def _blobs(n: int, seed: int) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    return TensorDataset(torch.randn(n, 2, generator=g) * 0.5 + (y.float() * 2 - 1).unsqueeze(1), y)


def _net() -> nn.Module:
    return nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 2))


def _module(net: nn.Module | None = None) -> FitModule:
    return FitModule(net or _net(), OptimConfig(name="sgd", lr=0.2, momentum=0.9), RegConfig(l2=0.01), m_train=64,
                     max_epochs=3)


@pytest.fixture(scope="module")
def genuine(tmp_path_factory) -> tuple[Path, FitModule, DataLoader]:
    """A checkpoint written by Lightning for a FitModule (weights, optimizer, callbacks' states, hparams)."""
    folder = tmp_path_factory.mktemp("genuine")
    pl.seed_everything(0, verbose=False)
    module, dev = _module(), DataLoader(_blobs(32, 2), batch_size=16)
    checkpoint = ModelCheckpoint(dirpath=folder, filename="best", monitor="dev/error", mode="min")
    trainer = pl.Trainer(max_epochs=3, logger=False, callbacks=[checkpoint], enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu", devices=1)
    trainer.fit(module, DataLoader(_blobs(64, 1), batch_size=16, shuffle=True), dev)
    return Path(checkpoint.best_model_path), module, dev


@pytest.fixture(params=["shell-in-hparams", "python-in-optimizer-state", "shell-legacy-pickle", "python-whole-file"])
def hostile(request, tmp_path: Path, genuine, monkeypatch) -> tuple[Path, Path]:
    """A checkpoint that looks like a fitlens one (or is a bare pickle) with a payload that creates a marker
    file when unpickled; TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 is set while the test runs."""
    marker = tmp_path / "marker"
    path = tmp_path / f"{request.param}.ckpt"
    state = load_checkpoint(genuine[0])
    if request.param == "shell-in-hparams":
        state["hyper_parameters"]["optim"] = RunsShell(marker)
        torch.save(state, path)
    elif request.param == "python-in-optimizer-state":
        state["optimizer_states"][0]["state"] = RunsPython(marker)
        torch.save(state, path)
    elif request.param == "shell-legacy-pickle":  # the pre-zip format: a plain pickle, protocol 2
        path.write_bytes(pickle.dumps({"state_dict": RunsShell(marker)}, protocol=2))
    else:
        torch.save(RunsPython(marker), path)
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    return path, marker


def test_the_payloads_are_live_and_lightnings_default_would_run_them(hostile) -> None:
    """The control: without weights_only=True these files do run code, so the refusals below mean something."""
    path, marker = hostile
    for load in (lambda: torch.load(path, weights_only=False),
                 lambda: lightning_load(path)):  # what Trainer.fit(ckpt_path=...) calls, weights_only=None
        try:
            load()
        except RuntimeError:  # the bare pickle is no checkpoint, but its code ran while it was read
            pass
        assert marker.exists()
        marker.unlink()


def test_load_checkpoint_refuses_the_payload_and_names_what_it_imports(hostile) -> None:
    path, marker = hostile
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(path)
    text = str(caught.value)
    assert text.startswith(f"checkpoint {str(path)!r} is refused: ") and "weights_only=True" in text
    assert "it asks to import posix.system;" in text or "it asks to import exec;" in text, text
    assert "\n" not in text and not marker.exists()


def test_the_modules_loaders_refuse_the_payload(hostile) -> None:
    path, marker = hostile
    with pytest.raises(CheckpointError, match="is refused"):
        _module().load_weights(path)
    with pytest.raises(CheckpointError, match="is refused"):
        FitModule.load_from_checkpoint(path, net=_net())
    with pytest.raises(CheckpointError, match="weights_only=False is not allowed"):
        FitModule.load_from_checkpoint(path, net=_net(), weights_only=False)
    assert not marker.exists()


def test_a_genuine_checkpoint_loads_by_every_path(genuine, monkeypatch) -> None:
    path, _, dev = genuine
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    state = load_checkpoint(path)
    assert state["hyper_parameters"]["optim"]["lr"] == 0.2 and state["hyper_parameters"]["reg"]["l2"] == 0.01
    weights = {k.removeprefix("net."): v for k, v in state["state_dict"].items() if k.startswith("net.")}
    (callback,) = [v for k, v in state["callbacks"].items() if k.startswith("ModelCheckpoint")]
    module = _module()
    module.load_weights(path)
    restored = FitModule.load_from_checkpoint(path, net=_net())
    for loaded in (module, restored):
        for name, tensor in weights.items():
            torch.testing.assert_close(loaded.net.state_dict()[name], tensor, rtol=0, atol=0)
        # the dev error Lightning measured for the kept epoch, measured again on the loaded weights
        assert evaluate(loaded.net, dev)["error"] == pytest.approx(float(callback["best_model_score"]))
    assert restored.optim_config == OptimConfig(name="sgd", lr=0.2, momentum=0.9)
    assert restored.reg_config == RegConfig(l2=0.01)


@pytest.mark.parametrize(("content", "message"), [
    (None, "does not exist"),
    (b"", "is not a PyTorch checkpoint"),
    (b"PK\x03\x04 cut short", "is not a PyTorch checkpoint"),
])
def test_missing_and_broken_files_are_checkpoint_errors(tmp_path: Path, content: bytes | None, message: str) -> None:
    path = tmp_path / "broken.ckpt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match=message):
        _module().load_weights(path)


# -- tracking.train.fit: resuming from a checkpoint (a retried sweep trial) ------------------------------------

TINY = ["experiment=ckpt", "data.name=moons", "data.n_samples=200", "model.depth=1", "model.width=8",
        "train.limit_batches=2", "train.threads=1", "diagnostics.preset=off"]


def _fit(uri: str, workdir: Path, epochs: int, resume_from: str | None = None) -> tuple[dict, str]:
    cfg = load_config(None, [*TINY, f"train.max_epochs={epochs}"])
    pl.seed_everything(0, verbose=False)
    prepared = prepare(cfg)
    with recorded_run(cfg, uri, {}) as run:
        return fit(prepared, run, workdir=str(workdir), resume_from=resume_from), run.run_id


def test_fit_resumes_from_a_genuine_checkpoint_and_refuses_a_hostile_one(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    first, _ = _fit(uri, tmp_path / "first", epochs=1)
    assert first["epochs"] == 1
    genuine = tmp_path / "first" / "best.ckpt"  # Lightning's checkpoint of epoch 0, as a sweep trial keeps it
    resumed, _ = _fit(uri, tmp_path / "resumed", epochs=3, resume_from=str(genuine))
    assert resumed["epochs"] == 3 and 0 <= resumed["test/error"] <= 1

    marker = tmp_path / "marker"
    state = load_checkpoint(genuine)
    state["loops"] = RunsShell(marker)
    hostile = tmp_path / "hostile.ckpt"
    torch.save(state, hostile)
    with pytest.raises(CheckpointError, match="is refused: it asks to import posix.system"):
        _fit(uri, tmp_path / "refused", epochs=3, resume_from=str(hostile))
    assert not marker.exists()
    client = MlflowClient(uri)
    (failed,) = client.search_runs([client.get_experiment_by_name("ckpt").experiment_id],
                                   filter_string="attributes.status = 'FAILED'")
    assert failed.data.tags[ERROR_TAG].startswith("CheckpointError: checkpoint ")

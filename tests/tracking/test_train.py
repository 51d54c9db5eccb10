"""`fitlens train` end to end: a real fit recorded in a real MLflow store, read back with MlflowClient."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient

from lightning_modules.config import ConfigError
from lightning_modules.models import build_model
from lightning_modules.module import evaluate
from tracking.config import load_config
from tracking.layout import ARCH_TAG
from tracking.train import prepare, train

FITLENS = str(Path(sys.executable).parent / "fitlens")
TINY = {
    "experiment": "tiny",
    "model": {"depth": 1, "width": 16},
    "data": {"name": "moons", "n_samples": 300, "batch_size": 32},
    "optim": {"lr": 0.01},
    "train": {"max_epochs": 4, "patience": 10},
}
EPOCH_METRICS = ("train/loss", "train/error", "dev/loss", "dev/error", "lr")


def _run_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return subprocess.run([FITLENS, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> tuple[dict, Path]:
    """One `fitlens train --json` on the embedded default store of a fresh project folder."""
    project = tmp_path_factory.mktemp("project")
    (project / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    done = _run_cli(["train", "--config", "tiny.yaml", "--json", "model.activation=tanh"], cwd=project)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1]), project


def test_json_summary_and_embedded_store(tiny_run) -> None:
    summary, project = tiny_run
    assert summary["tracking_uri"] == f"sqlite:///{project / 'mlflow.db'}"
    assert (project / "mlflow.db").is_file()
    for key in ("run_id", "experiment_id", "train/error", "dev/error", "test/error"):
        assert key in summary
    assert 0.0 <= summary["test/error"] <= 1.0
    run = MlflowClient(summary["tracking_uri"]).get_run(summary["run_id"])
    assert run.info.status == "FINISHED"
    assert run.info.run_name.startswith("mlp-moons-")  # what it is; the suffix keeps seeded runs apart
    assert run.info.artifact_uri.startswith((project / "mlartifacts").as_uri())


def test_params_are_the_flattened_resolved_config(tiny_run) -> None:
    summary, _ = tiny_run
    params = MlflowClient(summary["tracking_uri"]).get_run(summary["run_id"]).data.params
    assert params["model.depth"] == "1"
    assert params["model.activation"] == "tanh"  # the override wins over the file
    assert params["data.name"] == "moons"
    assert params["optim.lr"] == "0.01"
    # The reference error actually used is recorded, not the config's null.
    assert float(params["data.reference_error"]) == pytest.approx(summary["reference_error"])


def test_metrics_per_epoch_at_global_steps_and_test_once(tiny_run) -> None:
    summary, _ = tiny_run
    client = MlflowClient(summary["tracking_uri"])
    run_id = summary["run_id"]
    # moons: 300 samples -> 192 train (0.8 * 0.8) -> 6 batches of 32 per epoch
    steps_per_epoch = 6
    for key in EPOCH_METRICS:
        history = client.get_metric_history(run_id, key)
        assert len(history) == 4, key
    # An epoch's points sit at the global step of its last batch (Lightning counts from 0).
    last_steps = [steps_per_epoch * (e + 1) - 1 for e in range(4)]
    for key in ("train/error", "dev/error"):
        assert [m.step for m in client.get_metric_history(run_id, key)] == last_steps
    epochs = client.get_metric_history(run_id, "epoch")
    assert [(m.step, m.value) for m in epochs][:4] == list(zip(last_steps, [0.0, 1.0, 2.0, 3.0], strict=True))
    test = client.get_metric_history(run_id, "test/error")
    assert len(test) == 1 and test[0].value == pytest.approx(summary["test/error"])
    best_dev = client.get_metric_history(run_id, "best/dev/error")
    assert best_dev[0].value == pytest.approx(summary["dev/error"])
    # The kept checkpoint is the epoch with the lowest dev error.
    assert summary["dev/error"] == pytest.approx(min(m.value for m in client.get_metric_history(run_id, "dev/error")))


def test_artifacts_config_and_a_checkpoint_that_reproduces_the_dev_error(tiny_run, tmp_path) -> None:
    summary, _ = tiny_run
    client = MlflowClient(summary["tracking_uri"])
    run_id = summary["run_id"]
    names = {a.path for a in client.list_artifacts(run_id)} | {
        a.path for a in client.list_artifacts(run_id, "checkpoints")}
    assert {"config.yaml", "checkpoints/best.ckpt"} <= names
    config_file = Path(client.download_artifacts(run_id, "config.yaml", str(tmp_path)))
    cfg = load_config(config_file)
    assert (cfg.model.depth, cfg.model.activation, cfg.train.max_epochs) == (1, "tanh", 4)
    ckpt = Path(client.download_artifacts(run_id, "checkpoints/best.ckpt", str(tmp_path)))
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    prepared = prepare(cfg)
    net = build_model(cfg.model, prepared.datamodule.input_shape, prepared.datamodule.n_classes)
    net.load_state_dict({k.removeprefix("net."): v for k, v in state.items()})
    assert evaluate(net, prepared.datamodule.val_dataloader())["error"] == pytest.approx(summary["dev/error"])


def test_user_module_and_datamodule_by_import_path(tmp_path) -> None:
    cfg = load_config(None, ["module=tests.tracking.user_objects:LinearModule", "module_args={lr: 0.5}",
                             "data.name=tests.tracking.user_objects:BlobsData", "train.max_epochs=3"])
    summary = train(cfg, uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert summary["dev/error"] < 0.05  # the blobs are 4 standard deviations apart
    run = MlflowClient(summary["tracking_uri"]).get_run(summary["run_id"])
    assert run.data.params["module"] == "tests.tracking.user_objects:LinearModule"
    assert run.data.tags[ARCH_TAG] == "tests.tracking.user_objects:LinearModule"
    # The diagnostics watch a user's module too: its one parametrized leaf, "layer".
    assert run.data.metrics["diag/weight/layer/norm"] > 0
    assert {"diag/grad/layer/norm", "diag/preact/layer/std", "diag/update/layer/update_ratio"} <= set(run.data.metrics)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model.depht=2"], "unknown key 'model.depht' (did you mean 'model.depth'?)"),
        (["model.activation=sigmod"], "model.activation = 'sigmod' is not allowed (did you mean 'sigmoid'?)"),
        (["data.name=mnist2d"], "data.name = 'mnist2d'"),
        (["data.name=csv", "data.path=table.csv", "data.target=label"], "data.target = 'label'"),
        (["optim.name=adamm"], "optim.name = 'adamm'"),
        (["module=nowhere.at_all:Module"], "module = 'nowhere.at_all:Module': cannot import module 'nowhere.at_all'"),
        (["train.devices=2"], "train.devices = 2 is not allowed; fitlens train runs one process on one device"),
    ],
)
def test_bad_input_fails_before_any_run_with_a_clear_message(tmp_path, overrides, message) -> None:
    (tmp_path / "table.csv").write_text("x1,x2,y\n1,2,0\n3,4,1\n")
    done = _run_cli(["train", *overrides], cwd=tmp_path)
    assert done.returncode == 2
    assert message in done.stderr
    assert done.stderr.startswith("fitlens: config error: ")
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "mlflow.db").exists()  # nothing was logged, not even an empty run


def test_csv_missing_column_lists_the_columns(tmp_path) -> None:
    (tmp_path / "table.csv").write_text("x1,x2,y\n1,2,0\n3,4,1\n")
    cfg = load_config(None, ["data.name=csv", f"data.path={tmp_path / 'table.csv'}", "data.target=label"])
    with pytest.raises(ConfigError) as caught:
        prepare(cfg)
    assert "x1" in str(caught.value) and "y" in str(caught.value)

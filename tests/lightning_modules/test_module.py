"""FitModule on tiny data: it learns, it logs the course's metrics with exact counts, and evaluate() counts right."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_modules.config import ConfigError, OptimConfig, RegConfig
from lightning_modules.module import ErrorRate, FitModule, evaluate


def _trainer(max_epochs: int) -> pl.Trainer:
    return pl.Trainer(
        max_epochs=max_epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        devices=1,
    )


def _separable(n: int, seed: int) -> TensorDataset:
    """Two Gaussian blobs 6 std apart in 2-D: linearly separable in practice."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = torch.randn(n, 2, generator=g) * 0.5 + (y.float() * 2 - 1).unsqueeze(1) * 1.5
    return TensorDataset(x, y)


def _mlp() -> nn.Sequential:
    return nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 2))


def _hand_net() -> nn.Linear:
    """Predicts class 1 when x > 0 and class 0 otherwise: logits (-x, x)."""
    net = nn.Linear(1, 2)
    with torch.no_grad():
        net.weight.copy_(torch.tensor([[-1.0], [1.0]]))
        net.bias.zero_()
    return net


def _hand_data() -> TensorDataset:
    """10 examples; with batch_size 4 the batches are 4, 4, 2 and only the last two are wrong.

    Exact error: 2 / 10 = 0.2. The mean of the batch errors would be (0 + 0 + 1) / 3 = 0.333.
    """
    x = torch.tensor([0.5, -0.5, 1.0, -1.0, 0.25, -0.25, 2.0, -2.0, 0.5, -0.5]).unsqueeze(1)
    y = torch.tensor([1, 0, 1, 0, 1, 0, 1, 0, 0, 1])
    return TensorDataset(x, y)


def test_training_reaches_zero_error_and_logs_the_metrics() -> None:
    pl.seed_everything(0)
    train = DataLoader(_separable(64, seed=1), batch_size=16, shuffle=True)
    dev = DataLoader(_separable(32, seed=2), batch_size=16)
    epochs, lr = 15, 0.2
    module = FitModule(
        _mlp(),
        OptimConfig(name="sgd", lr=lr, momentum=0.9, schedule="inverse_time", decay_rate=1.0),
        RegConfig(),
        m_train=64,
        max_epochs=epochs,
    )
    trainer = _trainer(epochs)
    trainer.fit(module, train, dev)
    metrics = trainer.callback_metrics

    assert {"train/loss", "train/error", "dev/loss", "dev/error", "lr"} <= set(metrics)
    assert "train/cost" not in metrics  # no penalty, no cost term
    assert metrics["train/error"].item() <= 1 / 64
    assert metrics["dev/error"].item() == 0.0
    assert metrics["train/loss"].item() < 0.1
    # The last epoch (index epochs - 1) trained with lr / (1 + epochs - 1).
    assert metrics["lr"].item() == pytest.approx(lr / epochs)
    # The last validation ran on the final weights: it equals a clean evaluation of the dev set.
    clean_dev = evaluate(module.net, dev)
    assert metrics["dev/error"].item() == clean_dev["error"]
    assert metrics["dev/loss"].item() == pytest.approx(clean_dev["loss"], rel=1e-5)

    test = DataLoader(_separable(40, seed=3), batch_size=16)
    trainer.test(module, test, verbose=False)
    clean_test = evaluate(module.net, test)
    assert trainer.callback_metrics["test/error"].item() == clean_test["error"] == 0.0
    assert trainer.callback_metrics["test/loss"].item() == pytest.approx(clean_test["loss"], rel=1e-5)


def test_epoch_metrics_are_exact_counts_and_cost_adds_the_penalty() -> None:
    # lr 0 freezes the weights, so the epoch's training metrics must equal a clean evaluation.
    data = DataLoader(_hand_data(), batch_size=4)
    lam, m = 0.5, 10
    module = FitModule(_hand_net(), OptimConfig(name="sgd", lr=0.0), RegConfig(l2=lam, l1=lam), m, 1)
    trainer = _trainer(1)
    trainer.fit(module, data, data)
    metrics = trainer.callback_metrics

    clean = evaluate(module.net, data)
    assert clean["error"] == 0.2
    assert metrics["train/error"].item() == pytest.approx(0.2, abs=1e-7)
    assert metrics["dev/error"].item() == pytest.approx(0.2, abs=1e-7)
    assert metrics["train/loss"].item() == pytest.approx(clean["loss"], rel=1e-6)
    # W = [[-1], [1]]: L2 = lam/(2m) * 2 = 0.05, L1 = lam/(2m) * 2 = 0.05; biases excluded.
    assert metrics["train/cost"].item() == pytest.approx(clean["loss"] + 0.05 + 0.05, rel=1e-6)


def test_evaluate_matches_a_hand_count_and_restores_the_mode() -> None:
    net = nn.Sequential(nn.Dropout(0.9), _hand_net())  # dropout would scramble a count in train mode
    data = DataLoader(_hand_data(), batch_size=3)
    x, y = _hand_data().tensors
    logits = torch.cat([-x, x], dim=1)
    result = evaluate(net, data)
    assert result["error"] == 0.2  # examples 9 and 10
    assert result["loss"] == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-6)
    assert net.training  # evaluate put it back in train mode
    assert evaluate(net.eval(), data) == result and not net.training


def test_error_rate_metric_counts() -> None:
    metric = ErrorRate()
    metric.update(torch.tensor([[2.0, 1.0], [0.0, 1.0], [1.0, 0.0]]), torch.tensor([0, 1, 1]))  # 1 wrong of 3
    metric.update(torch.tensor([[0.0, 1.0]]), torch.tensor([0]))  # 1 wrong of 1
    assert metric.compute().item() == pytest.approx(0.5)


def test_checkpoint_round_trip(tmp_path) -> None:
    module = FitModule(_mlp(), OptimConfig(name="adam"), RegConfig(l2=0.1), m_train=64, max_epochs=2)
    trainer = _trainer(2)
    trainer.fit(module, DataLoader(_separable(32, seed=1), batch_size=8))
    path = tmp_path / "fit.ckpt"
    trainer.save_checkpoint(path)

    # The hyperparameters are plain dicts: the checkpoint loads with weights_only=True.
    ckpt = torch.load(path, weights_only=True)
    assert ckpt["hyper_parameters"]["reg"] == {"l2": 0.1, "l1": 0.0}

    fresh = FitModule(_mlp(), OptimConfig(), RegConfig(), m_train=1, max_epochs=1)
    fresh.load_weights(path)
    for a, b in zip(fresh.net.state_dict().values(), module.net.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)

    restored = FitModule.load_from_checkpoint(path, net=_mlp())
    assert restored.reg_config == RegConfig(l2=0.1)
    assert restored.optim_config == OptimConfig(name="adam")
    torch.testing.assert_close(restored.net[0].weight, module.net[0].weight)

    torch.save(module.net.state_dict(), tmp_path / "net.pt")  # a bare state_dict works too
    fresh.load_weights(tmp_path / "net.pt")
    torch.testing.assert_close(fresh.net[2].bias, module.net[2].bias)


def test_bad_configs_fail_at_construction() -> None:
    with pytest.raises(ConfigError, match="optim.weight_decay = 0.1"):
        FitModule(_mlp(), OptimConfig(name="sgd", weight_decay=0.1), RegConfig(), 10, 1)
    with pytest.raises(ConfigError, match="m_train = 0"):
        FitModule(_mlp(), OptimConfig(), RegConfig(), 0, 1)
    with pytest.raises(ConfigError, match="RegConfig has no field"):
        FitModule(_mlp(), OptimConfig(), {"l3": 1.0}, 10, 1)


def test_penalty_is_off_when_lambdas_are_zero() -> None:
    module = FitModule(_hand_net(), OptimConfig(), RegConfig(), 10, 1)
    assert module.penalty() is None
    module = FitModule(_hand_net(), OptimConfig(), RegConfig(l2=1.0), 10, 1)
    assert module.penalty().item() == pytest.approx(1.0 / 20 * 2)

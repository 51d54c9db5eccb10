"""Deciding what to record: the schedule, the presets and the layer selection."""

from __future__ import annotations

import pytest

from lightning_modules.config import ConfigError, DiagnosticsConfig, ModelConfig
from lightning_modules.models import build_model
from tracking.diagnostics import PRESETS, SnapshotSchedule, activation_modules, resolve, select_layers
from tracking.layout import KINDS


def test_schedule_step_zero_log_spaced_then_every() -> None:
    schedule = SnapshotSchedule(every=100, log_spaced=True)
    assert [s for s in range(450) if schedule(s)] == [0, 1, 2, 4, 8, 16, 32, 64, 100, 200, 300, 400]
    plain = SnapshotSchedule(every=100, log_spaced=False)
    assert [s for s in range(450) if plain(s)] == [0, 100, 200, 300, 400]
    with pytest.raises(ValueError, match="every = 0 is not allowed"):
        SnapshotSchedule(every=0)


def test_presets_and_explicit_fields_win() -> None:
    assert resolve(DiagnosticsConfig()) == PRESETS["default"]
    assert PRESETS["default"].kinds == KINDS
    assert not resolve(DiagnosticsConfig(preset="off")).enabled
    custom = resolve(DiagnosticsConfig(preset="economy", every=7, kinds=["act", "act", "grad"], bins=16))
    assert (custom.kinds, custom.every, custom.bins, custom.log_spaced) == (("act", "grad"), 7, 16, True)


def test_layers_are_the_parametrized_leaves_filtered_by_patterns() -> None:
    net = build_model(ModelConfig(depth=2, width=8, batch_norm=True), (5,), 3)
    assert list(select_layers(net)) == [
        "hidden.0.linear", "hidden.0.norm", "hidden.1.linear", "hidden.1.norm", "out"]
    assert list(select_layers(net, include=("*.linear",))) == ["hidden.0.linear", "hidden.1.linear"]
    assert list(select_layers(net, exclude=("*.norm", "out"))) == ["hidden.0.linear", "hidden.1.linear"]
    assert list(activation_modules(net)) == ["hidden.0.act", "hidden.1.act"]
    with pytest.raises(ConfigError, match=r"diagnostics.include = \['conv\*'\].*the layers are: hidden.0.linear"):
        select_layers(net, include=("conv*",))

"""Training-health flags on synthetic diagnostics whose answer can be checked by hand.

The base network is healthy: 4 hidden layers and `out`, He-like (activation std 0.8 at every layer),
||dW|| / ||W|| = 0.1 / 2 = 0.05 everywhere, 2% dead units, nothing saturated, symmetry 0.01, update ratio 1e-3,
snapshots at steps 0, 1 and 100. Each test changes a few numbers of it and checks the one flag that follows.
"""

from __future__ import annotations

import pandas as pd
import pytest

from analysis.health import Flag, depth_order, health_flags
from analysis.thresholds import DEFAULT

Stats = dict[tuple[str, str, str], float]  # (kind, layer, stat) -> value

HIDDEN = ("hidden.0.linear", "hidden.1.linear", "hidden.2.linear", "hidden.3.linear")
LAYERS = (*HIDDEN, "out")
STEPS = (0, 1, 100)
FALLING_LOSS = pd.DataFrame({"step": [0, 1, 2], "value": [2.3, 1.2, 0.8]})


def frame(snapshots: dict[int, Stats]) -> pd.DataFrame:
    """The long diagnostics frame (step, kind, layer, stat, value) of {step: {(kind, layer, stat): value}}."""
    rows = [(step, kind, layer, stat, value)
            for step, stats in snapshots.items() for (kind, layer, stat), value in stats.items()]
    return pd.DataFrame(rows, columns=["step", "kind", "layer", "stat", "value"])


def healthy(layers: tuple[str, ...] = LAYERS) -> Stats:
    """One snapshot of the healthy network: every hidden layer has an activation, `out` has none."""
    stats: Stats = {}
    for layer in layers:
        stats |= {("weight", layer, "norm"): 2.0, ("weight", layer, "symmetry"): 0.01,
                  ("weight", layer, "nonfinite"): 0.0, ("grad", layer, "norm"): 0.1,
                  ("grad", layer, "nonfinite"): 0.0, ("update", layer, "update_ratio"): 1e-3}
        if layer != "out":
            stats |= {("act", layer, "std"): 0.8, ("act", layer, "frac_dead"): 0.02,
                      ("act", layer, "frac_saturated"): 0.0, ("act", layer, "nonfinite"): 0.0}
    return stats


def per_layer(kind: str, stat: str, values: dict[str, float]) -> Stats:
    """The changes {(kind, layer, stat): value} for {layer: value}."""
    return {(kind, layer, stat): value for layer, value in values.items()}


def network(changes: Stats, at: tuple[int, ...] = STEPS) -> pd.DataFrame:
    """The healthy network at STEPS, with `changes` applied at the steps `at`."""
    return frame({step: healthy() | (changes if step in at else {}) for step in STEPS})


def only_flag(flags: list[Flag], name: str) -> Flag:
    """The single flag of `flags`, checked to be `name`."""
    assert [f.name for f in flags] == [name]
    return flags[0]


def assert_held_throughout(flag: Flag) -> None:
    """The flag held at every snapshot, the last one included: an error from step 0 to 100."""
    assert (flag.severity, flag.step, flag.last_step, flag.snapshots, flag.of_snapshots) == ("error", 0, 100, 3, 3)


# --- the healthy network -----------------------------------------------------------------------------

def test_a_healthy_network_raises_no_flag() -> None:
    """He-like spread, 0.05 gradient-to-weight ratio, 2% dead units, 1e-3 updates, falling loss: nothing."""
    assert health_flags(network({}), FALLING_LOSS) == []


def test_no_diagnostics_and_no_loss_raise_no_flag() -> None:
    """A run without snapshots or loss (diagnostics off) has nothing to flag."""
    assert health_flags(frame({}), None) == []


# --- one test per flag -------------------------------------------------------------------------------

def test_nonfinite_gradients_are_flagged_at_the_layer_with_the_most() -> None:
    """3 NaN entries in hidden.1's gradient and 12 in hidden.3's: the worst is hidden.3's, keyed kind/layer."""
    flag = only_flag(health_flags(network(per_layer("grad", "nonfinite", {HIDDEN[1]: 3, HIDDEN[3]: 12}))),
                     "nonfinite")
    assert flag.layer == "grad/hidden.3.linear"
    assert flag.layers == ("grad/hidden.1.linear", "grad/hidden.3.linear")
    assert flag.values == {"grad/hidden.1.linear": 3.0, "grad/hidden.3.linear": 12.0}
    assert flag.threshold == 0.0
    assert_held_throughout(flag)


def test_vanishing_gradients_when_every_ratio_is_below_1e_4() -> None:
    """Gradient norms 1e-4 (hidden.0: 2e-5) over weight norms 2: ratios 5e-5 (1e-5), all below 1e-4."""
    grads = {layer: 1e-4 for layer in LAYERS} | {HIDDEN[0]: 2e-5}
    flag = only_flag(health_flags(network(per_layer("grad", "norm", grads))), "vanishing_gradients")
    assert flag.layer == "hidden.0.linear"
    assert flag.layers == LAYERS
    assert flag.values == pytest.approx({layer: 5e-5 for layer in LAYERS} | {HIDDEN[0]: 1e-5})
    assert flag.threshold == 1e-4
    assert flag.extra["first_to_last_grad_norm"] == pytest.approx(0.2)  # 2e-5 / 1e-4
    assert_held_throughout(flag)


def test_vanishing_gradients_when_the_first_layer_gets_under_1_percent_of_the_last_layers_gradient() -> None:
    """hidden.0's gradient norm 5e-4 (ratio 2.5e-4, above 1e-4) is 0.005 of out's 0.1: flagged at hidden.0."""
    flag = only_flag(health_flags(network(per_layer("grad", "norm", {HIDDEN[0]: 5e-4}))), "vanishing_gradients")
    assert flag.layer == "hidden.0.linear"
    assert flag.layers == ("hidden.0.linear",)
    assert flag.values[HIDDEN[0]] == pytest.approx(2.5e-4)
    assert flag.values["out"] == pytest.approx(0.05)
    assert flag.extra["first_to_last_grad_norm"] == pytest.approx(0.005)
    assert_held_throughout(flag)


def test_the_depth_ratio_needs_three_layers() -> None:
    """The same 0.005 first-to-last ratio in a network of two layers is no flag."""
    stats = healthy(("hidden.0.linear", "out")) | {("grad", "hidden.0.linear", "norm"): 5e-4}
    assert health_flags(frame({0: stats})) == []


def test_exploding_gradients_when_a_ratio_is_above_10() -> None:
    """Gradient norms 30 and 24 over weight norms 2 at hidden.1 and hidden.3: ratios 15 and 12, worst hidden.1."""
    flag = only_flag(health_flags(network(per_layer("grad", "norm", {HIDDEN[1]: 30.0, HIDDEN[3]: 24.0}))),
                     "exploding_gradients")
    assert flag.layer == "hidden.1.linear"
    assert flag.layers == ("hidden.1.linear", "hidden.3.linear")
    assert flag.values == pytest.approx({layer: 0.05 for layer in LAYERS} | {HIDDEN[1]: 15.0, HIDDEN[3]: 12.0})
    assert flag.threshold == 10.0
    assert flag.extra["first_to_last_grad_norm"] == pytest.approx(1.0)
    assert_held_throughout(flag)


def test_exploding_gradients_when_the_first_layer_gets_over_100_times_the_last_layers_gradient() -> None:
    """hidden.0's gradient norm 15 (ratio 7.5, below 10) is 150 times out's 0.1: flagged at hidden.0."""
    flag = only_flag(health_flags(network(per_layer("grad", "norm", {HIDDEN[0]: 15.0}))), "exploding_gradients")
    assert flag.layer == "hidden.0.linear"
    assert flag.layers == ("hidden.0.linear",)
    assert flag.values[HIDDEN[0]] == pytest.approx(7.5)
    assert flag.extra["first_to_last_grad_norm"] == pytest.approx(150.0)
    assert_held_throughout(flag)


def test_dead_units_from_the_first_snapshot_they_hold_at_with_every_layer_they_hold_for() -> None:
    """hidden.1 is 60% dead from step 1 (70% at 100), hidden.2 90% dead at 100: the flag starts at step 1 with
    step 1's numbers and worst layer, and lists both layers."""
    snapshots = {0: healthy(),
                 1: healthy() | per_layer("act", "frac_dead", {HIDDEN[1]: 0.6}),
                 100: healthy() | per_layer("act", "frac_dead", {HIDDEN[1]: 0.7, HIDDEN[2]: 0.9})}
    flag = only_flag(health_flags(frame(snapshots)), "dead_units")
    assert (flag.severity, flag.step, flag.last_step, flag.snapshots, flag.of_snapshots) == ("error", 1, 100, 2, 3)
    assert flag.layer == "hidden.1.linear"
    assert flag.layers == ("hidden.1.linear", "hidden.2.linear")
    assert flag.values == {HIDDEN[0]: 0.02, HIDDEN[1]: 0.6, HIDDEN[2]: 0.02, HIDDEN[3]: 0.02}
    assert flag.threshold == 0.5


def test_saturated_units_above_20_percent() -> None:
    """30% of hidden.0's and 50% of hidden.1's tanh activations at +-1: flagged, worst hidden.1."""
    flag = only_flag(health_flags(network(per_layer("act", "frac_saturated", {HIDDEN[0]: 0.3, HIDDEN[1]: 0.5}))),
                     "saturated_units")
    assert flag.layer == "hidden.1.linear"
    assert flag.layers == ("hidden.0.linear", "hidden.1.linear")
    assert flag.values == {HIDDEN[0]: 0.3, HIDDEN[1]: 0.5, HIDDEN[2]: 0.0, HIDDEN[3]: 0.0}
    assert flag.threshold == 0.2
    assert_held_throughout(flag)


@pytest.mark.parametrize(("stds", "name", "factor", "threshold"), [
    ((1.0, 0.5, 0.25, 0.125), "activations_collapsing", 0.5, 0.8),
    ((1.0, 2.0, 4.0, 8.0), "activations_exploding", 2.0, 1.25),
])
def test_activation_spread_halving_or_doubling_per_layer(stds: tuple[float, ...], name: str, factor: float,
                                                         threshold: float) -> None:
    """Activation std 1, 0.5, 0.25, 0.125 (factor 0.5 per layer, below 0.8) collapses; 1, 2, 4, 8 (factor 2,
    above 1.25) explodes; both reported at the deepest layer."""
    by_layer = dict(zip(HIDDEN, stds, strict=True))
    flag = only_flag(health_flags(network(per_layer("act", "std", by_layer))), name)
    assert flag.layer == "hidden.3.linear"
    assert flag.layers == HIDDEN
    assert flag.values == by_layer
    assert flag.extra["per_layer_factor"] == pytest.approx(factor)
    assert flag.threshold == threshold
    assert_held_throughout(flag)


def test_the_spread_across_depth_follows_the_natural_order_of_the_layer_names() -> None:
    """12 layers hidden.0 .. hidden.11 halving the std: factor 0.5 only if hidden.10 comes after hidden.9
    (in name order, hidden.10 and hidden.11 would sit between hidden.1 and hidden.2)."""
    stats = {("act", f"hidden.{i}.linear", "std"): 0.5**i for i in reversed(range(12))}
    flag = only_flag(health_flags(frame({0: stats})), "activations_collapsing")
    assert flag.layer == "hidden.11.linear"
    assert flag.extra["per_layer_factor"] == pytest.approx(0.5)


def test_identical_units_as_after_a_zero_initialization() -> None:
    """Weight symmetry 1 in every hidden layer: flagged at all four, the first of the tied layers the worst."""
    flag = only_flag(health_flags(network(per_layer("weight", "symmetry", dict.fromkeys(HIDDEN, 1.0)))),
                     "identical_units")
    assert flag.layer == "hidden.0.linear"
    assert flag.layers == HIDDEN
    assert flag.values == dict.fromkeys(HIDDEN, 1.0) | {"out": 0.01}
    assert flag.threshold == 0.99
    assert_held_throughout(flag)


def test_learning_rate_too_high_when_the_median_update_ratio_is_above_0_1() -> None:
    """Update ratios 0.2, 0.4, 0.5, 1.0, 0.6: median 0.5, largest at hidden.3."""
    ratios = dict(zip(LAYERS, (0.2, 0.4, 0.5, 1.0, 0.6), strict=True))
    flag = only_flag(health_flags(network(per_layer("update", "update_ratio", ratios))), "learning_rate_too_high")
    assert flag.layer == "hidden.3.linear"
    assert flag.layers == LAYERS
    assert flag.values == ratios
    assert flag.extra["median_update_ratio"] == pytest.approx(0.5)
    assert flag.threshold == 0.1
    assert_held_throughout(flag)


def test_learning_rate_too_low_when_the_median_update_ratio_is_below_1e_5() -> None:
    """Update ratios 1e-7, 1e-7, 1e-8, 1e-7, 1e-6: median 1e-7, smallest at hidden.2."""
    ratios = dict(zip(LAYERS, (1e-7, 1e-7, 1e-8, 1e-7, 1e-6), strict=True))
    flag = only_flag(health_flags(network(per_layer("update", "update_ratio", ratios))), "learning_rate_too_low")
    assert flag.layer == "hidden.2.linear"
    assert flag.layers == LAYERS
    assert flag.values == ratios
    assert flag.extra["median_update_ratio"] == pytest.approx(1e-7)
    assert flag.threshold == 1e-5
    assert_held_throughout(flag)


def test_loss_not_falling_when_it_improved_by_less_than_1_percent() -> None:
    """Loss 2.30, 2.30, 2.299: the best later epoch improves on the first by 0.001 / 2.3 = 0.04%."""
    loss = pd.DataFrame({"step": [0, 1, 2], "value": [2.30, 2.30, 2.299]})
    flag = only_flag(health_flags(network({}), loss), "loss_not_falling")
    assert (flag.severity, flag.layer, flag.step) == ("error", None, 2)
    assert flag.values == {"first_epoch": 2.30, "best_later_epoch": 2.299}
    assert flag.extra["improvement"] == pytest.approx(0.001 / 2.3)
    assert flag.threshold == 0.01
    assert "0.04%" in flag.explanation
    assert (flag.snapshots, flag.of_snapshots) == (3, 3)


def test_diverged_when_the_run_has_a_divergence_tag() -> None:
    """The run's divergence tag is an error, at no layer or step, quoting the tag."""
    flag = only_flag(health_flags(network({}), FALLING_LOSS, diverged="loss nan at step 412"), "diverged")
    assert (flag.severity, flag.layer, flag.step) == ("error", None, None)
    assert "loss nan at step 412" in flag.explanation


# --- severity and order ------------------------------------------------------------------------------

def test_a_flag_that_training_got_out_of_is_a_warning() -> None:
    """hidden.0 saturated at steps 0 and 1 but not at the last step 100: a warning from step 0 to 1, 2 of 3."""
    flag = only_flag(health_flags(network(per_layer("act", "frac_saturated", {HIDDEN[0]: 0.4}), at=(0, 1))),
                     "saturated_units")
    assert (flag.severity, flag.step, flag.last_step, flag.snapshots, flag.of_snapshots) == ("warning", 0, 1, 2, 3)
    assert flag.layer == "hidden.0.linear"
    assert flag.values[HIDDEN[0]] == 0.4


def test_errors_come_before_warnings_each_in_check_order() -> None:
    """Dead units only early (a warning), identical units throughout, a flat loss and a divergence (errors):
    the errors first, in check order, then the warning, although dead units is checked before identical."""
    snapshots = {step: healthy() | per_layer("weight", "symmetry", {HIDDEN[2]: 1.0})
                 | (per_layer("act", "frac_dead", {HIDDEN[0]: 0.6}) if step < 100 else {}) for step in STEPS}
    flat = pd.DataFrame({"step": [0, 1], "value": [2.3, 2.3]})
    flags = health_flags(frame(snapshots), flat, diverged="nan loss")
    assert [(f.name, f.severity) for f in flags] == [
        ("diverged", "error"), ("identical_units", "error"), ("loss_not_falling", "error"), ("dead_units", "warning")]


# --- layer order and thresholds ----------------------------------------------------------------------

def test_depth_order_sorts_numbers_in_names_by_value() -> None:
    """hidden.2 before hidden.10, `out` after the hidden layers."""
    assert depth_order(["hidden.10.linear", "hidden.2.linear", "out"]) == ["hidden.2.linear", "hidden.10.linear", "out"]


def test_a_stricter_threshold_flags_the_healthy_networks_dead_units() -> None:
    """With dead_units 0.01 the healthy network's 2% dead units are flagged, in every hidden layer."""
    flag = only_flag(health_flags(network({}), FALLING_LOSS, thresholds=DEFAULT.replace(dead_units=0.01)),
                     "dead_units")
    assert flag.layers == HIDDEN
    assert flag.layer == "hidden.0.linear"
    assert flag.threshold == 0.01
    assert_held_throughout(flag)


def test_an_unknown_threshold_is_refused_naming_it() -> None:
    """`replace` with a name Thresholds does not have raises ValueError naming it."""
    with pytest.raises(ValueError, match="'bogus' does not exist"):
        DEFAULT.replace(bogus=1)

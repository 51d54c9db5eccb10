"""Training-health flags from a run's diagnostics: vanishing or exploding gradients, dead and saturated
units, activations collapsing or blowing up with depth, identical units, a learning rate far from the
update-to-weight rule of thumb, a training loss that does not fall, divergence.

Input: the long frame of `tracking.reader.diagnostics_frame` (step, kind, layer, stat, value; the statistics
of HEALTH_STATS, named in `tracking.layout`), the epoch-level training loss and the run's divergence tag. Each check
runs on every snapshot; a flag reports the first snapshot it held at, the numbers behind it there, and
its severity: "error" when it still holds at the last snapshot (training ended in that state),
"warning" when training got out of it. Thresholds: `analysis.thresholds`.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis.thresholds import DEFAULT, Thresholds

Severity = str  # "warning" | "error"

# The diagnostics statistics the flags read (a reader fetching every key's history would cost a query each).
HEALTH_STATS = ("norm", "std", "nonfinite", "frac_dead", "frac_saturated", "symmetry", "update_ratio")


@dataclass(frozen=True)
class Flag:
    """One finding: what, where (the worst layer, and every layer it holds for), when, how bad, the numbers
    (`quantity` per layer at `step`), why it matters and what to do."""

    name: str
    severity: Severity
    layer: str | None
    step: int | None
    quantity: str
    values: dict[str, float]
    threshold: float | None
    explanation: str
    action: str
    layers: tuple[str, ...] = ()
    last_step: int | None = None  # the last snapshot it held at
    snapshots: int = 0  # how many snapshots it held at
    of_snapshots: int = 0  # how many there were
    extra: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Finding:
    """What a check returns for one snapshot: the per-layer numbers, the layers it holds for, the worst."""

    values: dict[str, float]
    layers: tuple[str, ...]
    worst: str | None
    extra: dict[str, float] = field(default_factory=dict)


def depth_order(layers: Sequence[str]) -> list[str]:
    """Layers from the input to the output: natural order of their names (hidden.2 before hidden.10; `out`
    after `hidden`), which is the order fitlens' models build them in."""
    return sorted(layers, key=lambda name: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)])


Snapshot = dict[tuple[str, str], dict[str, float]]  # (kind, stat) -> {layer: value}, layers in depth order


Diagnostics = pd.DataFrame | Iterable[tuple[int, str, str, str, float]]  # columns or rows of step, kind, layer,
# stat, value: a sweep's table flags hundreds of runs, and a frame per run costs more than the checks


def _snapshots(diagnostics: Diagnostics) -> dict[int, Snapshot]:
    """The diagnostics by step, each snapshot as (kind, stat) -> {layer: value} in depth order (plain loops, as
    a groupby per run would cost more than the checks)."""
    raw: dict[int, dict[tuple[str, str], dict[str, float]]] = {}
    rows = (diagnostics[["step", "kind", "layer", "stat", "value"]].itertuples(index=False, name=None)
            if isinstance(diagnostics, pd.DataFrame) else diagnostics)
    for step, kind, layer, stat, value in rows:
        raw.setdefault(int(step), {}).setdefault((kind, stat), {})[layer] = float(value)
    return {step: {key: {layer: values[layer] for layer in _depth_order(tuple(values))}
                   for key, values in raw[step].items()} for step in sorted(raw)}


@functools.lru_cache(maxsize=1024)
def _depth_order(layers: tuple[str, ...]) -> list[str]:
    return depth_order(layers)


def _depth_factor(values: dict[str, float]) -> float | None:
    """The per-layer factor of a positive quantity across depth: exp of the slope of a least-squares line
    through log(value) against the layer index. None with fewer than 3 layers or a non-positive value."""
    series = list(values.values())
    if len(series) < 3 or not all(math.isfinite(v) and v > 0 for v in series):
        return None
    slope = np.polyfit(np.arange(len(series)), np.log(series), 1)[0]
    return float(math.exp(slope))


# --- checks: one snapshot in, a Finding (or None) out ------------------------------------------------

def _nonfinite(s: Snapshot, t: Thresholds) -> Finding | None:
    values = {f"{kind}/{layer}": v for (kind, stat), layers in s.items() if stat == "nonfinite"
              for layer, v in layers.items() if v > 0}
    if not values:
        return None
    worst = max(values, key=values.get)
    return Finding(values, tuple(values), worst)


def _grad_to_weight(s: Snapshot) -> dict[str, float]:
    grads, weights = s.get(("grad", "norm"), {}), s.get(("weight", "norm"), {})
    # A layer whose weights are all 0 and whose gradient is not (a zero-initialized output layer at its first steps)
    # has no scale to compare its gradient with; one whose gradient is 0 too gets none at all (zero init's hidden
    # layers): a ratio of 0.
    return {layer: g / weights[layer] if weights[layer] else 0.0 for layer, g in grads.items()
            if layer in weights and (weights[layer] or g == 0)}


def _vanishing(s: Snapshot, t: Thresholds) -> Finding | None:
    ratios = _grad_to_weight(s)
    if not ratios:
        return None
    grads = s.get(("grad", "norm"), {})
    first, last = grads[next(iter(grads))], grads[list(grads)[-1]]
    depth_ratio = first / last if last > 0 else math.nan
    worst = min(ratios, key=ratios.get)
    extra = {"first_to_last_grad_norm": depth_ratio}
    if all(r < t.vanishing_grad_ratio for r in ratios.values()):
        return Finding(ratios, tuple(ratios), worst, extra)
    if len(grads) >= 3 and depth_ratio < t.vanishing_depth_ratio:
        return Finding(ratios, (next(iter(grads)),), next(iter(grads)), extra)
    return None


def _exploding(s: Snapshot, t: Thresholds) -> Finding | None:
    ratios = _grad_to_weight(s)
    grads = s.get(("grad", "norm"), {})
    if not ratios:
        return None
    high = tuple(layer for layer, r in ratios.items() if not r <= t.exploding_grad_ratio)
    first, last = grads[next(iter(grads))], grads[list(grads)[-1]]
    depth_ratio = first / last if last > 0 else math.nan
    extra = {"first_to_last_grad_norm": depth_ratio}
    if high:
        return Finding(ratios, high, max(high, key=lambda layer: ratios[layer]), extra)
    if len(grads) >= 3 and depth_ratio > t.exploding_depth_ratio:
        return Finding(ratios, (next(iter(grads)),), next(iter(grads)), extra)
    return None


def _above(kind: str, stat: str, threshold: Callable[[Thresholds], float]):
    def check(s: Snapshot, t: Thresholds) -> Finding | None:
        values = s.get((kind, stat), {})
        high = tuple(layer for layer, v in values.items() if v > threshold(t))
        return Finding(values, high, max(high, key=values.get)) if high else None
    return check


def variance_ratio(stds: Mapping[str, float]) -> float:
    """The largest activation variance over the smallest across the layers (SageMaker's PoorWeightInitialization
    ratio); infinite when a layer's std is 0."""
    smallest = min(stds.values())
    return (max(stds.values()) / smallest) ** 2 if smallest > 0 else math.inf


def _spread(collapsing: bool):
    def check(s: Snapshot, t: Thresholds) -> Finding | None:
        stds = s.get(("act", "std"), {})
        factor = _depth_factor(stds)
        if factor is None:
            return None
        ratio = variance_ratio(stds)
        if ratio <= t.depth_variance_ratio:
            return None  # a trend, but the layers' variances stay within the ratio
        if (factor < t.collapsing_spread) if collapsing else (factor > t.exploding_spread):
            layers = tuple(stds)
            return Finding(stds, layers, layers[-1], {"per_layer_factor": factor, "variance_ratio": ratio})
        return None
    return check


def _identical(s: Snapshot, t: Thresholds) -> Finding | None:
    """Hidden layers whose units are identical. The last layer (the output) is left out: its units have different
    targets, so their gradients differ and break any symmetry (a two-class output's rows grow as w and -w); a
    zero-initialized logistic regression trains well."""
    values = s.get(("weight", "symmetry"), {})
    hidden = list(values)[:-1]
    high = tuple(layer for layer in hidden if values[layer] > t.symmetric_units - 1e-12)
    return Finding(values, high, max(high, key=values.get)) if high else None


def _update_ratio(too_high: bool):
    def check(s: Snapshot, t: Thresholds) -> Finding | None:
        ratios = s.get(("update", "update_ratio"), {})
        finite = [r for r in ratios.values() if math.isfinite(r)]
        if not finite:
            return None
        median = float(np.median(finite))
        if (median > t.update_ratio_high) if too_high else (0 < median < t.update_ratio_low):
            worst = (max if too_high else min)(ratios, key=ratios.get)
            return Finding(ratios, tuple(ratios), worst, {"median_update_ratio": median})
        return None
    return check


@dataclass(frozen=True)
class Check:
    name: str
    quantity: str
    threshold: Callable[[Thresholds], float | None]
    run: Callable[[Snapshot, Thresholds], Finding | None]
    explanation: str
    action: str


CHECKS: tuple[Check, ...] = (
    Check("nonfinite", "count of NaN / inf entries", lambda t: 0.0, _nonfinite,
          "NaN or infinite values reached the network: the gradients exploded or the loss overflowed.",
          "Lower the learning rate, clip gradients, or check the inputs for NaN."),
    Check("vanishing_gradients", "||dW|| / ||W||", lambda t: t.vanishing_grad_ratio, _vanishing,
          "The gradients are too small to move the weights (or shrink toward the input layers), so the "
          "network learns slowly or not at all.",
          "Initialize with Xavier (tanh) or He (ReLU), use ReLU-like activations, batch normalization, "
          "or fewer layers."),
    Check("exploding_gradients", "||dW|| / ||W||", lambda t: t.exploding_grad_ratio, _exploding,
          "The gradients are larger than the weights themselves (or grow toward the input layers): every "
          "step overshoots.",
          "Initialize with a smaller scale (Xavier / He), lower the learning rate, clip gradients."),
    Check("dead_units", "fraction of units zero for every example", lambda t: t.dead_units,
          _above("act", "frac_dead", lambda t: t.dead_units),
          "Many units output 0 for every example: they pass no gradient and have stopped learning (dying "
          "ReLUs, or zero weights).",
          "Lower the learning rate, use He initialization, or leaky ReLU / ELU."),
    Check("saturated_units", "fraction of activations with |a| > 0.99", lambda t: t.saturated_units,
          _above("act", "frac_saturated", lambda t: t.saturated_units),
          "Many tanh / sigmoid units sit at +-1 (or 0 / 1), where their slope is near 0: the gradient through "
          "them vanishes.",
          "Initialize with Xavier (variance 1/n_in), normalize the inputs, or use batch normalization."),
    Check("activations_collapsing", "activation std", lambda t: t.collapsing_spread, _spread(collapsing=True),
          "The spread of the activations shrinks layer after layer, so the deeper layers see almost "
          "nothing and the gradients vanish.",
          "Use He initialization with ReLU (variance 2/n_in) or Xavier with tanh (1/n_in)."),
    Check("activations_exploding", "activation std", lambda t: t.exploding_spread, _spread(collapsing=False),
          "The spread of the activations grows layer after layer: the weights are too large for the depth.",
          "Use a smaller initialization scale: Xavier (1/n_in) or He (2/n_in)."),
    Check("identical_units", "weight symmetry (1 = identical units)", lambda t: t.symmetric_units, _identical,
          "The units of a layer have identical weights, so they compute the same thing and get the same "
          "gradient: gradient descent never breaks the symmetry.",
          "Initialize the weights at random (Xavier / He), not with zeros or a constant."),
    Check("learning_rate_too_high", "update-to-weight ratio", lambda t: t.update_ratio_high,
          _update_ratio(too_high=True),
          "Each step changes the weights by much more than the ~1e-3 of their size that trains well.",
          "Lower the learning rate (by 10x) or add learning-rate decay."),
    Check("learning_rate_too_low", "update-to-weight ratio", lambda t: t.update_ratio_low,
          _update_ratio(too_high=False),
          "Each step changes the weights by far less than the ~1e-3 of their size that trains well.",
          "Raise the learning rate (by 10x); tune it first, on a log scale."),
)


def health_flags(
    diagnostics: Diagnostics, loss: pd.DataFrame | None = None, diverged: str | None = None,
    thresholds: Thresholds = DEFAULT,
) -> list[Flag]:
    """Every flag that holds at some snapshot of `diagnostics` (step, kind, layer, stat, value), for
    the training loss per epoch `loss` (columns step, value) and the run's divergence tag `diverged`. Flags
    come in CHECKS order; errors before warnings."""
    flags: list[Flag] = []
    if diverged:
        flags.append(Flag("diverged", "error", None, None, "where the training loss stopped being finite", {},
                          None, f"The training loss became NaN or infinite ({diverged}).",
                          "Lower the learning rate, clip gradients, or use a smaller initialization scale."))
    by_step = _snapshots(diagnostics)
    steps = list(by_step)
    for check in CHECKS:
        held = [(step, f) for step, snapshot in by_step.items() if (f := check.run(snapshot, thresholds)) is not None]
        if not held:
            continue
        first_step, first = held[0]
        last_step = held[-1][0]
        layers = tuple(dict.fromkeys(layer for _, f in held for layer in f.layers))
        flags.append(Flag(
            name=check.name, severity="error" if last_step == steps[-1] else "warning", layer=first.worst,
            step=int(first_step), quantity=check.quantity, values=first.values, threshold=check.threshold(thresholds),
            explanation=check.explanation, action=check.action, layers=layers, last_step=int(last_step),
            snapshots=len(held), of_snapshots=len(steps), extra=first.extra,
        ))
    not_falling = _loss_not_falling(loss, thresholds)
    if not_falling is not None:
        flags.append(not_falling)
    return sorted(flags, key=lambda f: f.severity != "error")


def _loss_not_falling(loss: pd.DataFrame | None, t: Thresholds) -> Flag | None:
    if loss is None or len(loss) < 2:
        return None
    values = loss.sort_values("step")["value"].to_numpy(dtype=float)
    first, best = values[0], np.nanmin(values[1:]) if np.isfinite(values[1:]).any() else math.nan
    if not (math.isfinite(first) and math.isfinite(best)) or first <= 0:
        return None
    improvement = (first - best) / first
    if improvement >= t.loss_not_falling:
        return None
    return Flag("loss_not_falling", "error", None, int(loss["step"].max()), "training loss per epoch",
                {"first_epoch": float(first), "best_later_epoch": float(best)}, t.loss_not_falling,
                f"The training loss fell by {100 * improvement:.2f}% of its first epoch's value over "
                f"{len(values)} epochs: the network is not learning.",
                "Check the learning rate (too low or too high), the initialization (zeros?) and the labels.",
                snapshots=len(values), of_snapshots=len(values), extra={"improvement": float(improvement)})

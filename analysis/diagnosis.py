"""The diagnosis of one run: why it trains badly and what to change, as ranked findings.

`diagnose_run(evidence)` reads everything known about a run (its errors and reference error, its per-epoch
curves, its health flags over every snapshot, its diagnostics, its settings, the runs beside it and a gradient
check) and returns its findings, most important first. Each finding names a `cause` from CAUSES (documented in
docs/diagnosis.md), its severity and strength, the `evidence` it rests on (numbers, layers, steps, curve points)
and the `actions` that address it as concrete setting changes, with the runs beside this one that already took
such a step and what it did.

The order is the course's, and it is the point: a cause that stops a network from learning at all (identical
units, vanishing or exploding signals, a diverged loss, a learning rate far off, a loss that cannot fall) is read
before the bias/variance recipe, whose "train a bigger network" is no help to a network that cannot learn. Then
what holds the training error up (a regularizer too strong, a plateau, too few epochs), then the variance, then
what the error rate hides (label noise, an imbalanced training set). The bias/variance verdict stays, as one
finding among them, with the course's thresholds. Every threshold is in `analysis.thresholds`.

Pure: the frames come from `tracking.reader` (`analysis.gather` collects them).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from analysis.bias_variance import Diagnosis, pct, points, row_diagnosis
from analysis.health import HEALTH_STATS, Flag, depth_order, variance_ratio
from analysis.thresholds import DEFAULT, Thresholds
from analysis.values import finite_or_none, setting_text
from tracking.gradcheck_verdict import gradcheck_verdict

# The diagnostics statistics the diagnosis reads: the health flags' and the mean, min and max (a softmax's outputs).
DIAGNOSIS_STATS = (*HEALTH_STATS, "mean", "min", "max")
Severity = str  # "error" (it holds at the end of training), "warning" (it held, or it may matter), "info"
SEVERITY_ORDER = {"error": 0, "warning": 1, "info": 2}


@dataclass(frozen=True)
class Cause:
    """A cause in the diagnosis's vocabulary: which question of the reading order it answers (1: can the network
    learn at all; 2: what holds the training error up; 3: the variance; 4: what the error rate hides), its title,
    and whether it is a symptom (what a root cause does, read after the causes of its stage)."""

    stage: int
    title: str
    symptom: bool = False


CAUSES: dict[str, Cause] = {
    # 1. Can it learn at all?
    "diverged": Cause(1, "the loss diverged (NaN or infinite)"),
    "wrong_gradient": Cause(1, "backprop's gradient disagrees with finite differences"),
    "symmetry": Cause(1, "identical units: the initialization never breaks their symmetry"),
    "init_too_small": Cause(1, "an initialization too small for the depth: the signal dies out layer by layer"),
    "init_too_large": Cause(1, "an initialization too large: the signal grows or saturates layer by layer"),
    "no_gradient": Cause(1, "a layer receives no gradient (frozen or disconnected)"),
    "learning_rate_too_high": Cause(1, "the learning rate is too high: the steps overshoot"),
    "learning_rate_too_low": Cause(1, "the learning rate is too low: the weights barely move"),
    "lr_decayed_too_fast": Cause(1, "the learning-rate schedule decays to nothing"),
    "inputs_not_normalized": Cause(1, "the inputs are not normalized"),
    "vanishing_gradients": Cause(1, "vanishing gradients", symptom=True),
    "exploding_gradients": Cause(1, "exploding gradients", symptom=True),
    "saturated_units": Cause(1, "saturated tanh / sigmoid units", symptom=True),
    "dead_units": Cause(1, "dead ReLU units", symptom=True),
    "loss_on_probabilities": Cause(1, "the loss is computed on probabilities (softmax before the cross-entropy)"),
    "labels_unrelated": Cause(1, "the labels do not depend on the inputs the network sees"),
    "learned_nothing": Cause(1, "the network learned nothing: its error is at chance", symptom=True),
    "class_imbalance": Cause(1, "an imbalanced training set: the network predicts the majority class"),
    # 2. What holds the training error up?
    "over_regularized": Cause(2, "too much regularization holds the training error up"),
    "plateau": Cause(2, "the training loss has stalled on a plateau", symptom=True),
    "batch_too_small": Cause(2, "a mini-batch so small that the gradient is mostly noise"),
    "batch_too_large": Cause(2, "full-batch gradient descent: one step per epoch"),
    "undertrained": Cause(2, "training stopped while the dev error was still falling"),
    "high_bias": Cause(2, "high bias: the network does not fit its training set"),
    # 3. Variance.
    "label_noise": Cause(3, "the network memorizes noisy labels (or its training error is at their noise rate)"),
    "overtrained": Cause(3, "training went on long after the dev error's minimum"),
    "high_variance": Cause(3, "high variance: the network does not generalize from its training set"),
    # 4. What the error rate hides.
    "minority_class": Cause(4, "a small minority class that the error rate hides"),
    "good_fit": Cause(4, "low bias and low variance"),
}
CAUSE_ORDER = {name: i for i, name in enumerate(CAUSES)}
VERDICT_CAUSES = {"high_bias": ("high_bias",), "high_variance": ("high_variance",),
                  "high_bias_high_variance": ("high_bias", "high_variance"), "good_fit": ("good_fit",)}


@dataclass(frozen=True)
class Evidence:
    """One fact a finding rests on: a sentence, and where it was seen (a layer and step of the layers view, the
    diagnostics kind, a curve point) with its numbers."""

    text: str
    step: int | None = None
    layer: str | None = None
    kind: str | None = None  # the diagnostics kind to open the layers view on (act, grad, weight, ...)
    values: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Action:
    """A concrete change: `setting` from `old` to `new` (`setting` None: a change no setting makes, in `text`)."""

    setting: str | None
    old: Any
    new: Any
    text: str


@dataclass(frozen=True)
class Tried:
    """A run beside this one that already took an action's step, and what it did to the errors."""

    run_id: str
    setting: str
    value: Any
    train_error: float
    dev_error: float
    text: str


@dataclass(frozen=True)
class Finding:
    cause: str  # a key of CAUSES
    severity: Severity
    strength: float  # how far past its threshold the evidence is, 0..1: it orders findings of one stage
    summary: str
    evidence: tuple[Evidence, ...]
    actions: tuple[Action, ...] = ()
    tried: tuple[Tried, ...] = ()

    @property
    def stage(self) -> int:
        return CAUSES[self.cause].stage

    def ranked(self) -> tuple:
        """The reading order: errors first; then the question it answers; root causes before their symptoms; the
        vocabulary's order (a root before what it explains); the strength of the evidence."""
        cause = CAUSES[self.cause]
        return (SEVERITY_ORDER[self.severity], cause.stage, cause.symptom, CAUSE_ORDER[self.cause], -self.strength)


@dataclass(frozen=True)
class RunEvidence:
    """Everything known about one run, as the readers give it.

    row: its `tracking.reader.runs_frame` row (errors of the kept weights, reference error, the fit's data facts
    n_classes, majority_fraction, input_std, and every setting as a dotted column). curves: its per-epoch points
    (key, step, value) of train/loss, train/cost, train/error, dev/error, dev/loss, lr, epoch. flags: its health
    flags over every snapshot. diagnostics: its statistics (step, kind, layer, stat, value) at every snapshot.
    siblings: the runs_frame rows of the runs it is compared with. gradcheck: a gradient-check report of it."""

    row: Mapping[str, Any]
    curves: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["key", "step", "value"]))
    flags: Sequence[Flag] = ()
    diagnostics: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=["step", "kind", "layer", "stat", "value"]))
    siblings: pd.DataFrame = field(default_factory=pd.DataFrame)
    gradcheck: Mapping[str, Any] | None = None

    def setting(self, name: str, default: Any = None) -> Any:
        value = self.row.get(name, default)
        return default if isinstance(value, float) and math.isnan(value) else value

    def curve(self, key: str) -> np.ndarray:
        """The per-epoch values of `key`, in step order (NaN where not finite)."""
        if self.curves.empty or "key" not in self.curves:
            return np.array([])
        rows = self.curves[self.curves["key"] == key].sort_values("step")
        return pd.to_numeric(rows["value"], errors="coerce").to_numpy(dtype=np.float64)

    def curve_steps(self, key: str) -> np.ndarray:
        if self.curves.empty or "key" not in self.curves:
            return np.array([], dtype=np.int64)
        return self.curves[self.curves["key"] == key].sort_values("step")["step"].to_numpy(dtype=np.int64)

    def flag(self, name: str) -> Flag | None:
        return next((f for f in self.flags if f.name == name), None)


# ----------------------------------------------------------------------------------------------
# Small helpers


def chance_error(e: RunEvidence) -> float | None:
    """The error of a classifier that ignores its inputs: always the majority class (1 - its fraction), or
    1 - 1/K without the fraction; None without the number of classes."""
    majority = finite_or_none(e.row.get("majority_fraction"))
    if majority is not None:
        return 1.0 - majority
    k = finite_or_none(e.row.get("n_classes"))
    return None if k is None or k < 2 else 1.0 - 1.0 / k


def _diagnosis(e: RunEvidence, t: Thresholds) -> Diagnosis | None:
    """The run's bias/variance diagnosis; None without finite errors in [0, 1]."""
    try:
        return row_diagnosis(e.row, t)
    except ValueError:
        return None


def _clip(x: float) -> float:
    return float(min(max(x, 0.0), 1.0)) if math.isfinite(x) else 1.0


def _log_strength(value: float, threshold: float) -> float:
    """How many decades past its threshold a ratio is, as 0..1 (3 decades or more: 1)."""
    if not (value > 0 and threshold > 0):
        return 1.0
    return _clip(abs(math.log10(value / threshold)) / 3)


def _change(setting: str, old: Any, new: Any, why: str = "") -> Action:
    text = f"{setting}: {setting_text(old)} -> {setting_text(new)}" if old is not None else \
        f"{setting}={setting_text(new)}"
    return Action(setting, old, new, text + (f" ({why})" if why else ""))


def _scaled(value: Any, factor: float) -> float | None:
    number = finite_or_none(value)
    return None if number is None else float(f"{number * factor:.3g}")


def _lr_action(e: RunEvidence, factor: float, why: str) -> Action:
    lr = finite_or_none(e.setting("optim.lr"))
    return _change("optim.lr", lr, _scaled(lr, factor) if lr is not None else None, why)


def _init_action(e: RunEvidence) -> Action:
    activation = str(e.setting("model.activation", "relu"))
    scheme = "xavier" if activation in ("tanh", "sigmoid") else "he"
    why = "variance 1/n_in keeps tanh's signal" if scheme == "xavier" else "variance 2/n_in keeps ReLU's signal"
    return _change("model.init", e.setting("model.init"), scheme, why)


def _at_step(e: RunEvidence, kind: str, stat: str, step: int | None = None) -> dict[str, float]:
    """{layer: value} of a statistic at `step` (default: the first snapshot), in depth order."""
    d = e.diagnostics
    if d.empty:
        return {}
    rows = d[(d["kind"] == kind) & (d["stat"] == stat)]
    if rows.empty:
        return {}
    at = int(rows["step"].min()) if step is None else step
    rows = rows[rows["step"] == at]
    values = dict(zip(rows["layer"], rows["value"].astype(float), strict=True))
    return {layer: values[layer] for layer in depth_order(list(values))}


def _flag_evidence(flag: Flag, kind: str | None = None) -> Evidence:
    numbers = {k: float(v) for k, v in list(flag.values.items())[:8] if isinstance(v, (int, float))}
    where = f" in {flag.layer}" if flag.layer else ""
    when = "" if flag.step is None else f" from step {flag.step}" + (
        f" to {flag.last_step}" if flag.last_step not in (None, flag.step) else "")
    return Evidence(f"health flag {flag.name} ({flag.severity}){where}{when}: {flag.quantity}", flag.step,
                    flag.layer, kind, numbers)


# ----------------------------------------------------------------------------------------------
# Detectors: one run's evidence in, a Finding (or None) out

Detector = Callable[[RunEvidence, Thresholds], "Finding | None"]


def _diverged(e: RunEvidence, t: Thresholds) -> Finding | None:
    flag = e.flag("diverged") or e.flag("nonfinite")
    if flag is None:
        return None
    return Finding("diverged", "error", 1.0, f"The training became non-finite: {flag.explanation}",
                   (_flag_evidence(flag, "grad"),), (_lr_action(e, 0.1, "a tenth: the steps overshoot"),))


def _wrong_gradient(e: RunEvidence, t: Thresholds) -> Finding | None:
    report = e.gradcheck
    if not report:
        return None
    tensors = [(row.get("name"), finite_or_none(row.get("relative_difference")), row.get("step"))
               for check in report.get("checks") or [report] for row in check.get("per_tensor") or []
               if isinstance(row, Mapping)]
    worst = max(tensors, key=lambda x: math.inf if x[1] is None else x[1], default=None)
    if worst is None:
        return None
    verdict = gradcheck_verdict(math.inf if worst[1] is None else worst[1])
    if verdict == "great":
        return None
    shown = "not finite" if worst[1] is None else f"{worst[1]:.1e}"
    return Finding("wrong_gradient", "error" if verdict == "worry" else "warning", 1.0 if verdict == "worry" else 0.5,
                   f"The gradient check reads {verdict!r} at tensor {worst[0]}: its relative difference is {shown}.",
                   (Evidence(f"gradient check: tensor {worst[0]} relative difference {shown}", None, None, None,
                             {} if worst[1] is None else {"relative_difference": worst[1]}),),
                   (Action(None, None, None, f"check the backward pass of {worst[0]}'s layer (a custom autograd "
                                             "function, or an in-place operation)"),))


def _symmetry(e: RunEvidence, t: Thresholds) -> Finding | None:
    flag = e.flag("identical_units")
    if flag is None:
        return None
    return Finding("symmetry", "error" if flag.severity == "error" else "warning", 1.0,
                   f"The hidden units of {', '.join(flag.layers[:3])} are identical (symmetry "
                   f"{max(flag.values.values()):.3g}): they compute the same thing and get the same gradient, so "
                   "gradient descent never tells them apart. A network of identical units is a network of one.",
                   (_flag_evidence(flag, "weight"),), (_init_action(e),))


def _init_scale(e: RunEvidence, t: Thresholds) -> Finding | None:
    """The activations' spread over depth at the first snapshot (the initialization check), as SageMaker's
    PoorWeightInitialization: a variance ratio over the layers past `depth_variance_ratio`, or saturation."""
    small = _small_preactivations(e, t)
    if small is not None:
        return small
    probabilities = _probability_layer(e)
    stds = {layer: v for layer, v in _at_step(e, "act", "std").items() if math.isfinite(v) and layer != probabilities}
    if len(stds) < 2 or not any(v > 0 for v in stds.values()):
        return None  # no signal at all: identical (zero) units, which `_symmetry` names
    stds = _without_dropout_scaling(e, stds)
    layers = list(stds)
    first, last = stds[layers[0]], stds[layers[-1]]
    step = int(e.diagnostics[e.diagnostics["stat"] == "std"]["step"].min())
    saturated = {k: v for k, v in _at_step(e, "act", "frac_saturated").items() if v > t.saturated_units}
    ratio = variance_ratio(stds)
    grows = last > first
    if ratio <= t.depth_variance_ratio and not saturated:
        return None
    if saturated and not (ratio > t.depth_variance_ratio and not grows):
        cause, text = "init_too_large", (f"At initialization (step {step}) {len(saturated)} layer(s) are saturated "
                                         f"(up to {100 * max(saturated.values()):.0f}% of the units at |a| > 0.99): "
                                         "the weights are too large for tanh / sigmoid.")
    elif grows:
        cause, text = "init_too_large", (f"At initialization (step {step}) the activation std grows from {first:.3g} "
                                         f"in {layers[0]} to {last:.3g} in {layers[-1]}, a variance ratio of "
                                         f"{ratio:.3g}: the weights are too large for the depth.")
    else:
        cause, text = "init_too_small", (f"At initialization (step {step}) the activation std falls from {first:.3g} "
                                         f"in {layers[0]} to {last:.3g} in {layers[-1]}, a variance ratio of "
                                         f"{ratio:.3g}: the signal dies out layer by layer, and so do the gradients.")
    found = Finding(cause, "error", _log_strength(ratio, t.depth_variance_ratio) if ratio < math.inf else 1.0, text,
                    (Evidence(f"activation std by layer at step {step}", step, layers[-1] if not grows else layers[0],
                              "act", {k: float(v) for k, v in stds.items()}),), (_init_action(e),))
    last_step = int(e.diagnostics[e.diagnostics["stat"] == "std"]["step"].max())
    later = _without_dropout_scaling(e, {k: v for k, v in _at_step(e, "act", "std", last_step).items()
                                         if k in stds and math.isfinite(v)})
    later_saturated = any(v > t.saturated_units for v in _at_step(e, "act", "frac_saturated", last_step).values())
    if last_step <= step or len(later) != len(stds) or later_saturated:
        return found
    later_ratio = variance_ratio(later)
    return _unless_outgrown(e, found, later_ratio <= t.depth_variance_ratio, last_step, "act", later,
                            f"the variance ratio is {later_ratio:.3g}")


def _unless_outgrown(e: RunEvidence, found: Finding, outgrown: bool, step: int, kind: str, later: dict[str, float],
                     how: str) -> Finding:
    """An init finding (an error) as a warning when training got out of it by `step` (`outgrown`: the layers'
    `kind` std there, `later`, is healthy; `how` says so) and no health flag still fails at the end: it cost
    epochs, it no longer stops learning."""
    if not outgrown or _still_failing(e):
        return found
    name = "activation" if kind == "act" else "pre-activation"
    return dataclasses.replace(
        found, severity="warning",
        summary=f"{found.summary} Training got out of it: by step {step} {how}; a better init saves those epochs.",
        evidence=(*found.evidence, Evidence(f"{name} std by layer at step {step}", step, None, kind,
                                            {k: float(v) for k, v in later.items()})))


# Health flags that, still holding at the end of training (error severity), say an init problem was not outgrown.
STILL_FAILING = ("vanishing_gradients", "exploding_gradients", "saturated_units", "dead_units", "loss_not_falling")


def _still_failing(e: RunEvidence) -> bool:
    """Whether the signal or the loss is still failing at the end of training: an init problem then still stops
    learning, whatever the layers' scale has become (a sigmoid net at std 0.01 whose units end up saturated)."""
    return any(f.name in STILL_FAILING and f.severity == "error" for f in e.flags)


def _small_preactivations(e: RunEvidence, t: Thresholds) -> Finding | None:
    """Every hidden layer's pre-activation z = Wa + b far below unit scale at initialization: the units sit in the
    linear middle of their activation (a deep sigmoid network multiplies its gradient by <= 0.25 per layer), and
    the signal's variation from example to example is lost. Needs the pre-activation kind (default preset)."""
    preacts = {k: v for k, v in _at_step(e, "preact", "std").items() if math.isfinite(v)}
    if len(preacts) < 2 or not all(0 < v < t.init_preact_low for v in preacts.values()):
        return None
    steps = e.diagnostics[e.diagnostics["kind"] == "preact"]["step"]
    step, last_step = int(steps.min()), int(steps.max())
    largest = max(preacts.values())
    found = Finding("init_too_small", "error", _log_strength(t.init_preact_low / largest, 1.0),
                    f"At initialization (step {step}) every hidden layer's pre-activation std is below "
                    f"{t.init_preact_low:g} (at most {largest:.3g}): the weights are too small for the layers' "
                    "fan-in, so the units see almost no signal, and the gradients shrink layer by layer.",
                    (Evidence(f"pre-activation std by layer at step {step}", step, next(iter(preacts)), "preact",
                              {k: float(v) for k, v in preacts.items()}),), (_init_action(e),))
    later = {k: v for k, v in _at_step(e, "preact", "std", last_step).items() if math.isfinite(v)}
    if last_step <= step or not later:
        return found
    return _unless_outgrown(e, found, max(later.values()) >= t.init_preact_low, last_step, "preact", later,
                            f"a layer's pre-activation std is {max(later.values()):.3g}")


def _without_dropout_scaling(e: RunEvidence, stds: dict[str, float]) -> dict[str, float]:
    """The activation std of each hidden layer as it would be without inverted dropout before it: dropping with
    keep_prob p and dividing by p raises the next layer's input variance by 1/p, so the layers' spread at a
    training-mode snapshot grows with depth though the weights are fine. Layer i is scaled back by the product of
    sqrt(p) of the layers before it (and of the input's keep_prob)."""
    keep = e.setting("model.keep_prob", 1.0)
    keeps = list(keep) if isinstance(keep, list) else [keep] * len(stds)
    factor = math.sqrt(finite_or_none(e.setting("model.input_keep_prob", 1.0)) or 1.0)
    scaled = {}
    for i, (layer, std) in enumerate(stds.items()):
        scaled[layer] = std * factor
        p = finite_or_none(keeps[i]) if i < len(keeps) else 1.0
        factor *= math.sqrt(p if p and 0 < p <= 1 else 1.0)
    return scaled


def _probability_layer(e: RunEvidence) -> str | None:
    """The network's last activation layer when it outputs probabilities (each in [0, 1], averaging exactly 1/K:
    a softmax), else None."""
    k = finite_or_none(e.row.get("n_classes"))
    d = e.diagnostics
    if k is None or k < 2 or d.empty:
        return None
    acts = d[d["kind"] == "act"]
    if acts.empty:
        return None
    last = depth_order(sorted(set(acts["layer"])))[-1]
    rows = acts[acts["layer"] == last]
    low, high = rows[rows["stat"] == "min"]["value"], rows[rows["stat"] == "max"]["value"]
    mean = rows[rows["stat"] == "mean"]["value"]
    if low.empty or high.empty or mean.empty:
        return None
    ok = low.min() >= 0 and high.max() <= 1 and np.allclose(mean.to_numpy(dtype=float), 1 / k, atol=1e-5)
    return last if ok else None


def _no_gradient(e: RunEvidence, t: Thresholds) -> Finding | None:
    d = e.diagnostics
    if d.empty:
        return None
    weights = d[(d["kind"] == "weight") & (d["stat"] == "norm")]
    grads = d[(d["kind"] == "grad") & (d["stat"] == "norm")]
    if weights.empty or grads.empty:
        return None  # the run records no gradients at all (a preset without them)
    by_layer = grads.groupby("layer")["value"].max()
    silent = [layer for layer in depth_order(sorted(set(weights["layer"])))
              if layer not in by_layer.index or not by_layer[layer] > 0]
    if not silent:
        return None
    return Finding("no_gradient", "error", 1.0,
                   f"{', '.join(silent[:3])} never received a gradient (its norm is 0 or missing at every snapshot): "
                   "the layer does not learn. It is frozen (requires_grad False) or not connected to the loss.",
                   (Evidence(f"gradient norm 0 or missing in {', '.join(silent[:3])} at every snapshot", None,
                             silent[0], "grad", {layer: 0.0 for layer in silent[:8]}),),
                   (Action(None, None, None, f"unfreeze {silent[0]} (requires_grad=True) or connect it to the loss"),))


def _loss_trend(e: RunEvidence) -> np.ndarray:
    """The finite per-epoch training cost J (the loss alone when the cost is not recorded)."""
    loss = e.curve("train/cost")
    if not len(loss) or not np.isfinite(loss).any():
        loss = e.curve("train/loss")
    return loss[np.isfinite(loss)]


def _weight_norms(e: RunEvidence) -> pd.Series:
    """The total weight norm sqrt(sum over layers of ||W||^2) per snapshot step."""
    d = e.diagnostics
    if d.empty:
        return pd.Series(dtype=float)
    w = d[(d["kind"] == "weight") & (d["stat"] == "norm")]
    return w.groupby("step")["value"].apply(lambda v: float(np.sqrt(np.sum(np.square(v))))).sort_index()


def _update_ratios(e: RunEvidence) -> pd.Series:
    """The median update-to-weight ratio over the layers per snapshot step (layers whose weights are all 0, where
    the ratio is infinite, left out)."""
    d = e.diagnostics
    if d.empty:
        return pd.Series(dtype=float)
    u = d[(d["kind"] == "update") & (d["stat"] == "update_ratio")]
    u = u[u["value"].astype(float) < 1e300]  # a layer whose weights are all 0 has an infinite ratio
    return u.groupby("step")["value"].median().sort_index()


def _first_epoch_steps(e: RunEvidence) -> int:
    """The number of steps of the first epoch (the step of the first epoch's point), 1 when unknown."""
    steps = e.curve_steps("train/loss")
    return int(steps[0]) if len(steps) else 1


def _high_bias(e: RunEvidence, t: Thresholds) -> bool:
    diagnosis = _diagnosis(e, t)
    return diagnosis is not None and diagnosis.avoidable_bias > t.high_bias


def _lr_too_high(e: RunEvidence, t: Thresholds) -> Finding | None:
    """Steps that overshoot: the first steps change the weights by far more than ~1e-3 of their size, the weights
    grow several times over, or the loss rises and oscillates (or ends worse than predicting uniformly), while the
    network does not fit its training set."""
    if not _high_bias(e, t):
        return None
    evidence: list[Evidence] = []
    strength = 0.0
    ratios = _update_ratios(e)
    # The first step's ratio, at step 0 itself (a zero-initialized layer has no ratio there, and one step later its
    # weights are that step: a ratio of ~1 that says nothing about the learning rate).
    if len(ratios) and ratios.index[0] == 0 and ratios.iloc[0] > t.update_ratio_early:
        first = float(ratios.iloc[0])
        evidence.append(Evidence(f"the first step changed the weights by {first:.2g} of their size (median over the "
                                 "layers; ~1e-3 is healthy)", int(ratios.index[0]), None, "update",
                                 {"update_ratio": first}))
        strength = max(strength, _log_strength(first, t.update_ratio_early))
    norms = _weight_norms(e)
    if len(norms) >= 2 and norms.iloc[0] > 0 and norms.iloc[-1] / norms.iloc[0] > t.weight_growth:
        growth = float(norms.iloc[-1] / norms.iloc[0])
        evidence.append(Evidence(f"the weights' norm grew {growth:.3g}-fold, {norms.iloc[0]:.3g} -> "
                                 f"{norms.iloc[-1]:.3g} by step {int(norms.index[-1])}", int(norms.index[-1]), None,
                                 "weight",
                                 {"first": float(norms.iloc[0]), "last": float(norms.iloc[-1])}))
        strength = max(strength, _clip(math.log10(growth)))
    loss = _loss_trend(e)
    k = finite_or_none(e.row.get("n_classes"))
    if len(loss) >= 3:
        best = float(np.min(loss))
        rise = (loss[-1] - best) / best if best > 0 else 0.0
        rises = float(np.mean(np.diff(loss) > 0))
        stuck = loss[-1] > 0.5 * loss[0]  # a loss that fell far, then rose a little, is noise, not overshooting
        if stuck and rise > t.loss_rise:
            evidence.append(Evidence(f"the training loss ended at {loss[-1]:.4g}, {100 * rise:.0f}% above its best "
                                     f"epoch's {best:.4g}", None, None, None, {"last": float(loss[-1]), "best": best}))
            strength = max(strength, _clip(rise))
        if stuck and len(loss) >= 4 and rises >= t.loss_oscillation:
            evidence.append(Evidence(f"the training loss rose in {100 * rises:.0f}% of the epochs (it oscillates)",
                                     None, None, None, {"fraction_of_epochs_rising": rises}))
            strength = max(strength, _clip(rises))
        if k is not None and k >= 2 and loss[-1] > 1.02 * math.log(k) and len(evidence):
            evidence.append(Evidence(f"the training loss ended at {loss[-1]:.4g}, worse than the {math.log(k):.4g} of "
                                     "predicting every class equally", None, None, None, {"last": float(loss[-1])}))
    if not evidence:
        return None
    dead = e.flag("dead_units")
    if dead is not None:
        evidence.append(_flag_evidence(dead, "act"))
    momentum = finite_or_none(e.setting("optim.momentum"))
    actions = [_lr_action(e, 0.1, "a tenth; tune it on a log scale")]
    if e.setting("optim.name") == "sgd" and momentum is not None and momentum > 0.95:
        actions.append(_change("optim.momentum", momentum, 0.9, "momentum averages ~1/(1 - beta) steps"))
    return Finding("learning_rate_too_high", "error", max(strength, 0.3),
                   "The steps overshoot: the learning rate (or momentum) is too high for this network.",
                   tuple(evidence), tuple(actions))


def _lr_too_low(e: RunEvidence, t: Thresholds) -> Finding | None:
    """Steps too small to matter: after the first epoch the median update-to-weight ratio stays a decade or more
    below ~1e-3, while the network does not fit its training set."""
    if not _high_bias(e, t):
        return None
    ratios = _update_ratios(e)
    later = ratios[ratios.index >= _first_epoch_steps(e)]
    if not len(later):
        return None
    median = float(later.median())
    if not 0 < median < t.lr_low_ratio:
        return None
    return Finding("learning_rate_too_low", "error", _log_strength(median, t.lr_low_ratio),
                   f"The weights barely move: after the first epoch each step changes them by {median:.2g} of their "
                   "size (median), against ~1e-3 for a healthy learning rate.",
                   (Evidence(f"median update-to-weight ratio {median:.2g} from step {int(later.index[0])}",
                             int(later.index[0]), None, "update", {"median_update_ratio": median}),),
                   (_lr_action(e, 100.0 if median < 1e-6 else 10.0, "tune it on a log scale"),))


def _lr_decayed(e: RunEvidence, t: Thresholds) -> Finding | None:
    lr = e.curve("lr")
    lr = lr[np.isfinite(lr)]
    if len(lr) < 4 or not lr[0] > 0:
        return None
    half = lr[: max(2, len(lr) // 2)]
    if half[-1] >= t.lr_decayed * lr[0]:
        return None
    diagnosis = _diagnosis(e, t)
    if diagnosis is not None and diagnosis.avoidable_bias <= t.high_bias:
        return None  # it decayed, but the network fit its training set anyway
    epoch = int(np.argmax(lr < t.lr_decayed * lr[0]))
    schedule = e.setting("optim.schedule")
    return Finding("lr_decayed_too_fast", "error", 1.0,
                   f"The learning rate fell from {lr[0]:.3g} to {lr[epoch]:.3g} by epoch {epoch + 1} of {len(lr)}: "
                   "after that the weights no longer move, and the training error stays where it was.",
                   (Evidence(f"lr per epoch: {lr[0]:.3g} at the start, {lr[epoch]:.3g} at epoch {epoch + 1}", None,
                             None, None, {"first": float(lr[0]), "at_epoch": float(lr[epoch])}),),
                   (_change("optim.schedule", schedule, "none", "or a gentler gamma / decay_rate"),))


def _inputs_not_normalized(e: RunEvidence, t: Thresholds) -> Finding | None:
    scale = finite_or_none(e.row.get("input_std"))
    first_preact = next(iter(_at_step(e, "preact", "std").items()), None)
    evidence = []
    if scale is not None and not 1 / t.input_scale <= scale <= t.input_scale:
        evidence.append(Evidence(f"the training inputs' std is {scale:.3g} (normalized inputs have 1)", None, None,
                                 None, {"input_std": scale}))
    if first_preact is not None and first_preact[1] > t.input_scale * 1.0 and scale is not None \
            and scale > t.input_scale:
        evidence.append(Evidence(f"the first layer's pre-activation std is {first_preact[1]:.3g} at the first snapshot",
                                 int(e.diagnostics["step"].min()), first_preact[0], "preact",
                                 {first_preact[0]: float(first_preact[1])}))
    if not evidence:
        return None
    normalize = e.setting("data.normalize")
    return Finding("inputs_not_normalized", "error", _log_strength(scale or 1.0, t.input_scale) if scale else 0.5,
                   "The inputs are far from unit scale: the first layer's pre-activations are as large, which "
                   "saturates its units and makes one learning rate wrong for every feature.", tuple(evidence),
                   (_change("data.normalize", normalize, True, "standardize with the training split's mean and std"),))


def _signal(name: str, cause: str, kind: str, action: Callable[[RunEvidence], Action]) -> Detector:
    """A health flag read as a symptom: an error while it held at the end of training, a warning when training got
    out of it, information only when it held within the first epoch alone (the first steps after a zero or small
    initialization compare gradients with weights that are barely there)."""
    def detect(e: RunEvidence, t: Thresholds) -> Finding | None:
        flag = e.flag(name)
        if flag is None:
            return None
        severity = flag.severity
        if severity == "warning" and flag.last_step is not None and flag.last_step < _first_epoch_steps(e):
            severity = "info"
        return Finding(cause, severity, 0.5 if severity != "error" else 0.8, flag.explanation,
                       (_flag_evidence(flag, kind),), (action(e),))
    return detect


def _leaky(e: RunEvidence) -> Action:
    return _change("model.activation", e.setting("model.activation"), "leaky_relu", "or lower optim.lr")


def _loss_on_probabilities(e: RunEvidence, t: Thresholds) -> Finding | None:
    """The network's last activation is a softmax (`_probability_layer`): it hands probabilities to the
    cross-entropy, which applies its own softmax. The loss is then squashed into [log(1 + (K - 1)/e), log K] and
    its gradient with it."""
    last = _probability_layer(e)
    if last is None:
        return None
    k = int(e.row["n_classes"])
    rows = e.diagnostics[(e.diagnostics["kind"] == "act") & (e.diagnostics["layer"] == last)]
    first = int(rows["step"].min())
    at = {stat: float(rows[(rows["stat"] == stat) & (rows["step"] == first)]["value"].iloc[0])
          for stat in ("min", "max", "mean")}
    floor = math.log(1 + (k - 1) / math.e)
    loss = _loss_trend(e)
    best = float(np.min(loss)) if len(loss) else math.nan
    return Finding("loss_on_probabilities", "error", 1.0,
                   f"The network's last layer ({last}) outputs probabilities (each in [0, 1], averaging 1/{k}), and "
                   f"the cross-entropy applies a softmax of its own: the loss cannot fall below {floor:.3g} (its "
                   f"lowest here: {best:.3g}) and its gradient is squashed.",
                   (Evidence(f"the outputs of {last} at step {first}: min {at['min']:.3g}, max {at['max']:.3g}, mean "
                             f"{at['mean']:.4g} = 1/{k}", first, last, "act",
                             {**at, "best_loss": best, "floor": floor}),),
                   (Action(None, None, None, "pass the logits to the cross-entropy (remove the softmax before it)"),))


def _chance(e: RunEvidence, t: Thresholds) -> Finding | None:
    chance = chance_error(e)
    train, dev = finite_or_none(e.row.get("train_error")), finite_or_none(e.row.get("dev_error"))
    if chance is None or train is None or dev is None or dev < chance - t.at_chance:
        return None
    numbers = {"train_error": train, "dev_error": dev, "chance": chance}
    majority = finite_or_none(e.row.get("majority_fraction"))
    if train <= chance - t.memorized:
        return Finding("labels_unrelated", "error", _clip((chance - train) / max(chance, 1e-9)),
                       f"The dev error stays at chance ({pct(dev)}, chance {pct(chance)}) while the training error "
                       f"falls to {pct(train)}: the network memorizes labels it cannot predict from the inputs. The "
                       "labels do not belong to their inputs (shuffled apart?), or the dev set is not like the "
                       "training set.",
                       (Evidence(f"train error {pct(train)}, dev error {pct(dev)}, chance {pct(chance)}", None, None,
                                 None, numbers),),
                       (Action(None, None, None, "check that each label is paired with its own input"),))
    if train < chance - t.at_chance:
        return None
    if majority is not None and majority >= 1 - t.minority:
        return Finding("class_imbalance", "error", _clip(majority),
                       f"{pct(majority)} of the training examples are one class, and the network's errors "
                       f"({pct(train)} train, {pct(dev)} dev) are those of always predicting it ({pct(chance)}).",
                       (Evidence(f"majority class {pct(majority)} of the training set; dev error {pct(dev)}", None,
                                 None, None, numbers),),
                       (Action(None, None, None, "weight the classes in the loss, or resample the minority class; "
                                                 "judge the model by F1 or AUC, not the error"),))
    return Finding("learned_nothing", "error", 1.0,
                   f"The network learned nothing: train {pct(train)} and dev {pct(dev)} error, chance is "
                   f"{pct(chance)}.",
                   (Evidence(f"train error {pct(train)}, dev error {pct(dev)}, chance {pct(chance)}", None, None, None,
                             numbers),),
                   (_lr_action(e, 0.1, "if the loss rose; x10 if it barely moved"),))


def _siblings_with_less(e: RunEvidence, setting: str, weaker: Callable[[float, float], bool],
                        t: Thresholds) -> list[Tried]:
    """Runs beside this one on the same data that used less of the regularizer `setting` and fit their training set
    better (a lower training error by `sibling_better`)."""
    own = finite_or_none(e.setting(setting))
    train = finite_or_none(e.row.get("train_error"))
    if own is None or train is None or e.siblings.empty or setting not in e.siblings:
        return []
    found = []
    for row in e.siblings.to_dict("records"):
        value = finite_or_none(row.get(setting))
        other_train, other_dev = finite_or_none(row.get("train_error")), finite_or_none(row.get("dev_error"))
        if row.get("run_id") == e.row.get("run_id") or value is None or other_train is None or other_dev is None:
            continue
        if row.get("data.name") != e.row.get("data.name"):
            continue
        if weaker(value, own) and other_train < train - t.sibling_better:
            found.append(Tried(str(row["run_id"]), setting, value, other_train, other_dev,
                               f"{setting} = {setting_text(value)} (run {row['run_id']}): train error "
                               f"{pct(other_train)}, dev error {pct(other_dev)}"))
    return sorted(found, key=lambda x: x.train_error)[:3]


def _over_regularized(e: RunEvidence, t: Thresholds) -> Finding | None:
    diagnosis = _diagnosis(e, t)
    if diagnosis is None or diagnosis.avoidable_bias <= t.high_bias:
        return None
    evidence: list[Evidence] = []
    actions: list[Action] = []
    tried: list[Tried] = []
    cost, loss = e.curve("train/cost"), e.curve("train/loss")
    norms = _weight_norms(e)
    shrink = float(norms.iloc[-1] / norms.iloc[0]) if len(norms) >= 2 and norms.iloc[0] > 0 else None
    for setting in ("reg.l2", "reg.l1", "optim.weight_decay"):
        lam = finite_or_none(e.setting(setting))
        if not lam:
            continue
        less = _siblings_with_less(e, setting, lambda other, own: other < own, t)
        share = None
        if setting != "optim.weight_decay" and len(cost) and len(loss) and cost[-1] > 0:
            share = float((cost[-1] - loss[-1]) / cost[-1])
        shrunk = shrink is not None and shrink < t.weight_shrink
        if (share is not None and share > t.penalty_share) or shrunk or less:
            if share is not None and share > t.penalty_share:
                evidence.append(Evidence(f"the L2/L1 terms are {100 * share:.0f}% of the cost J at the last epoch "
                                         f"({setting} = {setting_text(lam)})", None, None, None,
                                         {"penalty_share": share}))
            if shrunk:
                evidence.append(Evidence(f"{setting} = {setting_text(lam)} shrank the weights' norm to "
                                         f"{100 * shrink:.0f}% of its initial {norms.iloc[0]:.3g} by step "
                                         f"{int(norms.index[-1])}", int(norms.index[-1]), None, "weight",
                                         {"first": float(norms.iloc[0]), "last": float(norms.iloc[-1])}))
            if not (shrunk or (share is not None and share > t.penalty_share)):
                evidence.append(Evidence(f"{setting} = {setting_text(lam)}, and {len(less)} run(s) beside it with "
                                         "less fit their training set better", None, None, None, {setting: lam}))
            actions.append(_change(setting, lam, _scaled(lam, 0.1), "a tenth"))
            tried += less
    for setting in ("model.keep_prob", "model.input_keep_prob", "model.dropconnect_keep_prob"):
        value = e.setting(setting)
        keep = min(value) if isinstance(value, list) and value else finite_or_none(value)
        if keep is None or keep >= 1:
            continue
        less = _siblings_with_less(e, setting, lambda other, own: other > own, t)
        if keep <= t.strong_dropout or less:
            evidence.append(Evidence(f"{setting} = {setting_text(value)}: dropout removes {100 * (1 - keep):.0f}% of "
                                     "the units at each step", None, None, None, {setting: keep}))
            actions.append(_change(setting, value, round(min(1.0, keep + (1 - keep) / 2), 3), "drop fewer units"))
            tried += less
    if not actions:
        return None
    return Finding("over_regularized", "error", _clip(diagnosis.avoidable_bias / max(t.high_bias, 1e-9) / 4),
                   f"High bias (avoidable bias {points(diagnosis.avoidable_bias)}) while the network is strongly "
                   "regularized: the regularizer holds the training error up. Regularize less before making the "
                   "network bigger." + (" A run that regularized less fit its training set better." if tried else ""),
                   tuple(evidence), tuple(actions), tuple(tried))


def _epochs(e: RunEvidence) -> int:
    return len(e.curve("dev/error"))


def _overtrained(e: RunEvidence, t: Thresholds) -> Finding | None:
    """Epochs spent after the dev error's best, without early stopping: the dev error came within
    `overtrained_gap` / 2 of its minimum before `overtrained_at` of the epochs, and ended worse or no better."""
    dev = e.curve("dev/error")
    dev = dev[np.isfinite(dev)]
    if len(dev) < 5 or e.setting("train.early_stopping") is True:
        return None
    minimum = float(np.min(dev))
    if dev[0] - minimum <= t.overtrained_gap:
        return None  # a flat dev error: nothing was learned to overfit after
    reached = int(np.argmax(dev <= minimum + t.overtrained_gap / 2))  # the first epoch near the minimum
    if reached + 1 > t.overtrained_at * len(dev):
        return None
    return Finding("overtrained", "warning", _clip(1 - (reached + 1) / len(dev)),
                   f"The dev error was within {points(t.overtrained_gap / 2)} of its best ({pct(minimum)}) by epoch "
                   f"{reached + 1} of {len(dev)} and ended at {pct(dev[-1])}: the epochs after that only fit the "
                   "training set more closely. fitlens kept the best epoch's weights; early stopping would also "
                   "have saved the rest of the training.",
                   (Evidence(f"dev error {pct(dev[reached])} at epoch {reached + 1}, best {pct(minimum)}, "
                             f"{pct(dev[-1])} at epoch {len(dev)}", None, None, None,
                             {"best": minimum, "last": float(dev[-1]), "reached_epoch": reached + 1}),),
                   (_change("train.early_stopping", e.setting("train.early_stopping"), True,
                            f"with patience about {max(2, (len(dev) - reached) // 4)} epochs"),))


def _undertrained(e: RunEvidence, t: Thresholds) -> Finding | None:
    """Training stopped by max_epochs while the dev error was still falling: it fell by more than
    `still_improving` over the last half of the epochs and its last epoch is (nearly) its best."""
    dev = e.curve("dev/error")
    dev = dev[np.isfinite(dev)]
    epochs = finite_or_none(e.setting("train.max_epochs"))
    if len(dev) < 4 or epochs is None or len(dev) < epochs:
        return None  # early stopping ended it, or it failed
    half = len(dev) // 2
    drop = float(dev[-half - 1] - dev[-1])
    if drop <= t.still_improving or dev[-1] > np.min(dev) + t.still_improving / 2:
        return None
    return Finding("undertrained", "warning", _clip(drop / 0.05),
                   f"The dev error was still falling when training stopped at max_epochs = {int(epochs)}: "
                   f"{pct(dev[-half - 1])} -> {pct(dev[-1])} over the last {half} epochs.",
                   (Evidence(f"dev error {pct(dev[-half - 1])} -> {pct(dev[-1])} over the last {half} epochs",
                             None, None, None, {"drop": drop}),),
                   (_change("train.max_epochs", int(epochs), int(epochs) * 2, "with early stopping on"),))


def _plateau(e: RunEvidence, t: Thresholds) -> Finding | None:
    diagnosis = _diagnosis(e, t)
    loss = _loss_trend(e)
    if diagnosis is None or diagnosis.avoidable_bias <= t.high_bias or len(loss) < 8 or not loss[len(loss) // 2] > 0:
        return None
    half = loss[len(loss) // 2:]
    fall = float((half[0] - np.min(half)) / half[0])
    if fall >= t.plateau:
        return None
    return Finding("plateau", "warning", _clip(1 - fall / t.plateau),
                   f"The training loss fell by only {100 * fall:.2f}% over the last {len(half)} epochs while the "
                   f"avoidable bias is {points(diagnosis.avoidable_bias)}: the optimizer is stuck on a plateau.",
                   (Evidence(f"training loss {half[0]:.4g} -> {np.min(half):.4g} over the last {len(half)} epochs",
                             None, None, None, {"fall": fall}),),
                   (_change("optim.name", e.setting("optim.name"), "adam", "momentum carries it over a plateau")
                    if e.setting("optim.name") != "adam" else _lr_action(e, 3.0, "a larger step"),))


def _batch_extremes(e: RunEvidence, t: Thresholds) -> Finding | None:
    batch, m = finite_or_none(e.setting("data.batch_size")), finite_or_none(e.row.get("m_train"))
    if batch is None or m is None:
        return None
    if batch <= 2:
        return Finding("batch_too_small", "warning", 1.0 if batch == 1 else 0.6,
                       f"Mini-batches of {int(batch)}: every step follows one example's gradient (stochastic gradient "
                       f"descent), {int(m / batch)} noisy steps an epoch with no vectorization to pay for them.",
                       (Evidence(f"data.batch_size = {int(batch)}, {int(m / batch)} steps per epoch", None, None, None,
                                 {"batch_size": batch, "steps_per_epoch": m / batch}),),
                       (_change("data.batch_size", int(batch), 64, "a power of 2 between 32 and 512"),))
    if batch >= m:
        return Finding("batch_too_large", "warning", 1.0,
                       f"One batch of all {int(m)} training examples: batch gradient descent takes one step per epoch.",
                       (Evidence(f"data.batch_size = {int(batch)} >= m = {int(m)}: 1 step per epoch", None, None, None,
                                 {"batch_size": batch, "m_train": m}),),
                       (_change("data.batch_size", int(batch), 64, "mini-batches: many steps per epoch"),))
    return None


def _label_noise(e: RunEvidence, t: Thresholds) -> Finding | None:
    reference = finite_or_none(e.row.get("reference_error"))
    train = finite_or_none(e.row.get("train_error"))
    if reference is None or train is None or reference < t.label_noise or e.setting("data.name") != "teacher_student":
        return None
    if train < reference - t.high_bias:
        return Finding("label_noise", "warning", _clip((reference - train) / reference),
                       f"The training error ({pct(train)}) is below the labels' noise rate ({pct(reference)}, the "
                       "Bayes error): the network memorizes wrong labels, which no model can predict.",
                       (Evidence(f"train error {pct(train)} < label noise {pct(reference)}", None, None, None,
                                 {"train_error": train, "label_noise": reference}),),
                       (_change("reg.l2", e.setting("reg.l2"),
                                max(1.0, 10 * (finite_or_none(e.setting("reg.l2")) or 0)),
                                "or early stopping: do not fit the noise"),))
    if abs(train - reference) <= t.at_chance:
        return Finding("label_noise", "info", 0.5,
                       f"The training error ({pct(train)}) is at the labels' noise rate ({pct(reference)}): the rest "
                       "of it is the noise, which no model can remove.",
                       (Evidence(f"train error {pct(train)} ~ label noise {pct(reference)}", None, None, None,
                                 {"train_error": train, "label_noise": reference}),))
    return None


def _minority(e: RunEvidence, t: Thresholds) -> Finding | None:
    majority = finite_or_none(e.row.get("majority_fraction"))
    k = finite_or_none(e.row.get("n_classes"))
    if majority is None or k is None or 1 - majority > t.minority or k < 2:
        return None
    return Finding("minority_class", "info", 0.5,
                   f"{pct(majority)} of the training set is one class: an error of {pct(1 - majority)} is what always "
                   "predicting it gets, so the error rate says little about the minority class.",
                   (Evidence(f"majority class {pct(majority)} of the training set", None, None, None,
                             {"majority_fraction": majority}),),
                   (Action(None, None, None, "judge the model by F1, AUC or the minority class's recall"),))


DETECTORS: tuple[Detector, ...] = (
    _diverged, _wrong_gradient, _symmetry, _init_scale, _no_gradient, _lr_too_high, _lr_too_low, _lr_decayed,
    _inputs_not_normalized,
    _signal("vanishing_gradients", "vanishing_gradients", "grad", _init_action),
    _signal("exploding_gradients", "exploding_gradients", "grad", lambda e: _lr_action(e, 0.1, "and clip gradients")),
    _signal("saturated_units", "saturated_units", "act", _init_action),
    _signal("dead_units", "dead_units", "act", _leaky),
    _loss_on_probabilities, _chance, _over_regularized, _plateau, _undertrained, _batch_extremes, _overtrained,
    _label_noise, _minority,
)
# Symptoms a root cause explains: when the cause is found, its symptom's own finding is folded into it.
EXPLAINED_BY = {
    "learning_rate_too_high": ("init_too_small", "symmetry", "over_regularized", "lr_decayed_too_fast",
                               "inputs_not_normalized", "loss_on_probabilities", "labels_unrelated"),
    "learning_rate_too_low": ("lr_decayed_too_fast", "symmetry", "init_too_small", "no_gradient",
                              "loss_on_probabilities"),
    "high_variance": ("label_noise",),
    "vanishing_gradients": ("symmetry", "init_too_small", "no_gradient", "lr_decayed_too_fast",
                            "learning_rate_too_low", "learning_rate_too_high", "diverged"),
    "init_too_large": ("symmetry",),
    "exploding_gradients": ("init_too_large", "learning_rate_too_high", "diverged", "inputs_not_normalized",
                            "over_regularized"),
    "saturated_units": ("init_too_large", "inputs_not_normalized"),
    "dead_units": ("learning_rate_too_high", "symmetry", "init_too_small", "diverged", "inputs_not_normalized",
                   "over_regularized", "batch_too_small", "labels_unrelated"),
    "init_too_small": ("symmetry",),
    "no_gradient": ("symmetry",),
    "learned_nothing": ("symmetry", "init_too_small", "init_too_large", "learning_rate_too_high",
                        "learning_rate_too_low", "diverged", "lr_decayed_too_fast", "loss_on_probabilities",
                        "inputs_not_normalized", "no_gradient", "over_regularized"),
    "plateau": ("lr_decayed_too_fast", "learning_rate_too_low", "learning_rate_too_high", "over_regularized",
                "symmetry", "init_too_small", "learned_nothing"),
    "high_bias": ("over_regularized",),
}


# ----------------------------------------------------------------------------------------------
# The diagnosis


def diagnose_run(evidence: RunEvidence, thresholds: Thresholds = DEFAULT) -> list[Finding]:
    """The findings of one run, most important first (`Finding.ranked`): errors before warnings, then the reading
    order's question (can it learn at all, what holds the training error up, the variance, what the error hides),
    root causes before symptoms. A symptom whose root cause is found (vanishing gradients under identical units,
    say) is left out. While an earlier question has an error (the network cannot learn, say), the findings of the
    later questions are information only. The bias/variance verdict is one finding among them (`verdict_findings`)."""
    found = [f for detect in DETECTORS if (f := detect(evidence, thresholds)) is not None]
    causes = {f.cause for f in found}
    verdict = verdict_findings(evidence, thresholds)
    found += [f for f in verdict if f.cause not in causes]
    causes = {f.cause for f in found}
    kept = [f for f in found if not any(cause in causes for cause in EXPLAINED_BY.get(f.cause, ()))]
    first_error = min((f.stage for f in kept if f.severity == "error"), default=None)
    if first_error is not None:
        # An earlier question holds (the network cannot learn, or a regularizer holds it back): what the later
        # questions say (train longer, regularize more, the verdict) is no advice yet. It stays, as information.
        kept = [f if f.stage <= first_error else dataclasses.replace(f, severity="info") for f in kept]
    return sorted(kept, key=Finding.ranked)


def verdict_findings(e: RunEvidence, t: Thresholds = DEFAULT) -> list[Finding]:
    """The bias/variance verdict as findings (high bias and high variance are two), with the course's thresholds and
    the basic recipe's first steps as actions."""
    diagnosis = _diagnosis(e, t)
    if diagnosis is None:
        return []
    numbers = {"train_error": diagnosis.train_error, "dev_error": diagnosis.dev_error,
               "reference_error": diagnosis.reference_error, "avoidable_bias": diagnosis.avoidable_bias,
               "variance": diagnosis.variance}
    text = (f"train {pct(diagnosis.train_error)}, dev {pct(diagnosis.dev_error)}, reference "
            f"{pct(diagnosis.reference_error)}: avoidable bias {points(diagnosis.avoidable_bias)}, variance "
            f"{points(diagnosis.variance)}")
    findings = []
    for cause in VERDICT_CAUSES[diagnosis.verdict]:
        steps = [s for s in diagnosis.recommendations if s.problem == cause]
        actions = tuple(Action(None, None, None, s.text) for s in steps[:2])
        if cause == "high_bias":
            gap = diagnosis.avoidable_bias / max(t.high_bias, 1e-9)
            summary = f"High bias: the network does not fit its training set ({text})."
        elif cause == "high_variance":
            gap = diagnosis.variance / max(t.high_variance, 1e-9)
            summary = f"High variance: the dev error is far above the training error ({text})."
        else:
            gap = 0.0
            summary = f"Low bias and low variance ({text})."
        findings.append(Finding(cause, "info" if cause == "good_fit" else "warning", _clip(gap / 4), summary,
                                (Evidence(text, None, None, None, numbers),), actions))
    return findings


def primary_cause(findings: Sequence[Finding]) -> str | None:
    """The first finding's cause: what to look at first."""
    return findings[0].cause if findings else None


def recipe_waits(findings: Sequence[Mapping[str, Any]]) -> str | None:
    """What the bias/variance recipe waits for (as `finding_fields` dicts): the first finding when it is an error
    other than the verdict's own (identical units, an init too small, a regularizer too strong), whose action comes
    before "train a bigger network"; None when the recipe is the next step."""
    first = findings[0] if findings else None
    if not first or first["severity"] != "error" or first["cause"] in ("high_bias", "high_variance"):
        return None
    return (f"First fix what the diagnosis names ({first['title']}): the recipe's steps come after it, and will not "
            "help until then.")


def finding_fields(finding: Finding) -> dict[str, Any]:
    """A finding as the report's JSON has it (the `findings` field, documented in docs/diagnosis.md)."""
    return {
        "cause": finding.cause, "title": CAUSES[finding.cause].title, "stage": finding.stage,
        "severity": finding.severity, "strength": round(finding.strength, 3), "summary": finding.summary,
        "evidence": [{"text": x.text, "step": x.step, "layer": x.layer, "kind": x.kind,
                      "values": {k: _json_number(v) for k, v in x.values.items()}} for x in finding.evidence],
        "actions": [{"setting": a.setting, "from": a.old, "to": a.new, "text": a.text} for a in finding.actions],
        "tried": [{"run_id": x.run_id, "setting": x.setting, "value": x.value, "train_error": x.train_error,
                   "dev_error": x.dev_error, "text": x.text} for x in finding.tried],
    }


def _json_number(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None

"""Sweep-aware advice: which runs beside this one already tried a step of the basic recipe, and what it did.

The runs are rows of a frame with `run_id`, `train_error`, `dev_error`, `reference_error` and one column per
flattened config key (`model.width`, `reg.l2`, ...), as `dashboard.data` reads them. A sibling "tried a
remedy" when a setting differs from the run's in the remedy's direction (a larger `reg.l2`, a lower
`model.keep_prob`, ...); the advice gives its avoidable bias and variance beside the run's, and names the
other settings it changed too, since in a random sweep a trial rarely differs in one setting only.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from analysis.bias_variance import Diagnosis, Problem, points
from analysis.values import NOT_SETTINGS, finite_or_none

# A run on other data is no comparison at all: every data setting must match but these.
DATA_PREFIX = "data."
DATA_REMEDIES = ("data.train_fraction", "data.augment", "data.batch_size", "data.seed")


def _mean(value: Any) -> float | None:
    """A width or keep_prob: a number, or the mean of a per-layer list."""
    if isinstance(value, (list, tuple)) and value:
        numbers = [finite_or_none(v) for v in value]
        return None if None in numbers else sum(numbers) / len(numbers)  # type: ignore[arg-type]
    return finite_or_none(value)


def _truthy(value: Any) -> bool:
    return bool(value) and value not in ("False", "false", "null", "[]")


# direction(old, new) -> True when `new` takes the remedy further than `old`.
Direction = Callable[[Any, Any], bool]


def _larger(old: Any, new: Any) -> bool:
    a, b = _mean(old), _mean(new)
    return a is not None and b is not None and b > a


def _smaller(old: Any, new: Any) -> bool:
    return _larger(new, old)


def _switched_on(old: Any, new: Any) -> bool:
    return not _truthy(old) and _truthy(new)


def _other_value(old: Any, new: Any) -> bool:
    return old != new


@dataclass(frozen=True)
class Remedy:
    """A setting whose change in `direction` is a step of the recipe."""

    action: str  # a `bias_variance.RECIPE` action
    problem: Problem
    setting: str
    direction: Direction


REMEDIES: tuple[Remedy, ...] = (
    Remedy("bigger_network", "high_bias", "model.width", _larger),
    Remedy("bigger_network", "high_bias", "model.depth", _larger),
    Remedy("bigger_network", "high_bias", "model.channels", _larger),
    Remedy("train_longer", "high_bias", "train.max_epochs", _larger),
    Remedy("better_optimizer", "high_bias", "optim.name", _other_value),
    Remedy("better_optimizer", "high_bias", "optim.momentum", _larger),
    Remedy("better_optimizer", "high_bias", "optim.lr", _other_value),
    Remedy("other_architecture", "high_bias", "model.arch", _other_value),
    Remedy("more_data", "high_variance", "data.train_fraction", _larger),
    Remedy("more_data", "high_variance", "data.augment", _switched_on),
    Remedy("regularization", "high_variance", "reg.l2", _larger),
    Remedy("regularization", "high_variance", "reg.l1", _larger),
    Remedy("regularization", "high_variance", "optim.weight_decay", _larger),
    Remedy("regularization", "high_variance", "model.keep_prob", _smaller),
    Remedy("regularization", "high_variance", "model.input_keep_prob", _smaller),
    Remedy("regularization", "high_variance", "model.dropconnect_keep_prob", _smaller),
    Remedy("regularization", "high_variance", "train.early_stopping", _switched_on),
)


@dataclass(frozen=True)
class Change:
    setting: str
    old: Any
    new: Any

    def __str__(self) -> str:
        return f"{self.setting} {self.old} -> {self.new}"


@dataclass(frozen=True)
class Advice:
    """A run beside the diagnosed one that tried a step of the recipe, and what it did."""

    action: str
    problem: Problem
    run_id: str
    tried: tuple[Change, ...]  # the changes in the remedy's direction
    also_changed: tuple[Change, ...]  # every other setting it differs in
    avoidable_bias: tuple[float, float]  # (this run, that run)
    variance: tuple[float, float]
    text: str

    @property
    def improvement(self) -> float:
        """How much it cut the quantity its problem is about (positive = better)."""
        before, after = self.avoidable_bias if self.problem == "high_bias" else self.variance
        return before - after


def advise(
    diagnosis: Diagnosis, run: Mapping[str, Any], others: pd.DataFrame, per_action: int = 1
) -> list[Advice]:
    """For each step of `diagnosis.recommendations`, the runs of `others` that tried it, best first
    (the fewest other changes first: a clean comparison changed nothing else; then by how much they helped),
    at most `per_action` per step, in the recipe's order. `run` is the diagnosed run's row (a mapping of the same
    columns); rows of `others` with its run_id, without finite errors, or on other data are skipped."""
    wanted = [step.action for step in diagnosis.recommendations]
    found: dict[str, list[Advice]] = {action: [] for action in wanted}
    settings = [c for c in others.columns if "." in c and not c.startswith(NOT_SETTINGS)]
    for row in others.to_dict("records"):
        if row["run_id"] == run["run_id"] or not _finite(row, "train_error", "dev_error"):
            continue
        changes = [Change(s, run.get(s), row.get(s)) for s in settings if not _same(run.get(s), row.get(s))]
        if any(c.setting.startswith(DATA_PREFIX) and c.setting not in DATA_REMEDIES for c in changes):
            continue  # trained on other data
        by_action: dict[str, list[Change]] = {}
        for remedy in REMEDIES:
            change = next((c for c in changes if c.setting == remedy.setting), None)
            if remedy.action in found and change is not None and remedy.direction(change.old, change.new):
                by_action.setdefault(remedy.action, []).append(change)
        for action, tried in by_action.items():
            # "other architecture" is a step for both problems: judge it on the larger one
            problem = diagnosis.focus if action == "other_architecture" else \
                next(r.problem for r in REMEDIES if r.action == action)
            found[action].append(_advice(diagnosis, row, action, problem, tuple(tried),
                                         tuple(c for c in changes if c not in tried)))
    advice: list[Advice] = []
    for action in wanted:
        ranked = sorted(found[action], key=lambda a: (len(a.also_changed), -a.improvement))
        advice += ranked[:per_action]
    return advice


def _advice(diagnosis: Diagnosis, row: Mapping[str, Any], action: str, problem: Problem,
            tried: tuple[Change, ...], also: tuple[Change, ...]) -> Advice:
    reference = row.get("reference_error")
    reference = diagnosis.reference_error if reference is None or not math.isfinite(reference) else reference
    bias = (diagnosis.avoidable_bias, row["train_error"] - reference)
    variance = (diagnosis.variance, row["dev_error"] - row["train_error"])
    text = (f"{', '.join(map(str, tried))} (run {row['run_id']}): variance {points(variance[0])} -> "
            f"{points(variance[1])}, avoidable bias {points(bias[0])} -> {points(bias[1])}"
            + (f"; it also changed {', '.join(map(str, also))}" if also else ""))
    return Advice(action, problem, str(row["run_id"]), tried, also, bias, variance, text)


def _finite(row: Mapping[str, Any], *keys: str) -> bool:
    return all(isinstance(row.get(k), (int, float)) and math.isfinite(row[k]) for k in keys)


def _same(a: Any, b: Any) -> bool:
    """Equal settings; two missing values (NaN in a frame) count as equal."""
    missing = [x is None or (isinstance(x, float) and math.isnan(x)) for x in (a, b)]
    if any(missing):
        return all(missing)
    return bool(a == b)

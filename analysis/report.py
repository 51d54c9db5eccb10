"""The report of one run or one sweep, as one JSON-ready dict, and its text form: what `fitlens report`
and `fitlens diagnose` print. Pure: the frames come from `tracking.reader`; the field names are documented
in the README ("Diagnosis"): verdict, avoidable_bias, variance, recommendations, flags, ...
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from analysis.advice import Advice, advise
from analysis.bias_variance import Diagnosis, describe, diagnose, pct, row_diagnosis
from analysis.curves import STRENGTH_SETTINGS, TRAIN_FRACTION, learning_curve, regularization_curve
from analysis.diagnosis import Finding, finding_fields, primary_cause, recipe_waits
from analysis.health import Flag
from analysis.importance import hyperparameter_importance
from analysis.thresholds import DEFAULT, Thresholds
from analysis.values import finite_or_none


def diagnosis_fields(diagnosis: Diagnosis, advice: Sequence[Advice] = ()) -> dict[str, Any]:
    """The bias/variance part of a report: errors, verdict and the recipe's steps, each with the runs that
    already tried it (`evidence`)."""
    return {
        "train_error": diagnosis.train_error,
        "dev_error": diagnosis.dev_error,
        "reference_error": diagnosis.reference_error,
        "avoidable_bias": diagnosis.avoidable_bias,
        "variance": diagnosis.variance,
        "verdict": diagnosis.verdict,
        "focus": diagnosis.focus,
        "recommendations": [
            {"problem": step.problem, "action": step.action, "text": step.text,
             "evidence": [_advice_fields(a) for a in advice if a.action == step.action]}
            for step in diagnosis.recommendations
        ],
    }


def _advice_fields(advice: Advice) -> dict[str, Any]:
    return {
        "run_id": advice.run_id,
        "tried": [{"setting": c.setting, "from": c.old, "to": c.new} for c in advice.tried],
        "also_changed": [{"setting": c.setting, "from": c.old, "to": c.new} for c in advice.also_changed],
        "avoidable_bias": list(advice.avoidable_bias),
        "variance": list(advice.variance),
        "text": advice.text,
    }


def flag_fields(flag: Flag) -> dict[str, Any]:
    """A flag as the report's JSON has it."""
    return dataclasses.asdict(flag) | {"layers": list(flag.layers)}


def run_report(
    run: Mapping[str, Any], siblings: pd.DataFrame, flags: Sequence[Flag], thresholds: Thresholds = DEFAULT,
    findings: Sequence[Finding] = (),
) -> dict[str, Any]:
    """The report of one run: `run` is its row of `tracking.reader.runs_frame`, `siblings` the rows of the runs
    it is compared with (its sweep's trials, or its experiment's runs), `flags` its health flags, `findings` its
    diagnosis (`analysis.diagnosis.diagnose_run`), most important first."""
    fields: dict[str, Any] = {"kind": "run", "run_id": run["run_id"], "run_name": run.get("run_name"),
                              "status": run.get("status"), "test_error": finite_or_none(run.get("test_error"))}
    diagnosis = row_diagnosis(run, thresholds)
    if diagnosis is None:
        fields |= {"verdict": None, "avoidable_bias": None, "variance": None, "recommendations": [],
                   "note": "the run has no finite train and dev error (it failed or diverged before an epoch ended)"}
    else:
        fields |= diagnosis_fields(diagnosis, advise(diagnosis, run, siblings))
    fields["flags"] = [flag_fields(f) for f in flags]
    fields["primary_cause"] = primary_cause(findings)
    fields["findings"] = [finding_fields(f) for f in findings]
    fields["thresholds"] = {"high_bias": thresholds.high_bias, "high_variance": thresholds.high_variance}
    return fields


def sweep_report(
    parent: Mapping[str, Any], trials: pd.DataFrame, flags: Mapping[str, Sequence[Flag]], metric: str,
    log_scale: Sequence[str] = (), refined_space: Mapping[str, Any] | None = None, thresholds: Thresholds = DEFAULT,
    findings: Mapping[str, Sequence[Finding]] | None = None,
) -> dict[str, Any]:
    """The report of a sweep: every trial's verdict, flags and findings (`findings` by run id), the best trial's
    full report, hyperparameter
    importance over the searched settings, the refined space, and the learning and regularization curves
    when the sweep varied the training-set size or a regularizer. `trials` are the rows of
    `tracking.reader.runs_frame` with one column per searched setting; `flags` by run id."""
    searched = _searched(trials)
    scored = trials[trials["dev_error"].map(lambda v: finite_or_none(v) is not None)]
    best = scored.loc[scored["dev_error"].idxmin()] if not scored.empty else None
    fields: dict[str, Any] = {"kind": "sweep", "run_id": parent["run_id"], "run_name": parent.get("run_name"),
                              "status": parent.get("status"), "metric": metric,
                              "best_run_id": None if best is None else best["run_id"]}
    if best is None:
        fields |= {"verdict": None, "avoidable_bias": None, "variance": None, "recommendations": [], "flags": [],
                   "primary_cause": None, "findings": []}
    else:
        best_report = run_report(best.to_dict(), trials, flags.get(best["run_id"], ()), thresholds,
                                 (findings or {}).get(best["run_id"], ()))
        fields |= {k: v for k, v in best_report.items() if k not in ("kind", "run_id", "run_name", "status")}
    fields["trials"] = [_trial_fields(row, flags.get(row["run_id"], ()), thresholds,
                                      (findings or {}).get(row["run_id"], ()))
                        for row in trials.to_dict("records")]
    importance = hyperparameter_importance(scored.rename(columns={"dev_error": metric}), searched, metric,
                                           log_scale=[s for s in log_scale if s in searched])
    fields["importance"] = {"scores": importance.scores, "n_trials": importance.n_trials,
                            "method": importance.method, "caveat": importance.caveat}
    fields["refined_space"] = dict(refined_space) if refined_space is not None else None
    fields["learning_curve"] = _learning_curve(scored, searched, thresholds)
    fields["regularization_curves"] = [_regularization_curve(scored, s, searched, thresholds)
                                       for s in STRENGTH_SETTINGS if s in searched]
    return fields


def row_verdict(run: Mapping[str, Any], thresholds: Thresholds = DEFAULT) -> str | None:
    """The verdict of a `runs_frame` row, None without finite errors in [0, 1] (a table of runs shows no verdict
    for a run that has none, rather than failing)."""
    try:
        diagnosis = row_diagnosis(run, thresholds)
    except ValueError:
        return None
    return None if diagnosis is None else diagnosis.verdict


def searched_settings(trials: pd.DataFrame) -> list[str]:
    """The settings a sweep searched, as its trials record them: the keys of their points (section bundles
    flattened, {"model": {"init": "he"}} -> model.init) that are columns of `trials`, in order of appearance."""
    keys: dict[str, None] = {}
    for point in trials["point"] if "point" in trials else ():
        if isinstance(point, Mapping):
            keys |= dict.fromkeys(flat_point(point))
    return [key for key in keys if key in trials.columns]


def _searched(trials: pd.DataFrame) -> list[str]:
    """The settings the sweep varied: those it searched that take more than one value among its trials."""
    return [k for k in searched_settings(trials) if trials[k].astype(str).nunique() > 1]


def flat_point(point: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A trial's point with its section bundles flattened: {"model": {"init": "he"}} -> {"model.init": "he"}."""
    flat: dict[str, Any] = {}
    for key, value in point.items():
        flat |= flat_point(value, f"{prefix}{key}.") if isinstance(value, Mapping) else {f"{prefix}{key}": value}
    return flat


def _trial_fields(row: Mapping[str, Any], flags: Sequence[Flag], thresholds: Thresholds,
                  findings: Sequence[Finding] = ()) -> dict[str, Any]:
    try:
        diagnosis = row_diagnosis(row, thresholds)
    except ValueError:  # an error outside [0, 1] (a user's module): no verdict for this trial
        diagnosis = None
    return {
        "run_id": row["run_id"], "run_name": row.get("run_name"), "status": row.get("status"),
        "point": row.get("point") or {}, "train_error": finite_or_none(row.get("train_error")),
        "dev_error": finite_or_none(row.get("dev_error")),
        "verdict": None if diagnosis is None else diagnosis.verdict,
        "avoidable_bias": None if diagnosis is None else diagnosis.avoidable_bias,
        "variance": None if diagnosis is None else diagnosis.variance,
        "stopped_early": row.get("stopped_early"), "diverged": row.get("diverged"),
        "flags": [flag_fields(f) for f in flags],
        "primary_cause": primary_cause(findings),
        "findings": [finding_fields(f) for f in findings],
    }


def _learning_curve(scored: pd.DataFrame, searched: Sequence[str], thresholds: Thresholds) -> dict[str, Any] | None:
    if TRAIN_FRACTION not in searched:
        return None
    m = scored["m_train"].where(scored["m_train"].notna(), scored[TRAIN_FRACTION])
    frame = pd.DataFrame({"m": m, "train_error": scored["train_error"], "dev_error": scored["dev_error"],
                          "run_id": scored["run_id"]})
    try:
        curve = learning_curve(frame, float(scored["reference_error"].median()), thresholds=thresholds)
    except ValueError as err:
        return {"note": str(err)}
    return {"points": curve.points.to_dict("records"), "gap_closing": curve.gap_closing,
            "dev_still_falling": curve.dev_still_falling, "more_data_helps": curve.more_data_helps,
            "reason": curve.reason}


def _regularization_curve(scored: pd.DataFrame, setting: str, searched: Sequence[str],
                          thresholds: Thresholds) -> dict[str, Any]:
    values = scored[setting].map(lambda v: min(v) if isinstance(v, list) and v else v)  # per-layer: the lowest
    frame = pd.DataFrame({"value": pd.to_numeric(values, errors="coerce"), "train_error": scored["train_error"],
                          "dev_error": scored["dev_error"], "weight_norm": scored["weight_norm"],
                          "run_id": scored["run_id"]})
    try:
        curve = regularization_curve(frame, setting, other_params_varied=len(searched) > 1, thresholds=thresholds)
    except ValueError as err:
        return {"setting": setting, "note": str(err)}
    return {"setting": setting, "points": curve.points.to_dict("records"), "best_value": curve.best_value,
            "best_run_id": curve.best_run_id, "best_gap": curve.best_gap, "confounded": curve.confounded,
            "summary": curve.summary}


# --- text --------------------------------------------------------------------------------------------

def format_report(report: Mapping[str, Any]) -> str:
    """The report as text for a terminal."""
    lines: list[str] = []
    if report.get("kind") == "sweep":
        lines.append(f"sweep {report['run_id']} ({report.get('run_name')}): {len(report['trials'])} trials, "
                     f"best {report.get('best_run_id')} by {report['metric']}")
        for trial in report["trials"]:
            names = sorted({f["name"] for f in trial["flags"]})
            lines.append(f"  {trial['run_id'][:8]} {_point_text(trial['point']):40s} train {pct(trial['train_error'])}"
                         f"  dev {pct(trial['dev_error'])}  {trial['verdict'] or 'no verdict'}"
                         f"  cause: {trial.get('primary_cause') or 'none'}"
                         + (f"  flags: {', '.join(names)}" if names else ""))
        lines.append("")
        lines.append("best trial:")
    elif "run_id" in report:
        lines.append(f"run {report['run_id']} ({report.get('run_name')}, {report.get('status')})")
    lines += _diagnosis_text(report)
    if report.get("kind") == "sweep":
        lines += _sweep_text(report)
    return "\n".join(lines)


def reading(report: Mapping[str, Any]) -> str:
    """The verdict of a report with a verdict, in one sentence: its numbers in points and the verdict against the
    thresholds it was judged with (`bias_variance.describe`)."""
    thresholds = DEFAULT.replace(**report.get("thresholds", {}))
    diagnosis = diagnose(report["train_error"], report["dev_error"], report["reference_error"], thresholds)
    return describe(diagnosis, thresholds)


def _point_text(point: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in flat_point(point).items())


def _findings_text(findings: Sequence[Mapping[str, Any]]) -> list[str]:
    """The diagnosis, most important first: each cause with its evidence, what to change and who tried it."""
    lines = [f"diagnosis: {len(findings)} finding(s), most important first" if findings else "diagnosis: no finding"]
    for i, finding in enumerate(findings, 1):
        lines.append(f"  {i}. [{finding['severity']}] {finding['cause']}: {finding['summary']}")
        for evidence in finding["evidence"]:
            where = "".join(f" {name} {evidence[name]}" for name in ("layer", "step") if evidence.get(name) is not None)
            lines.append(f"       evidence: {evidence['text']}" + (f" ({where.strip()})" if where else ""))
        for action in finding["actions"]:
            lines.append(f"       do: {action['text']}")
        for tried in finding["tried"]:
            lines.append(f"       tried: {tried['text']}")
    return lines


def _diagnosis_text(report: Mapping[str, Any]) -> list[str]:
    lines = _findings_text(report["findings"]) if "findings" in report else []
    if report.get("verdict") is None:
        lines.append(f"no verdict: {report.get('note', 'no finite errors')}")
    else:
        lines.append(f"verdict: {report['verdict']}: {reading(report)}")
        waits = recipe_waits(report.get("findings") or [])
        if waits and report["recommendations"]:
            lines.append(f"  {waits}")
        for i, rec in enumerate(report["recommendations"], 1):
            lines.append(f"  {i}. [{rec['problem']}] {rec['text']}")
            for evidence in rec["evidence"]:
                lines.append(f"       tried: {evidence['text']}")
    flags = report.get("flags", [])
    if "run_id" in report:  # `fitlens diagnose` has numbers only, no diagnostics to flag
        lines.append(f"health flags: {len(flags) or 'none'}")
    for flag in flags:
        where = f" at {flag['layer']}" if flag["layer"] else ""
        when = "" if flag["step"] is None else f", step {flag['step']}" + (
            f" to {flag['last_step']}" if flag.get("last_step") not in (None, flag["step"]) else "")
        lines.append(f"  [{flag['severity']}] {flag['name']}{where}{when}: {flag['explanation']}")
        if flag["values"]:
            numbers = ", ".join(f"{k} {v:.3g}" for k, v in list(flag["values"].items())[:8])
            lines.append(f"      {flag['quantity']}: {numbers}")
        lines.append(f"      do: {flag['action']}")
    return lines


def _sweep_text(report: Mapping[str, Any]) -> list[str]:
    lines = ["", "hyperparameter importance (" + report["importance"]["method"] + "):"]
    for name, score in report["importance"]["scores"].items():
        lines.append(f"  {name:32s} {score:.2f}")
    if report["importance"]["caveat"]:
        lines.append(f"  caveat: {report['importance']['caveat']}")
    if report.get("learning_curve"):
        lines += ["", "learning curve: " + report["learning_curve"].get("reason", report["learning_curve"].get("note"))]
    for curve in report.get("regularization_curves", []):
        lines += ["", f"regularization, {curve['setting']}: " + curve.get("summary", curve.get("note", ""))]
    if report.get("refined_space"):
        lines += ["", "refined space (fitlens sweep refine):"]
        lines += [f"  {key}: {value}" for key, value in report["refined_space"].items()]
    return lines


"""What a finished (or interrupted) sweep tells its user: the summary `fitlens sweep --json` prints, and its text."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from tracking.layout import DIVERGED_TAG, ERROR_TAG, POINT_TAG, STOPPED_TAG
from tracking.sweep.trial import TrialJob

if TYPE_CHECKING:  # annotations only: MLflow is read and written through tracking.reader and tracking.writer
    from mlflow.entities import Run


def sweep_summary(job: TrialJob, results: Any, runs: Mapping[str, Run]) -> dict[str, Any]:
    """The sweep's summary from Tune's `results` and the trials' runs by trial id: per trial its run, status,
    best value of the metric, epochs, early stop, divergence, error and point; the best trial."""
    metric = job.sweep.metric
    best_run_id, best_value, trials = None, math.inf, []
    for result in results:
        trial_id = result.metrics.get("trial_id") if result.metrics else None
        run = runs.get(trial_id)
        tags = run.data.tags if run else {}
        history = result.metrics_dataframe
        values = [] if history is None or metric not in history else [v for v in history[metric] if math.isfinite(v)]
        value = min(values) if values else None
        row = {
            "trial_id": trial_id, "run_id": run.info.run_id if run else None,
            "status": run.info.status if run else ("FAILED" if result.error else "PENDING"), metric: value,
            "epochs": int(result.metrics.get("epoch", -1)) + 1 if result.metrics else 0,  # epoch counts from 0
            "stopped_early": tags.get(STOPPED_TAG), "diverged": tags.get(DIVERGED_TAG),
            "error": tags.get(ERROR_TAG) or (str(result.error)[:2000] if result.error else None),
            "point": json.loads(tags[POINT_TAG]) if POINT_TAG in tags else None,
        }
        trials.append(row)
        if value is not None and not row["diverged"] and value < best_value:
            best_run_id, best_value = row["run_id"], value
    return {
        "parent_run_id": job.parent_run_id, "experiment_id": job.experiment_id, "tracking_uri": job.tracking_uri,
        "sweep": job.sweep.name, "metric": metric, "trial_run_ids": [t["run_id"] for t in trials if t["run_id"]],
        "best_run_id": best_run_id, "best_value": best_value if best_run_id else None, "trials": trials,
    }


def summary_text(summary: Mapping[str, Any]) -> str:
    """The text `fitlens sweep` prints at the end: one line per trial, best first."""
    metric = summary["metric"]
    head = (f"sweep {summary['sweep']}: parent run {summary['parent_run_id']} (experiment "
            f"{summary['experiment_id']}) in {summary['tracking_uri']}")
    if summary.get("interrupted"):
        head += "\n  interrupted: run the same command again (or fitlens sweep --resume) to continue"
    lines = [head]
    for t in sorted(summary["trials"], key=lambda t: (t[metric] is None, t[metric] or 0.0)):
        value = "n/a" if t[metric] is None else f"{100 * t[metric]:.2f}%"
        notes = [note for note, on in (("stopped early", t["stopped_early"]), (f"diverged: {t['diverged']}",
                 t["diverged"]), (f"error: {(t['error'] or '')[:160]}", t["error"])) if on]
        mark = "*" if t["run_id"] == summary["best_run_id"] else " "
        lines.append(f"{mark} {t['run_id'] or '-':32}  {t['status']:8}  {metric} {value:>7}  {t['epochs']:>3} epochs  "
                     f"{json.dumps(t['point'], default=str)}" + (f"  [{'; '.join(notes)}]" if notes else ""))
    return "\n".join(lines)

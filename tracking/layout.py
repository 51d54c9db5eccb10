"""Names of the run layout in MLflow that tracking writes and the dashboard reads (DESIGN.md).

One key-builder per kind of name, so the two sides cannot drift apart.
"""

from __future__ import annotations

DIAG_PREFIX = "diag"
DIAGNOSTICS_DIR = "diagnostics"  # histogram parts and schema.json, under the run's artifacts
SCHEMA_FILE = "schema.json"
SCHEMA_VERSION = 1
GRADCHECK_REPORT = "gradcheck/report.json"
CONFIG_FILE = "config.yaml"
CHECKPOINT_DIR = "checkpoints"

# Run tags. A trial's run is a child of its sweep's parent run.
DIVERGED_TAG = "fitlens.diverged"  # where the training loss stopped being finite ("epoch 3, step 96: ...")
ERROR_TAG = "fitlens.error"  # a FAILED run's error
SWEEP_KIND_TAG = "fitlens.kind"  # "sweep" on a sweep's parent run
SWEEP_HASH_TAG = "fitlens.sweep_hash"  # parent: the sweep file as run and the store (re-running resumes it)
SWEEP_TAG = "fitlens.sweep_id"  # child: the parent run id (MLflow's own mlflow.parentRunId is set too)
PARENT_RUN_TAG = "mlflow.parentRunId"
TRIAL_TAG = "fitlens.trial_id"  # child: Ray Tune's trial id
POINT_TAG = "fitlens.point"  # child: JSON of the trial's values of the search space's keys
STOPPED_TAG = "fitlens.stopped_early"  # child: where and why a scheduler stopped it
RESUMED_TAG = "fitlens.resumed"  # child: the checkpoint a retried trial continued from
RAY_NODE_TAG = "fitlens.ray_node"  # child: the id of the Ray node its (last) attempt ran on
HOST_TAG = "fitlens.host"  # child: the host name of that node (where its Ray logs are)
BEST_RUN_TAG = "fitlens.best_run_id"  # parent: the trial with the lowest metric
REFINED_FROM_TAG = "fitlens.refined_from"  # parent: the sweep that `fitlens sweep refine` narrowed
M_TRAIN_TAG = "fitlens.m_train"  # the number of training examples the fit used (learning curves over m)
SEARCH_SPACE_FILE = "search_space.yaml"  # parent: the sweep file as run
TRIALS_FILE = "trials.json"  # parent: its trial runs as they were when the sweep finished
KEPT_FILE = "dashboard.json"  # parent: what the dashboard shows of the sweep, computed when it finished
TRIALS_TAG = "fitlens.trials_end_time"  # parent: the end time of the sweep that TRIALS_FILE and KEPT_FILE belong to


def diag_key(kind: str, layer: str, stat: str) -> str:
    """The metric key of one diagnostics statistic: diag/<kind>/<layer>/<stat>."""
    return f"{DIAG_PREFIX}/{kind}/{layer}/{stat}"


def parse_diag_key(key: str) -> tuple[str, str, str] | None:
    """(kind, layer, stat) of a diagnostics key, None for any other metric (layer names hold no '/')."""
    parts = key.split("/")
    if len(parts) != 4 or parts[0] != DIAG_PREFIX:
        return None
    return parts[1], parts[2], parts[3]


def histogram_part(step: int) -> str:
    """The file name of the histogram part of the snapshot at `step` (inside DIAGNOSTICS_DIR): named by
    step, so a resumed run that takes the same snapshot again replaces the part rather than adding one."""
    return f"hist-{step:09d}.parquet"

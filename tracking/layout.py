"""Names of the run layout in MLflow that `tracking.writer` writes and `tracking.reader` reads: every metric key,
tag and artifact path, and the names of the diagnostics statistics.

One key-builder per kind of name, so the two sides cannot drift apart. No other module spells a `fitlens.` tag.
The statistics' meaning is documented in docs/diagnostics.md.
"""

from __future__ import annotations

import typing

from lightning_modules.config import DiagnosticsKind

DIAG_PREFIX = "diag"
DIAGNOSTICS_DIR = "diagnostics"  # histogram parts and schema.json, under the run's artifacts
SCHEMA_FILE = "schema.json"
SCHEMA_VERSION = 1
GRADCHECK_REPORT = "gradcheck/report.json"
GRADCHECK_METRIC = "gradcheck/relative_difference"  # at the step of each check
CONFIG_FILE = "config.yaml"
CHECKPOINT_DIR = "checkpoints"

# Run tags of every run.
DATASET_TAG = "fitlens.dataset"  # data.name of the config
ARCH_TAG = "fitlens.arch"  # model.arch, or the user's module
REFERENCE_ERROR_TAG = "fitlens.reference_error"  # the reference (human / Bayes) error given in the config
M_TRAIN_TAG = "fitlens.m_train"  # the number of training examples the fit used (learning curves over m)
# What the fit's training split was, for the diagnosis: chance level, the majority class, the inputs' scale.
N_CLASSES_TAG = "fitlens.n_classes"
MAJORITY_TAG = "fitlens.majority_fraction"  # the fraction of the training split in its most frequent class
INPUT_STD_TAG = "fitlens.input_std"  # the std of the training inputs as the network sees them
DIVERGED_TAG = "fitlens.diverged"  # where the training loss stopped being finite ("epoch 3, step 96: ...")
ERROR_TAG = "fitlens.error"  # a FAILED run's error
KIND_TAG = "fitlens.kind"  # what a run that is not a fit is: one of the KIND_ values
KIND_SWEEP = "sweep"  # a sweep's parent run
KIND_GRADCHECK = "gradcheck"  # a `fitlens gradcheck` run

# A sweep's parent run; each trial's run is its child.
SWEEP_HASH_TAG = "fitlens.sweep_hash"  # parent: the sweep file as run and the store (re-running resumes it)
STUDY_TAG = "fitlens.study"  # parent: the sweep's name
BEST_RUN_TAG = "fitlens.best_run_id"  # parent: the trial with the lowest metric
REFINED_FROM_TAG = "fitlens.refined_from"  # parent: the sweep that `fitlens sweep refine` narrowed
TRIALS_TAG = "fitlens.trials_end_time"  # parent: the end time of the sweep that TRIALS_FILE and KEPT_FILE belong to
CAUSES_TAG = "fitlens.causes"  # parent: {"end_time", "counts"}: its trials counted by primary cause, with KEPT_FILE
SWEEP_TAG = "fitlens.sweep_id"  # child: the parent run id (MLflow's own mlflow.parentRunId is set too)
PARENT_RUN_TAG = "mlflow.parentRunId"
TRIAL_TAG = "fitlens.trial_id"  # child: Ray Tune's trial id
POINT_TAG = "fitlens.point"  # child: JSON of the trial's values of the search space's keys
STOPPED_TAG = "fitlens.stopped_early"  # child: where and why a scheduler stopped it
RESUMED_TAG = "fitlens.resumed"  # child: the checkpoint a retried trial continued from
RAY_NODE_TAG = "fitlens.ray_node"  # child: the id of the Ray node its (last) attempt ran on
HOST_TAG = "fitlens.host"  # child: the host name of that node (where its Ray logs are)

# A sweep's parent run's artifacts.
SEARCH_SPACE_FILE = "search_space.yaml"  # the sweep file as run
TRIALS_FILE = "trials.json"  # its trial runs as they were when the sweep finished
TRIALS_VERSION = 1  # of TRIALS_FILE's format: {"version", "runs": [{"info", "params", "tags", "metrics"}]}
RUN_INFO_FIELDS = ("run_id", "experiment_id", "user_id", "status", "start_time", "end_time", "lifecycle_stage",
                   "artifact_uri", "run_name")  # what TRIALS_FILE keeps of each run's info
KEPT_FILE = "dashboard.json"  # what the dashboard shows of the sweep, computed when it finished

# The diagnostics statistics, per kind of tensor (docs/diagnostics.md).
KINDS: tuple[str, ...] = typing.get_args(DiagnosticsKind)  # weight, bias, grad, preact, act, update
PERCENTILES = (1, 5, 25, 50, 75, 95, 99)
PERCENTILE_NAMES = tuple(f"p{q:02d}" for q in PERCENTILES)  # p01, p05, p25, p50, p75, p95, p99
DISTRIBUTION_NAMES = ("mean", "std", "norm", "min", "max", *PERCENTILE_NAMES, "nonfinite")
STAT_NAMES: dict[str, tuple[str, ...]] = {  # the stats each kind gets, in this order
    "weight": (*DISTRIBUTION_NAMES, "frac_small", "symmetry"),
    "bias": DISTRIBUTION_NAMES,
    "grad": (*DISTRIBUTION_NAMES, "symmetry"),
    "preact": DISTRIBUTION_NAMES,
    # No symmetry for act: the weights show identical units already, and activations are the largest tensors.
    "act": (*DISTRIBUTION_NAMES, "frac_dead", "frac_saturated"),  # frac_saturated: tanh/sigmoid
    "update": ("norm", "update_ratio"),  # norm of the update W_after - W_before
}
# frac_small counts weights with |w| below this. Gradient descent with L1 leaves weights hovering around 0 (each
# step pushes by lr * lambda / m) rather than exactly on it, so "near zero": 1e-3 is 1-2 orders below the init
# scale (Xavier/He std 0.03-0.1 for 100-1000 inputs), a weight that no longer contributes (L1 makes weights
# sparse: docs/conventions.md).
SMALL_WEIGHT = 1e-3


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

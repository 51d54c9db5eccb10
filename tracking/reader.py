"""The one module that reads MLflow: runs, sweeps and their trials, a finished sweep's files, curves, diagnostics,
histogram parts and gradient-check reports, as MLflow's entities or pandas frames.

Every other part of fitlens (the sweep driver, `fitlens report`, the analysis, the dashboard) reads the store
through these functions; `tracking.writer` is the one path that writes it. The run layout they read is the one
`tracking.layout` names.
"""

from __future__ import annotations

import json
import math
import re
import tempfile
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import pandas as pd
import yaml
from mlflow.artifacts import download_artifacts
from mlflow.entities import Metric, Param, Run, RunData, RunInfo, RunTag
from mlflow.store.tracking.dbmodels.models import SqlMetric
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
from mlflow.tracking import MlflowClient
from mlflow.utils.file_utils import local_file_uri_to_path

from lightning_modules.config import ConfigError
from tracking.layout import (
    CAUSES_TAG,
    DIAGNOSTICS_DIR,
    DIVERGED_TAG,
    ERROR_TAG,
    GRADCHECK_REPORT,
    INPUT_STD_TAG,
    KIND_SWEEP,
    KIND_TAG,
    M_TRAIN_TAG,
    MAJORITY_TAG,
    N_CLASSES_TAG,
    POINT_TAG,
    REFERENCE_ERROR_TAG,
    SEARCH_SPACE_FILE,
    STOPPED_TAG,
    SWEEP_HASH_TAG,
    SWEEP_TAG,
    TRIAL_TAG,
    TRIALS_FILE,
    TRIALS_TAG,
    histogram_part,
    parse_diag_key,
)
from tracking.store import client_for, latest_metrics, retrying, tracking_uri
from tracking.sweep_config import SweepConfig, sweep_from_dict

RUN_COLUMNS = ("run_id", "run_name", "status", "train_error", "dev_error", "test_error", "metric", "reference_error",
               "m_train", "n_classes", "majority_fraction", "input_std", "epochs", "weight_norm", "frac_small", "point",
               "diverged", "stopped_early", "error")
MAX_RUNS = 5000  # runs of one search (and trials of one sweep)


class DataError(Exception):
    """What the store holds cannot be read as the run layout says: the run, the part or the value, and why.
    A page shows it instead of a figure."""


# ----------------------------------------------------------------------------------------------
# runs and sweeps


def open_client(uri: str | None = None) -> MlflowClient:
    """A client of the store `uri` (default: MLFLOW_TRACKING_URI, else the embedded ./mlflow.db)."""
    return client_for(tracking_uri(uri))


def get_run(client: MlflowClient, run_id: str) -> Run:
    """The run `run_id`; a ConfigError naming it when the store has no such run."""
    try:
        return retrying(client.get_run, run_id)
    except Exception:
        raise ConfigError(f"RUN_ID = {run_id!r}: no such run in {client.tracking_uri}") from None


def is_sweep(run: Run) -> bool:
    """Whether `run` is a sweep's parent run."""
    return run.data.tags.get(KIND_TAG) == KIND_SWEEP


def experiment_ids(client: MlflowClient) -> list[str]:
    """The ids of every active experiment."""
    return [e.experiment_id for e in retrying(client.search_experiments)]


def search_runs(client: MlflowClient, experiment_ids: Sequence[str], filter_string: str = "",
                newest_first: bool = True, max_results: int = MAX_RUNS) -> list[Run]:
    """The runs of `experiment_ids` that match `filter_string`, by start time."""
    if not experiment_ids:
        return []
    order = "DESC" if newest_first else "ASC"
    return retrying(client.search_runs, list(experiment_ids), filter_string=filter_string, max_results=max_results,
                    order_by=[f"attributes.start_time {order}"])


def sweeps(client: MlflowClient) -> list[Run]:
    """Every sweep's parent run in the store, newest first."""
    return search_runs(client, experiment_ids(client), f"tags.`{KIND_TAG}` = '{KIND_SWEEP}'")


def lone_runs(client: MlflowClient) -> list[Run]:
    """Runs that are neither a sweep's parent nor its trial (fitlens train, gradcheck), newest first."""
    runs = search_runs(client, experiment_ids(client))
    return [r for r in runs if not is_sweep(r) and SWEEP_TAG not in r.data.tags]


def sibling_runs(client: MlflowClient, run: Run) -> list[Run]:
    """The runs a run is compared with: its sweep's trials, or else every run of its experiment that is not a
    sweep's parent."""
    parent = run.data.tags.get(SWEEP_TAG)
    if parent is not None:
        return trial_runs(client, get_run(client, parent))
    runs = search_runs(client, [run.info.experiment_id], newest_first=False)
    return [r for r in runs if not is_sweep(r)]


def search_trial_runs(client: MlflowClient, parent: Run) -> list[Run]:
    """The trial runs of the sweep `parent`, oldest first, as the store holds them now."""
    return search_runs(client, [parent.info.experiment_id], f"tags.`{SWEEP_TAG}` = '{parent.info.run_id}'",
                       newest_first=False)


def trial_runs(client: MlflowClient, parent: Run) -> list[Run]:
    """The trial runs of the sweep `parent`, oldest first: from its trials file when the sweep finished and
    wrote one for that finish, else searched. (MLflow's search rebuilds every run from its rows, ~4 ms a run
    here, 2 s for 500 trials, which a dashboard opening a large sweep would pay on every start.)"""
    doc = finished_file(client, parent, TRIALS_FILE)
    if doc is not None:
        try:
            return [run_from_doc(run) for run in doc["runs"]]
        except Exception:  # written by another version: the store has the runs themselves
            pass
    return search_trial_runs(client, parent)


def runs_by_trial_id(client: MlflowClient, parent_run_id: str) -> dict[str, Run]:
    """Trial id -> the trial's run, of the sweep `parent_run_id` as the store holds it now."""
    runs = search_trial_runs(client, retrying(client.get_run, parent_run_id))
    return {r.data.tags[TRIAL_TAG]: r for r in runs if TRIAL_TAG in r.data.tags}


def find_trial_run(client: MlflowClient, experiment_id: str, parent_run_id: str, trial_id: str) -> str | None:
    """The run id of a sweep's trial, None before its first start."""
    runs = search_runs(client, [experiment_id], max_results=1,
                       filter_string=f"tags.`{SWEEP_TAG}` = '{parent_run_id}' and tags.`{TRIAL_TAG}` = '{trial_id}'")
    return runs[0].info.run_id if runs else None


def unfinished_parent(client: MlflowClient, experiment_id: str, sweep_hash: str) -> str | None:
    """The parent run id of the latest run of the sweep `sweep_hash` when it did not finish (it was interrupted,
    or its driver died), else None."""
    runs = search_runs(client, [experiment_id], f"tags.`{SWEEP_HASH_TAG}` = '{sweep_hash}'", max_results=1)
    return runs[0].info.run_id if runs and runs[0].info.status != "FINISHED" else None


def unfinished_sweep(uri: str | None = None) -> SweepConfig:
    """The sweep of the most recent unfinished parent run in the store (`fitlens sweep --resume`)."""
    client = open_client(uri)
    runs = search_runs(client, experiment_ids(client), max_results=1,
                       filter_string=f"tags.`{KIND_TAG}` = '{KIND_SWEEP}' and attributes.status != 'FINISHED'")
    if not runs:
        raise ConfigError(f"--resume: no unfinished sweep in {client.tracking_uri}; start one with "
                          f"fitlens sweep --study NAME")
    return sweep_config(client, runs[0].info.run_id)


def sweep_config(client: MlflowClient, parent_run_id: str) -> SweepConfig:
    """The sweep a parent run ran, as it ran it (its search_space.yaml, written once as the sweep starts)."""
    with tempfile.TemporaryDirectory(prefix="fitlens-sweep-") as tmp:
        text = Path(retrying(client.download_artifacts, parent_run_id, SEARCH_SPACE_FILE, tmp)).read_text()
    return sweep_from_dict(yaml.safe_load(text))


def finished_file(client: MlflowClient, parent: Run, name: str) -> dict[str, Any] | None:
    """The JSON file `name` (TRIALS_FILE, KEPT_FILE) that the sweep `parent` wrote as it finished, while the sweep
    has that finish (TRIALS_TAG holds its end time); else None."""
    if parent.info.status == "FINISHED" and parent.data.tags.get(TRIALS_TAG) == str(parent.info.end_time):
        try:
            with tempfile.TemporaryDirectory(prefix="fitlens-trials-") as tmp:
                path = retrying(client.download_artifacts, parent.info.run_id, name, tmp)
                doc = json.loads(Path(path).read_text())
            return doc if isinstance(doc, dict) else None
        except Exception:  # removed, or not JSON: the store has the runs themselves
            pass
    return None


def sweep_causes(parent: Run) -> dict[str, int] | None:
    """The sweep's trials counted by primary cause ({cause: trials}, most first), as kept with its KEPT_FILE when
    it finished (CAUSES_TAG), while the sweep has that finish; else None."""
    try:
        kept = json.loads(parent.data.tags.get(CAUSES_TAG, ""))
    except ValueError:
        return None
    if parent.info.status != "FINISHED" or not isinstance(kept, dict) or kept.get("end_time") != parent.info.end_time:
        return None
    counts = kept.get("counts")
    return counts if isinstance(counts, dict) else None


def run_from_doc(doc: dict[str, Any]) -> Run:
    """A run of a trials file back as MLflow's entity (`tracking.writer.run_doc` wrote it)."""
    data = RunData(metrics=[Metric(*m) for m in doc["metrics"]],
                   params=[Param(k, v) for k, v in doc["params"].items()],
                   tags=[RunTag(k, v) for k, v in doc["tags"].items()])
    return Run(RunInfo(**doc["info"]), data)


def stored_steps(client: MlflowClient, run_id: str) -> dict[str, int]:
    """The last step the store holds for each metric key of a run (a resumed run does not send them again)."""
    return {m.key: m.step for m in latest_metrics(retrying(client.get_run, run_id))}


# ----------------------------------------------------------------------------------------------
# runs as frames

PARAM_LITERALS = {"True": True, "False": False, "null": None, "None": None}


def parse_param(text: str) -> Any:
    """A param as logged (str(value)) back to its value: numbers, booleans, lists; otherwise the text."""
    if text in PARAM_LITERALS:
        return PARAM_LITERALS[text]
    for number in (int, float):  # most params: a sweep of 500 trials has tens of thousands
        try:
            return number(text)
        except ValueError:
            pass
    if not text.startswith("["):
        return text
    try:
        return json.loads(text)  # a list of numbers (hidden sizes): YAML would take 100x longer
    except ValueError:
        pass
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return value if isinstance(value, (int, float, bool, list)) or value is None else text


def runs_frame(runs: Iterable[Run], metric: str = "dev/error") -> pd.DataFrame:
    """One row per run: RUN_COLUMNS, then one column per param (dotted config keys, values parsed).

    train_error and dev_error are those of the kept (best-dev) weights measured without dropout
    (`best/train/error`, `best/dev/error`), else the last epoch's; reference_error is the param
    data.reference_error (resolved at fit time), else the tag REFERENCE_ERROR_TAG, else 0 (e* ~ 0, see
    docs/conventions.md); weight_norm is sqrt(sum over layers of ||W||^2) at the last snapshot, and frac_small
    the fraction of near-zero weights there, mean over layers, when recorded (NaN otherwise); metric is `metric`
    of the kept weights (best/<metric>), else its last value, as a sweep ranks trials.
    """
    rows = []
    for run in runs:
        metrics, tags = run.data.metrics, run.data.tags
        params = {key: parse_param(value) for key, value in run.data.params.items()}
        reference = params.get("data.reference_error", tags.get(REFERENCE_ERROR_TAG))
        weights: dict[str, list[float]] = {"norm": [], "frac_small": []}  # per layer, at the last snapshot
        for key, value in metrics.items():
            if (parsed := parse_diag_key(key)) and parsed[0] == "weight" and parsed[2] in weights:
                weights[parsed[2]].append(value)
        row = {
            "run_id": run.info.run_id,
            "run_name": run.info.run_name,
            "status": run.info.status,
            "train_error": metrics.get("best/train/error", metrics.get("train/error", math.nan)),
            "dev_error": metrics.get("best/dev/error", metrics.get("dev/error", math.nan)),
            "test_error": metrics.get("test/error", math.nan),
            "metric": metrics.get(f"best/{metric}", metrics.get(metric, math.nan)),
            "reference_error": as_float(reference, 0.0),
            "m_train": as_float(tags.get(M_TRAIN_TAG), math.nan),
            "n_classes": as_float(tags.get(N_CLASSES_TAG), math.nan),
            "majority_fraction": as_float(tags.get(MAJORITY_TAG), math.nan),
            "input_std": as_float(tags.get(INPUT_STD_TAG), math.nan),
            "epochs": metrics.get("epoch", math.nan),
            "weight_norm": math.sqrt(sum(v * v for v in weights["norm"])) if weights["norm"] else math.nan,
            "frac_small": float(np.mean(weights["frac_small"])) if weights["frac_small"] else math.nan,
            "point": json.loads(tags[POINT_TAG]) if POINT_TAG in tags else {},
            "diverged": tags.get(DIVERGED_TAG),
            "stopped_early": tags.get(STOPPED_TAG),
            "error": tags.get(ERROR_TAG),
        }
        # a top-level config key that names a run column (run_name) is the same thing, read from the run
        rows.append(row | {key: value for key, value in params.items() if key not in row})
    return pd.DataFrame(rows, columns=None if rows else list(RUN_COLUMNS))


def as_float(value: Any, default: float) -> float:
    """float(value), or `default` when it is none or no number (a param or tag as the store holds it)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


# ----------------------------------------------------------------------------------------------
# curves and diagnostics


def metric_history(client: MlflowClient, run_id: str, keys: Sequence[str]) -> pd.DataFrame:
    """Every point of `keys` (the ones the run has): columns key, step, value, sorted by key and step."""
    histories = _histories(client, run_id, keys)
    rows = [(key, m.step, m.value) for key, points in histories.items() for m in points]
    return pd.DataFrame(rows, columns=["key", "step", "value"]).sort_values(["key", "step"], ignore_index=True)


def diagnostics_frame(client: MlflowClient, run: Run, stats: Sequence[str]) -> pd.DataFrame:
    """The run's diagnostics scalars of `stats` at every snapshot: columns step, kind, layer, stat, value."""
    keys = [k for k in run.data.metrics if (p := parse_diag_key(k)) and p[2] in stats]
    histories = _histories(client, run.info.run_id, keys)
    rows = [(m.step, *parse_diag_key(key), m.value) for key, points in histories.items() for m in points]
    frame = pd.DataFrame(rows, columns=["step", "kind", "layer", "stat", "value"])
    return frame.sort_values(["step", "kind", "layer", "stat"], ignore_index=True)


def latest_diagnostics(run: Run, stats: Sequence[str]) -> list[tuple[int, str, str, str, float]]:
    """The diagnostics scalars of `stats` at the run's last snapshot as rows (step, kind, layer, stat, value),
    from the run itself (no history query): what a table of many runs can afford."""
    rows = [(m.step, *parsed, m.value) for m in latest_metrics(run)
            if (parsed := parse_diag_key(m.key)) and parsed[2] in stats]
    last = max((row[0] for row in rows), default=None)
    return [row for row in rows if row[0] == last]


def _histories(client: MlflowClient, run_id: str, keys: Sequence[str]) -> dict[str, list]:
    store = _sql_store(client)
    if store is not None:
        return retrying(_sql_histories, store, run_id, keys)
    # One request per key; a few threads overlap them (a remote server answers each in a round trip).
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = pool.map(lambda key: retrying(client.get_metric_history, run_id, key), keys)
        return dict(zip(keys, results, strict=True))


def _sql_store(client: MlflowClient) -> SqlAlchemyStore | None:
    """The client's store when MLflow reads its database itself (the embedded SQLite store), not a server."""
    store = getattr(getattr(client, "_tracking_client", None), "store", None)
    return store if isinstance(store, SqlAlchemyStore) else None


SQL_KEYS_PER_QUERY = 500  # bound parameters a query: older SQLite builds allow 999


def _sql_histories(store: SqlAlchemyStore, run_id: str, keys: Sequence[str],
                   per_query: int = SQL_KEYS_PER_QUERY) -> dict[str, list[Metric]]:
    """What `get_metric_history` gives for each of `keys`, in its order, from one query per `per_query` keys: that
    call costs a query and a check of the run per key (~2 ms), half a second of a layers page's 250 keys."""
    found: dict[str, list[Metric]] = {key: [] for key in keys}
    keys = list(found)
    with store.ManagedSessionMaker() as session:
        for start in range(0, len(keys), per_query):
            rows = (session.query(SqlMetric)
                    .filter(SqlMetric.run_uuid == run_id, SqlMetric.key.in_(keys[start:start + per_query]))
                    .order_by(SqlMetric.key, SqlMetric.timestamp, SqlMetric.step, SqlMetric.value).all())
            for row in rows:
                found[row.key].append(row.to_mlflow_entity())
    return found


# ----------------------------------------------------------------------------------------------
# artifacts: histogram parts and gradient-check reports

ARTIFACT_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")  # one component of a path tracking writes
HISTOGRAM_PART = re.compile(r"hist-[0-9]{9}\.parquet")  # tracking.layout.histogram_part; \d takes any digit


def safe_artifact_path(path: str, artifact_uri: str | None = None) -> str:
    """`path` when it is a plain relative path under a run's artifact root, else DataError: no '..' or '.', not
    absolute, no backslash, '%', NUL or other odd character in any component (names may come from a hostile
    store's listing). With the run's `artifact_uri` on this machine, also every symlink followed: MLflow checks
    a download only against the folder it reads from, so a symlinked folder inside the root could lead out."""
    parts = path.split("/") if isinstance(path, str) else []
    if not parts or not all(ARTIFACT_NAME.fullmatch(part) for part in parts):
        raise DataError(f"artifact path {str(path)[:80]!r} is refused: expected a relative path of plain names "
                        "(letters, digits, _ . -), without '..', a leading '/', '\\', '%' or NUL")
    if artifact_uri is not None:
        if urlparse(artifact_uri).scheme in ("", "file"):
            root = Path(local_file_uri_to_path(artifact_uri)).resolve()
            if not (root / path).resolve().is_relative_to(root):
                raise DataError(f"artifact {path} is refused: it is a link that leads outside the run's artifacts")
    return path


def histogram_steps(client: MlflowClient, run_id: str) -> list[int]:
    """The steps that have a histogram part, read from the artifact listing only."""
    try:
        files = retrying(client.list_artifacts, run_id, DIAGNOSTICS_DIR)
    except Exception as err:  # e.g. a symlinked diagnostics folder leading outside the run: MLflow refuses it
        raise DataError(f"the histogram parts of run {run_id} could not be listed ({type(err).__name__})") from None
    # Exactly the paths tracking writes: a hostile store may list "../../etc/passwd" or "/etc/passwd".
    prefix = DIAGNOSTICS_DIR + "/"
    names = [f.path[len(prefix):] for f in files if not f.is_dir and isinstance(f.path, str)
             and f.path.startswith(prefix) and HISTOGRAM_PART.fullmatch(f.path[len(prefix):])]
    return sorted(int(name[len("hist-"):-len(".parquet")]) for name in names)


def histogram_part_frame(uri: str, run: Run, step: int) -> pd.DataFrame:
    """The histogram rows (step, kind, layer, edges, counts) of the run's part at `step`; DataError naming the part
    when it cannot be read (never what it held: the file may be anything)."""
    root = run.info.artifact_uri
    name = safe_artifact_path(f"{DIAGNOSTICS_DIR}/{histogram_part(step)}", root)
    with tempfile.TemporaryDirectory(prefix="fitlens-part-") as tmp:
        try:
            # from the run's artifact root: a runs:/ path (client.download_artifacts) costs a run lookup a file
            path = retrying(download_artifacts, artifact_uri=f"{root.rstrip('/')}/{name}", dst_path=tmp,
                            tracking_uri=uri)
            if not Path(path).resolve().is_relative_to(Path(tmp).resolve()):
                raise DataError("not downloaded")  # a store that hands back its own file: not read here
            return pd.read_parquet(path)
        except Exception as err:  # a part cut short by a crash, or removed: say which, go on
            raise DataError(f"histogram part {name} of run {run.info.run_id} could not be read "
                            f"({type(err).__name__})") from None


def gradcheck_report(client: MlflowClient, run: Run) -> dict[str, Any] | None:
    """The run's gradient-check report (GRADCHECK_REPORT), None when it has none; DataError when it holds no
    report."""
    run_id = run.info.run_id
    name = safe_artifact_path(GRADCHECK_REPORT, run.info.artifact_uri)
    with tempfile.TemporaryDirectory(prefix="fitlens-gradcheck-") as tmp:
        try:
            path = retrying(client.download_artifacts, run_id, name, tmp)
        except Exception:
            return None
        if not Path(path).resolve().is_relative_to(Path(tmp).resolve()):
            raise DataError(f"{name} of run {run_id} is refused: the store did not download it")
        try:
            report = json.loads(Path(path).read_text())
        except ValueError:  # never what it held: the file may be anything
            raise DataError(f"{name} of run {run_id} is not valid JSON") from None
    if not isinstance(report, dict):
        raise DataError(f"{name} of run {run_id} holds a {type(report).__name__}, not a report")
    return report

"""The one module that reads MLflow: runs, sweeps and diagnostics as pandas frames for `dashboard.analysis`.

Everything else in the dashboard (and `fitlens report`) works on what these functions return. The run
layout they read is the one `tracking` writes (DESIGN.md, `tracking.layout`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import tempfile
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import pandas as pd
import yaml
from mlflow.artifacts import download_artifacts
from mlflow.entities import Metric, Run
from mlflow.store.tracking.dbmodels.models import SqlMetric
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
from mlflow.tracking import MlflowClient
from mlflow.utils.file_utils import local_file_uri_to_path

from dashboard.analysis.thresholds import DEFAULT
from lightning_modules.config import ConfigError
from tracking.layout import (
    BEST_RUN_TAG,
    DIAGNOSTICS_DIR,
    DIVERGED_TAG,
    ERROR_TAG,
    GRADCHECK_REPORT,
    KEPT_FILE,
    M_TRAIN_TAG,
    POINT_TAG,
    STOPPED_TAG,
    SWEEP_KIND_TAG,
    SWEEP_TAG,
    histogram_part,
    parse_diag_key,
)
from tracking.store import client_for, latest_metrics, quiet_libraries, retrying, tracking_uri
from tracking.sweep_config import SweepConfig
from tracking.sweep_store import finished_file, sweep_of, trial_runs

RUN_COLUMNS = ("run_id", "run_name", "status", "train_error", "dev_error", "test_error", "metric", "reference_error",
               "m_train", "epochs", "weight_norm", "frac_small", "point", "diverged", "stopped_early", "error")
# The diagnostics statistics the health flags read (fetching every key's history would cost a query each).
HEALTH_STATS = ("norm", "std", "nonfinite", "frac_dead", "frac_saturated", "symmetry", "update_ratio")
# What the run and layers pages read of a run's diagnostics (flags, depth profile, percentile bands): fetched
# together once, each view takes its own from them.
PAGE_STATS = (*HEALTH_STATS, "mean", "p01", "p05", "p25", "p50", "p75", "p95", "p99")
MAX_RUNS = 5000
KEPT_VERSION = 2  # of what a finished sweep keeps for the dashboard: bump when runs_frame or the sweep report change


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
    return run.data.tags.get(SWEEP_KIND_TAG) == "sweep"


def sweep_runs(client: MlflowClient, parent: Run) -> list[Run]:
    """The trial runs of a sweep's parent run, oldest first (a finished sweep's from its trials file)."""
    return trial_runs(client, parent)


def sibling_runs(client: MlflowClient, run: Run) -> list[Run]:
    """The runs a run is compared with: its sweep's trials, or else every run of its experiment that is not a
    sweep's parent."""
    parent = run.data.tags.get(SWEEP_TAG)
    if parent is not None:
        return sweep_runs(client, get_run(client, parent))
    runs = retrying(client.search_runs, [run.info.experiment_id], max_results=MAX_RUNS,
                    order_by=["attributes.start_time ASC"])
    return [r for r in runs if not is_sweep(r)]


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


def sweep_config(client: MlflowClient, parent_run_id: str) -> SweepConfig:
    """The sweep a parent run ran (its search_space.yaml)."""
    return sweep_of(client, parent_run_id)


def runs_frame(runs: Iterable[Run], metric: str = "dev/error") -> pd.DataFrame:
    """One row per run: RUN_COLUMNS, then one column per param (dotted config keys, values parsed).

    train_error and dev_error are those of the kept (best-dev) weights measured without dropout
    (`best/train/error`, `best/dev/error`), else the last epoch's; reference_error is the param
    data.reference_error (resolved at fit time), else the tag fitlens.reference_error, else 0 (the seeds'
    e* ~ 0); weight_norm is sqrt(sum over layers of ||W||^2) at the last snapshot, and frac_small the fraction
    of near-zero weights (|w| < 1e-3) there, mean over layers, when recorded (NaN otherwise);
    metric is `metric` of the kept weights (best/<metric>), else its last value, as a sweep ranks trials.
    """
    rows = []
    for run in runs:
        metrics, tags = run.data.metrics, run.data.tags
        params = {key: parse_param(value) for key, value in run.data.params.items()}
        reference = params.get("data.reference_error", tags.get("fitlens.reference_error"))
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
            "reference_error": _float(reference, 0.0),
            "m_train": _float(tags.get(M_TRAIN_TAG), math.nan),
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


def kept_part(kept: Any, part: str) -> Any:
    """`part` of what a finished sweep kept for the dashboard (`dashboard.report.keep_sweep`), when it was kept by
    this KEPT_VERSION with the default thresholds; else None (the reader computes it)."""
    if not isinstance(kept, dict) or kept.get("version") != KEPT_VERSION \
            or kept.get("thresholds") != dataclasses.asdict(DEFAULT):
        return None
    return kept.get(part) if isinstance(kept.get(part), (list, dict)) else None


def _float(value: Any, default: float) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def metric_history(client: MlflowClient, run_id: str, keys: Sequence[str]) -> pd.DataFrame:
    """Every point of `keys` (the ones the run has): columns key, step, value, sorted by key and step."""
    histories = _histories(client, run_id, keys)
    rows = [(key, m.step, m.value) for key, points in histories.items() for m in points]
    return pd.DataFrame(rows, columns=["key", "step", "value"]).sort_values(["key", "step"], ignore_index=True)


def diagnostics_frame(client: MlflowClient, run: Run, stats: Sequence[str] = HEALTH_STATS) -> pd.DataFrame:
    """The run's diagnostics scalars of `stats` at every snapshot: columns step, kind, layer, stat, value."""
    keys = [k for k in run.data.metrics if (p := parse_diag_key(k)) and p[2] in stats]
    histories = _histories(client, run.info.run_id, keys)
    rows = [(m.step, *parse_diag_key(key), m.value) for key, points in histories.items() for m in points]
    frame = pd.DataFrame(rows, columns=["step", "kind", "layer", "stat", "value"])
    return frame.sort_values(["step", "kind", "layer", "stat"], ignore_index=True)


def latest_diagnostics(run: Run, stats: Sequence[str] = HEALTH_STATS) -> list[tuple[int, str, str, str, float]]:
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
# The dashboard's reader: cached, validated, asking only for what a view needs.

RUN_ID = re.compile(r"^[0-9a-f]{32}$")  # MLflow's run ids: uuid4 hex
MAX_POINTS = 2000  # a curve longer than this is downsampled (evenly, first and last points kept)
LIVE_SECONDS = 5.0  # how long a RUNNING run's cached data stays fresh
RUN_SECONDS = 1.0  # how long a run's own record (status, last metrics) is reused within a page's requests


class DataError(Exception):
    """What a page shows instead of a figure: the run, the part or the value it could not read, and why."""


@dataclass(frozen=True)
class RunKey:
    """What a cached view of a run depends on: a finished run never changes; a running one is re-read after
    LIVE_SECONDS."""

    run_id: str
    status: str
    end_time: int | None
    bucket: int


def check_run_id(run_id: str) -> str:
    """`run_id` when it is an MLflow run id (32 hex digits), else DataError: ids come from URLs."""
    if not isinstance(run_id, str) or not RUN_ID.fullmatch(run_id):  # `$` alone lets a final newline by
        raise DataError(f"{str(run_id)[:80]!r} is not a run id (an MLflow run id is 32 hexadecimal digits)")
    return run_id


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


def downsample(history: pd.DataFrame, max_points: int = MAX_POINTS) -> pd.DataFrame:
    """At most `max_points` rows per key, evenly spaced, the first and last kept (a curve's ends matter)."""
    parts = []
    for _, rows in history.groupby("key", sort=False):
        if len(rows) > max_points:
            rows = rows.iloc[np.unique(np.linspace(0, len(rows) - 1, max_points).round().astype(int))]
        parts.append(rows)
    return pd.concat(parts, ignore_index=True) if parts else history


class Reader:
    """The dashboard's view of one tracking store (embedded or an `mlflow server` URI): runs, sweeps, curves,
    diagnostics and histogram parts as frames, each cached by run id and the run's last change."""

    def __init__(self, uri: str | None = None, max_points: int = MAX_POINTS) -> None:
        quiet_libraries()  # no download progress bars in the server's log
        self.uri = tracking_uri(uri)
        self.client = open_client(self.uri)
        self.max_points = max_points
        self._cache: dict[tuple, Any] = {}
        self._pending: dict[tuple, threading.Event] = {}
        self._runs: dict[str, tuple[float, Run]] = {}
        self._lock = threading.Lock()

    # -- runs --------------------------------------------------------------------------------
    def run(self, run_id: str) -> Run:
        """The run `run_id` (validated); DataError when it is not a run id or the store has no such run."""
        check_run_id(run_id)
        with self._lock:
            seen = self._runs.get(run_id)
        if seen is not None and time.monotonic() - seen[0] < RUN_SECONDS:
            return seen[1]  # one page render asks for a run many times
        try:
            run = get_run(self.client, run_id)
        except ConfigError as err:
            raise DataError(str(err).replace("RUN_ID = ", "run ")) from None
        with self._lock:
            self._runs[run_id] = (time.monotonic(), run)
        return run

    def key(self, run: Run) -> RunKey:
        live = run.info.status == "RUNNING"
        return RunKey(run.info.run_id, run.info.status, run.info.end_time,
                      int(time.monotonic() // LIVE_SECONDS) if live else 0)

    def cached(self, name: str, key: Hashable, compute: Callable[[], Any]) -> Any:
        """compute() once per (name, key); a key with a run's RunKey is re-read when the run changes. Callers
        that ask while it is being computed (a page's requests arrive together) wait for that one result."""
        slot = (name, key)
        with self._lock:
            if slot in self._cache:
                return self._cache[slot]
            pending = self._pending.get(slot)
            owner = pending is None
            if owner:
                pending = self._pending[slot] = threading.Event()
        if not owner:
            pending.wait()
            with self._lock:
                if slot in self._cache:
                    return self._cache[slot]
            return self.cached(name, key, compute)  # the computation failed there: try here, for its error
        try:
            value = compute()
            with self._lock:
                if len(self._cache) > 4096:
                    self._cache.clear()
                self._cache[slot] = value
            return value
        finally:
            with self._lock:
                del self._pending[slot]
            pending.set()

    def experiments(self) -> pd.DataFrame:
        """experiment_id, name of every active experiment."""
        found = retrying(self.client.search_experiments)
        return pd.DataFrame([(e.experiment_id, e.name) for e in found], columns=["experiment_id", "name"])

    def sweeps(self) -> pd.DataFrame:
        """The sweeps' parent runs, newest first: run_id, run_name, experiment_id, status, start_time, best_run_id."""
        ids = self.experiments()["experiment_id"].tolist()
        runs = retrying(self.client.search_runs, ids, max_results=MAX_RUNS, order_by=["attributes.start_time DESC"],
                        filter_string=f"tags.`{SWEEP_KIND_TAG}` = 'sweep'") if ids else []
        rows = [(r.info.run_id, r.info.run_name, r.info.experiment_id, r.info.status, r.info.start_time,
                 r.data.tags.get(BEST_RUN_TAG)) for r in runs]
        return pd.DataFrame(rows, columns=["run_id", "run_name", "experiment_id", "status", "start_time",
                                           "best_run_id"])

    def lone_runs(self) -> pd.DataFrame:
        """Runs that are neither a sweep's parent nor its trial (fitlens train, gradcheck), newest first."""
        ids = self.experiments()["experiment_id"].tolist()
        runs = retrying(self.client.search_runs, ids, max_results=MAX_RUNS,
                        order_by=["attributes.start_time DESC"]) if ids else []
        runs = [r for r in runs if not is_sweep(r) and SWEEP_TAG not in r.data.tags]
        return runs_frame(runs).assign(experiment_id=[r.info.experiment_id for r in runs])

    def trials(self, parent_id: str) -> pd.DataFrame:
        """The trials of a sweep as `runs_frame` rows (those a finished sweep kept, else read from its runs),
        cached while the sweep is unchanged."""
        parent = self.run(parent_id)
        if not is_sweep(parent):
            raise DataError(f"run {parent_id} is not a sweep's parent run")
        metric = parent.data.params.get("metric", "dev/error")

        def read() -> pd.DataFrame:
            rows = self.kept(parent_id, "trials")
            if rows is None:
                return runs_frame(self.trial_runs(parent_id), metric)
            return pd.DataFrame(rows, columns=None if rows else list(RUN_COLUMNS))
        return self.cached("trials", self.key(parent), read)

    def trial_runs(self, parent_id: str) -> list[Run]:
        """The trial runs of a sweep, cached while the sweep is unchanged."""
        parent = self.run(parent_id)
        return self.cached("trial_runs", self.key(parent), lambda: sweep_runs(self.client, parent))

    def kept(self, parent_id: str, part: str) -> Any:
        """`part` of what a finished sweep kept for the dashboard (`dashboard.report.keep_sweep`: "trials", the
        `runs_frame` rows, or "report"), when this version computes it the same way; else None."""
        parent = self.run(parent_id)
        return kept_part(self.cached("kept", self.key(parent), lambda: finished_file(self.client, parent, KEPT_FILE)),
                         part)

    def sweep(self, parent_id: str) -> SweepConfig:
        """The sweep a parent run ran (its search_space.yaml, written once as the sweep starts)."""
        return self.cached("sweep", check_run_id(parent_id), lambda: sweep_config(self.client, parent_id))

    def siblings(self, run: Run) -> pd.DataFrame:
        return self.cached("siblings", self.key(run), lambda: runs_frame(sibling_runs(self.client, run)))

    # -- curves and diagnostics ----------------------------------------------------------------
    def history(self, run_id: str, keys: Sequence[str]) -> pd.DataFrame:
        """Every point of `keys` the run has (key, step, value), downsampled to max_points per key."""
        run = self.run(run_id)
        present = tuple(k for k in keys if k in run.data.metrics)
        return self.cached(("history", present), self.key(run),
                           lambda: downsample(metric_history(self.client, run_id, present), self.max_points))

    def diagnostics(self, run_id: str, stats: Sequence[str] = HEALTH_STATS) -> pd.DataFrame:
        """The diagnostics scalars of `stats` (step, kind, layer, stat, value)."""
        run = self.run(run_id)
        # A run's own pages ask for several of PAGE_STATS and share one fetch; one statistic (a page comparing
        # many runs asks each for one) is fetched alone.
        fetch = PAGE_STATS if len(set(stats)) > 1 and set(stats) <= set(PAGE_STATS) else tuple(stats)
        frame = self.cached(("diagnostics", fetch), self.key(run), lambda: diagnostics_frame(self.client, run, fetch))
        return frame if fetch == tuple(stats) else frame[frame["stat"].isin(stats)].reset_index(drop=True)

    def histogram_steps(self, run_id: str) -> list[int]:
        """The steps that have a histogram part, read from the artifact listing only."""
        run = self.run(run_id)
        return self.cached("parts", self.key(run), lambda: sorted(
            int(name[len("hist-"):-len(".parquet")]) for name in self._part_names(run_id)))

    def _part_names(self, run_id: str) -> list[str]:
        try:
            files = retrying(self.client.list_artifacts, run_id, DIAGNOSTICS_DIR)
        except Exception as err:  # e.g. a symlinked diagnostics folder leading outside the run: MLflow refuses it
            raise DataError(f"the histogram parts of run {run_id} could not be listed ({type(err).__name__})") from None
        # Exactly the paths tracking writes: a hostile store may list "../../etc/passwd" or "/etc/passwd".
        prefix = DIAGNOSTICS_DIR + "/"
        return [f.path[len(prefix):] for f in files if not f.is_dir and isinstance(f.path, str)
                and f.path.startswith(prefix) and HISTOGRAM_PART.fullmatch(f.path[len(prefix):])]

    def histograms(self, run_id: str, steps: Sequence[int] | None = None) -> tuple[pd.DataFrame, list[str]]:
        """The histogram rows (step, kind, layer, edges, counts) of the parts at `steps` (default: all), each
        part downloaded once and kept; and a message for each part that could not be read (missing or corrupt),
        which the page shows instead of failing."""
        available = self.histogram_steps(run_id)
        wanted = available if steps is None else [s for s in steps if s in available]

        def part(step: int) -> pd.DataFrame | str:
            try:
                return self.cached("part", (run_id, step), lambda: self._read_part(run_id, step))
            except DataError as err:
                return str(err)

        with ThreadPoolExecutor(max_workers=8) as pool:  # a remote store answers each in a round trip
            parts = list(pool.map(part, wanted))
        frames = [p for p in parts if isinstance(p, pd.DataFrame)]
        columns = ["step", "kind", "layer", "edges", "counts"]
        rows = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)
        return rows, [p for p in parts if isinstance(p, str)]

    def _read_part(self, run_id: str, step: int) -> pd.DataFrame:
        root = self.run(run_id).info.artifact_uri
        name = safe_artifact_path(f"{DIAGNOSTICS_DIR}/{histogram_part(step)}", root)
        with tempfile.TemporaryDirectory(prefix="fitlens-part-") as tmp:
            try:
                # from the run's artifact root: a runs:/ path (client.download_artifacts) costs a run lookup a file
                path = retrying(download_artifacts, artifact_uri=f"{root.rstrip('/')}/{name}", dst_path=tmp,
                                tracking_uri=self.uri)
                if not Path(path).resolve().is_relative_to(Path(tmp).resolve()):
                    raise DataError("not downloaded")  # a store that hands back its own file: not read here
                return pd.read_parquet(path)
            except Exception as err:  # a part cut short by a crash, or removed: say which (never what it held), go on
                raise DataError(f"histogram part {name} of run {run_id} could not be read "
                                f"({type(err).__name__})") from None

    def gradcheck(self, run_id: str) -> dict[str, Any] | None:
        """The run's gradient-check report (gradcheck/report.json), None when it has none."""
        run = self.run(run_id)

        def read() -> dict[str, Any] | None:
            name = safe_artifact_path(GRADCHECK_REPORT, run.info.artifact_uri)
            with tempfile.TemporaryDirectory(prefix="fitlens-gradcheck-") as tmp:
                try:
                    path = retrying(self.client.download_artifacts, run_id, name, tmp)
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
        return self.cached("gradcheck", self.key(run), read)

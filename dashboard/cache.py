"""The dashboard's view of one tracking store: `tracking.reader`'s runs, sweeps, curves, diagnostics and histogram
parts, each cached by run id and the run's last change, with the ids that come from URLs validated.

Pages read only through a `CachedReader`; it asks the store only for what a view needs.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from analysis.diagnosis import DIAGNOSIS_STATS, Finding, RunEvidence, diagnose_run
from analysis.gather import CURVE_KEYS, gather_evidence, kept_part
from analysis.health import HEALTH_STATS, Flag
from lightning_modules.config import ConfigError
from tracking import reader
from tracking.layout import BEST_RUN_TAG, KEPT_FILE, PERCENTILE_NAMES
from tracking.reader import RUN_COLUMNS, DataError
from tracking.store import client_for, quiet_libraries, tracking_uri
from tracking.sweep_config import SweepConfig

if TYPE_CHECKING:  # annotations only: MLflow is read and written through tracking.reader and tracking.writer
    from mlflow.entities import Run

# What the run and layers pages read of a run's diagnostics (flags, depth profile, percentile bands): fetched
# together once, each view takes its own from them.
PAGE_STATS = (*DIAGNOSIS_STATS, *PERCENTILE_NAMES)
RUN_ID = re.compile(r"^[0-9a-f]{32}$")  # MLflow's run ids: uuid4 hex
MAX_POINTS = 2000  # a curve longer than this is downsampled (evenly, first and last points kept)
LIVE_SECONDS = 5.0  # how long a RUNNING run's cached data stays fresh
RUN_SECONDS = 1.0  # how long a run's own record (status, last metrics) is reused within a page's requests
MAX_CACHED = 4096  # entries kept before the cache starts over


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


def downsample(history: pd.DataFrame, max_points: int = MAX_POINTS) -> pd.DataFrame:
    """At most `max_points` rows per key, evenly spaced, the first and last kept (a curve's ends matter)."""
    parts = []
    for _, rows in history.groupby("key", sort=False):
        if len(rows) > max_points:
            rows = rows.iloc[np.unique(np.linspace(0, len(rows) - 1, max_points).round().astype(int))]
        parts.append(rows)
    return pd.concat(parts, ignore_index=True) if parts else history


class CachedReader:
    """The dashboard's view of one tracking store (embedded or an `mlflow server` URI): runs, sweeps, curves,
    diagnostics and histogram parts as frames, each cached by run id and the run's last change."""

    def __init__(self, uri: str | None = None, max_points: int = MAX_POINTS) -> None:
        quiet_libraries()  # no download progress bars in the server's log
        self.uri = tracking_uri(uri)
        self.client = client_for(self.uri)
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
            run = reader.get_run(self.client, run_id)
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
                if len(self._cache) > MAX_CACHED:
                    self._cache.clear()
                self._cache[slot] = value
            return value
        finally:
            with self._lock:
                del self._pending[slot]
            pending.set()

    def sweeps(self) -> pd.DataFrame:
        """The sweeps' parent runs, newest first: run_id, run_name, experiment_id, status, start_time, best_run_id,
        causes (its trials counted by primary cause, `reader.sweep_causes`: None until it finished)."""
        rows = [(r.info.run_id, r.info.run_name, r.info.experiment_id, r.info.status, r.info.start_time,
                 r.data.tags.get(BEST_RUN_TAG), reader.sweep_causes(r)) for r in reader.sweeps(self.client)]
        return pd.DataFrame(rows, columns=["run_id", "run_name", "experiment_id", "status", "start_time",
                                           "best_run_id", "causes"])

    def lone_runs(self) -> pd.DataFrame:
        """Runs that are neither a sweep's parent nor its trial (fitlens train, gradcheck), newest first, as
        `runs_frame` rows with their experiment_id."""
        runs = reader.lone_runs(self.client)
        return reader.runs_frame(runs).assign(experiment_id=[r.info.experiment_id for r in runs])

    def trials_frame(self, parent_id: str) -> pd.DataFrame:
        """The trials of a sweep as `runs_frame` rows (those a finished sweep kept, else read from its runs),
        cached while the sweep is unchanged."""
        parent = self.run(parent_id)
        if not reader.is_sweep(parent):
            raise DataError(f"run {parent_id} is not a sweep's parent run")
        metric = parent.data.params.get("metric", "dev/error")

        def read() -> pd.DataFrame:
            rows = self.kept(parent_id, "trials")
            if rows is None:
                return reader.runs_frame(self.trial_runs(parent_id), metric)
            return pd.DataFrame(rows, columns=None if rows else list(RUN_COLUMNS))
        return self.cached("trials_frame", self.key(parent), read)

    def trial_runs(self, parent_id: str) -> list[Run]:
        """The trial runs of a sweep, cached while the sweep is unchanged."""
        parent = self.run(parent_id)
        return self.cached("trial_runs", self.key(parent), lambda: reader.trial_runs(self.client, parent))

    def kept(self, parent_id: str, part: str) -> Any:
        """`part` of what a finished sweep kept for the dashboard (`analysis.gather.kept_part`), when this version
        computes it the same way; else None."""
        parent = self.run(parent_id)
        kept = self.cached("kept", self.key(parent), lambda: reader.finished_file(self.client, parent, KEPT_FILE))
        return kept_part(kept, part)

    def sweep(self, parent_id: str) -> SweepConfig:
        """The sweep a parent run ran (its search_space.yaml, written once as the sweep starts)."""
        return self.cached("sweep", check_run_id(parent_id), lambda: reader.sweep_config(self.client, parent_id))

    def siblings(self, run: Run) -> pd.DataFrame:
        return self.cached("siblings", self.key(run), lambda: reader.runs_frame(reader.sibling_runs(self.client, run)))

    # -- curves and diagnostics ----------------------------------------------------------------
    def history(self, run_id: str, keys: Sequence[str]) -> pd.DataFrame:
        """Every point of `keys` the run has (key, step, value), downsampled to max_points per key."""
        run = self.run(run_id)
        present = tuple(k for k in keys if k in run.data.metrics)
        return self.cached(("history", present), self.key(run), lambda: downsample(
            reader.metric_history(self.client, run_id, present), self.max_points))

    def diagnostics(self, run_id: str, stats: Sequence[str] = HEALTH_STATS) -> pd.DataFrame:
        """The diagnostics scalars of `stats` (step, kind, layer, stat, value)."""
        run = self.run(run_id)
        # A run's own pages ask for several of PAGE_STATS and share one fetch; one statistic (a page comparing
        # many runs asks each for one) is fetched alone.
        fetch = PAGE_STATS if len(set(stats)) > 1 and set(stats) <= set(PAGE_STATS) else tuple(stats)
        frame = self.cached(("diagnostics", fetch), self.key(run),
                            lambda: reader.diagnostics_frame(self.client, run, fetch))
        return frame if fetch == tuple(stats) else frame[frame["stat"].isin(stats)].reset_index(drop=True)

    def evidence(self, run: Run, siblings: pd.DataFrame | None = None) -> RunEvidence:
        """What the diagnosis reads of the run (`analysis.gather.gather_evidence`), from the diagnostics and curves
        read for the pages' figures, once per state of the run. `siblings`: the runs it is compared with (default:
        its sweep's trials, or its experiment's runs)."""
        def read() -> RunEvidence:
            row = reader.runs_frame([run]).iloc[0].to_dict()
            others = self.siblings(run) if siblings is None else siblings
            curves = self.history(run.info.run_id, CURVE_KEYS)
            return gather_evidence(self.client, run, row, others, diagnostics=self.diagnostics(
                run.info.run_id, DIAGNOSIS_STATS), curves=curves)
        return self.cached("evidence", self.key(run), read)

    def flags(self, run: Run) -> list[Flag]:
        """The run's health flags over every snapshot."""
        return list(self.evidence(run).flags)

    def findings(self, run: Run) -> list[Finding]:
        """The run's diagnosis (`analysis.diagnosis.diagnose_run`), most important first, once per state of the
        run."""
        return self.cached("findings", self.key(run), lambda: diagnose_run(self.evidence(run)))

    def histogram_steps(self, run_id: str) -> list[int]:
        """The steps that have a histogram part, read from the artifact listing only."""
        run = self.run(run_id)
        return self.cached("parts", self.key(run), lambda: reader.histogram_steps(self.client, run_id))

    def histograms(self, run_id: str, steps: Sequence[int] | None = None) -> tuple[pd.DataFrame, list[str]]:
        """The histogram rows (step, kind, layer, edges, counts) of the parts at `steps` (default: all), each
        part downloaded once and kept; and a message for each part that could not be read (missing or corrupt),
        which the page shows instead of failing."""
        available = self.histogram_steps(run_id)
        wanted = available if steps is None else [s for s in steps if s in available]

        def part(step: int) -> pd.DataFrame | str:
            try:
                return self.cached("part", (run_id, step),
                                   lambda: reader.histogram_part_frame(self.uri, self.run(run_id), step))
            except DataError as err:
                return str(err)

        with ThreadPoolExecutor(max_workers=8) as pool:  # a remote store answers each in a round trip
            parts = list(pool.map(part, wanted))
        frames = [p for p in parts if isinstance(p, pd.DataFrame)]
        columns = ["step", "kind", "layer", "edges", "counts"]
        rows = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)
        return rows, [p for p in parts if isinstance(p, str)]

    def gradcheck(self, run_id: str) -> dict[str, Any] | None:
        """The run's gradient-check report (gradcheck/report.json), None when it has none."""
        run = self.run(run_id)
        return self.cached("gradcheck", self.key(run), lambda: reader.gradcheck_report(self.client, run))

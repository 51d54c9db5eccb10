"""How fast the dashboard paints a large store, cold and warm, measured side by side in one run (`make bench`).

The store: an embedded MLflow store (SQLite, in a temporary folder) seeded with ONE synthetic sweep of --runs
trials (500) as `fitlens sweep` lays it out (`tracking.layout`): a parent run (fitlens.kind = sweep, its params,
search_space.yaml) and trial runs (fitlens.sweep_id, mlflow.parentRunId, fitlens.point; the flattened run
config as params; train/dev loss and error, lr and epoch for 10 epochs; best/* and test/error; diagnostics
scalars of a 4-hidden-layer MLP for kinds weight, grad and act at --steps log-spaced snapshots). Every trial
records the statistics norm, std, nonfinite, frac_dead, frac_saturated and symmetry (--full-stats: every one
a real `economy` run records, ~2.5x the keys); the trial the layers page opens (the best one) records them all,
and has 10 histogram parts (Parquet, 32 bins) under diagnostics/. Values are synthetic but plausible (seeded).

Two pages are measured: the sweep page (/sweep/<parent>) and the layers page (/layers/<best trial>).

1. Server side, in this process: COLD is a fresh `dashboard.app.create_app(uri)` (a fresh `CachedReader`, nothing
   cached) rendering the page as its first paint does: `render_page` (what the route callback answers: the
   controls, the content with their values, and its digest); WARM is the same app's content callback again,
   `redraw` with the content sent (the cached path: what a control change costs; a live refresh that finds
   nothing new costs the same, less sending). Each includes serializing the result to JSON as Dash does.
   MLflow's own store objects (the SQLAlchemy engine) and imports survive between repeats, as in a server
   that has been up a while; a new process pays them once more (part 2 shows that).
2. Time to first paint in headless Chromium (Debian's chromium and chromedriver via Selenium, a 1400x1000
   window) against a real `fitlens dashboard` subprocess: from `driver.get(url)` until what the window shows
   is the page's content, complete: its text (the sweep page's table included) is there, no element has
   data-dash-is-loading='true', the route callback has answered (one request at load brings the controls and
   the content; the live refresh adds a call every 5 s, and one pending holds the page back, as it redraws
   it), and every figure in the window is drawn. Also measured: until every figure of the page is drawn,
   those below the window too (all drawn), and when the last of those callbacks answered, so the rest is the
   browser's own work (scripts, Plotly, drawing).
   COLD: the first visit after the server starts, from a fresh browser profile (Dash's scripts downloaded);
   WARM: the same browser loading the same URL again (a full reload, data from the server's cache). The
   server is restarted for every cold visit.

Each is repeated --repeats times (3); the table shows medians. Targets (the issue): 2 s to first paint cold,
300 ms for a warm callback. Prints a Markdown table and, with --json FILE, writes the numbers; --profile
prints where the cold server path spends its time (cProfile). The machine is shared: timings are noisy.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import math
import os
import pstats
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from mlflow.entities import Metric, Param, RunTag
from plotly.io.json import to_json_plotly

from analysis.gather import keep_sweep
from dashboard.app import create_app, redraw, render_page
from tracking.config import config_to_dict, flatten
from tracking.histograms import ARROW_SCHEMA, schema_document
from tracking.layout import (
    ARCH_TAG,
    BEST_RUN_TAG,
    DATASET_TAG,
    DIAGNOSTICS_DIR,
    KIND_SWEEP,
    KIND_TAG,
    M_TRAIN_TAG,
    PARENT_RUN_TAG,
    POINT_TAG,
    SCHEMA_FILE,
    SEARCH_SPACE_FILE,
    STUDY_TAG,
    SWEEP_TAG,
    TRIAL_TAG,
    diag_key,
    histogram_part,
)
from tracking.reader import search_trial_runs
from tracking.store import client_for, quiet_libraries
from tracking.sweep.space import tune_points
from tracking.sweep_config import dump_sweep, sweep_from_dict
from tracking.writer import experiment_id, write_trials

FITLENS = str(Path(sys.executable).parent / "fitlens")
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
TARGET_COLD_S = 2.0  # first paint, cold
TARGET_WARM_S = 0.3  # a warm callback

# The sweep: a 4-hidden-layer MLP on MNIST-1D, 10 epochs, the space of a realistic first (coarse) sweep.
SWEEP = {
    "name": "bench-dashboard",
    "base": {"model": {"arch": "mlp", "depth": 4, "width": 100},
             "data": {"name": "mnist1d", "reference_error": 0.04},
             "train": {"max_epochs": 10, "early_stopping": False, "threads": 1},
             "diagnostics": {"preset": "economy"}},
    "space": {"optim.lr": {"loguniform": [1.0e-4, 1.0e-1]}, "model.width": {"randint": [16, 256]},
              "reg.l2": {"loguniform": [1.0e-4, 10.0]}, "model.activation": {"choice": ["relu", "tanh"]}},
    "num_samples": 500,
}
EPOCHS = 10
STEPS_PER_EPOCH = 32  # 3200 training examples, batch 100
M_TRAIN = 3200
LAYERS = ("hidden.0.linear", "hidden.1.linear", "hidden.2.linear", "hidden.3.linear", "out")
KINDS = ("weight", "grad", "act")
BRIEF_STATS = ("norm", "std", "nonfinite", "frac_dead", "frac_saturated", "symmetry")
_DISTRIBUTION = ("mean", "std", "norm", "min", "max", "p01", "p05", "p25", "p50", "p75", "p95", "p99", "nonfinite")
FULL_STATS = {  # what an `economy` run records (tracking.stats.STAT_NAMES, without importing torch)
    "weight": (*_DISTRIBUTION, "frac_small", "symmetry"),
    "grad": (*_DISTRIBUTION, "symmetry"),
    "act": (*_DISTRIBUTION, "frac_dead", "frac_saturated"),
}
Z = {"p01": -2.326, "p05": -1.645, "p25": -0.674, "p50": 0.0, "p75": 0.674, "p95": 1.645, "p99": 2.326,
     "min": -3.7, "max": 3.7}
BINS = 32
HISTOGRAM_PARTS = 10
MAX_BATCH = 1000  # MLflow's log_batch limit (metrics, and entities in all)


# ---------------------------------------------------------------------------------------------------------
# the store


@dataclass
class Store:
    uri: str
    parent_id: str
    layers_trial_id: str
    runs: int
    snapshot_steps: list[int]
    full_stats: bool
    metric_points: int
    seed_s: float


def snapshot_steps(count: int) -> list[int]:
    """The economy preset's schedule: step 0, then 1, 2, 4, ... (log-spaced below every=500)."""
    return [0, *(2**k for k in range(count - 1))]


def _fan(layer: int, width: int) -> tuple[int, int]:
    fan_in = 40 if layer == 0 else width
    return fan_in, (10 if layer == len(LAYERS) - 1 else width)


def _stat_value(stat: str, mean: float, std: float, size: int, extra: dict[str, float]) -> float:
    if stat == "mean":
        return mean
    if stat == "std":
        return std
    if stat == "norm":
        return math.sqrt(size * (mean * mean + std * std))
    if stat in Z:
        return mean + Z[stat] * std
    if stat == "nonfinite":
        return 0.0
    return extra.get(stat, 0.0)


def diagnostics_metrics(rng: np.random.Generator, trial: dict[str, Any], steps: list[int], stats: Any,
                        start_ms: int) -> list[Metric]:
    """The diagnostics scalars of one trial at `steps`: `stats` is a tuple (every kind) or kind -> tuple."""
    width, lr, tanh = trial["model.width"], trial["optim.lr"], trial["model.activation"] == "tanh"
    points = []
    for li, layer in enumerate(LAYERS):
        fan_in, fan_out = _fan(li, width)
        init_std = math.sqrt((1.0 if tanh else 2.0) / fan_in)
        dead0 = 0.0 if tanh else float(rng.uniform(0.3, 0.5))
        for si, step in enumerate(steps):
            progress = si / max(len(steps) - 1, 1)
            grow = 1.0 + 3.0 * lr * progress * step / 10
            noise = float(rng.lognormal(0.0, 0.05))
            moments = {
                "weight": (0.0, init_std * grow * noise, fan_in * fan_out),
                "grad": (0.0, 0.05 * noise * math.exp(-2 * progress) / math.sqrt(fan_in), fan_in * fan_out),
                "act": ((0.0, 0.6 * noise, 100 * fan_out) if tanh else (0.55 * noise, 0.8 * noise, 100 * fan_out)),
            }
            extra = {"frac_dead": 0.0 if tanh else min(0.95, dead0 + 0.1 * li * progress),
                     "frac_saturated": float(rng.uniform(0.0, 0.05) * (1 + li)) if tanh else 0.0,
                     "symmetry": float(rng.uniform(0.0, 0.02)),
                     "frac_small": float(rng.uniform(0.005, 0.02))}
            for kind in KINDS:
                mean, std, size = moments[kind]
                for stat in stats[kind] if isinstance(stats, dict) else stats:
                    value = _stat_value(stat, mean, std, size, extra)
                    points.append(Metric(diag_key(kind, layer, stat), value, start_ms + step * 50, step))
    return points


def curve_metrics(rng: np.random.Generator, trial: dict[str, Any], start_ms: int) -> tuple[list[Metric], float]:
    """train/dev loss and error, lr and epoch per epoch; best/* and test/error. Returns them and best dev error."""
    lr, width, l2 = trial["optim.lr"], trial["model.width"], trial["reg.l2"]
    off = (math.log10(lr) - math.log10(3e-3)) ** 2  # 0 at the best learning rate, ~2.3 at the ends
    final_train = 0.02 + 0.06 * off + 0.3 * l2 / (l2 + 1) + 0.03 * math.sqrt(64 / width)
    final_train += 0.02 * (trial["model.activation"] == "tanh") + float(rng.normal(0, 0.01))
    final_train = float(np.clip(final_train, 0.005, 0.85))
    gap = 0.03 + 0.08 * (width / 256) / (1 + 20 * l2) + abs(float(rng.normal(0, 0.01)))
    tau = 1.5 + 2 * off
    points, dev_errors, train_errors = [], [], []
    for epoch in range(EPOCHS):
        step = (epoch + 1) * STEPS_PER_EPOCH
        left = math.exp(-(epoch + 1) / tau)
        train = float(np.clip(final_train + (0.9 - final_train) * left + rng.normal(0, 0.005), 0, 1))
        dev = float(np.clip(train + gap * (1 - left) + rng.normal(0, 0.01), 0, 1))
        train_errors.append(train)
        dev_errors.append(dev)
        ms = start_ms + step * 50
        values = {"train/error": train, "dev/error": dev, "train/loss": 2.3 * train + 0.05,
                  "dev/loss": 2.3 * dev + 0.08, "lr": lr, "epoch": float(epoch)}
        points += [Metric(key, value, ms, step) for key, value in values.items()]
    best = int(np.argmin(dev_errors))
    end_ms, end_step = start_ms + EPOCHS * STEPS_PER_EPOCH * 50, EPOCHS * STEPS_PER_EPOCH
    finals = {"best/train/error": train_errors[best], "best/dev/error": dev_errors[best],
              "best/train/loss": 2.3 * train_errors[best] + 0.05, "best/dev/loss": 2.3 * dev_errors[best] + 0.08,
              "test/error": float(np.clip(dev_errors[best] + rng.normal(0, 0.01), 0, 1))}
    points += [Metric(key, value, end_ms, end_step) for key, value in finals.items()]
    return points, dev_errors[best]


def histogram_table(rng: np.random.Generator, step: int, tanh: bool) -> pa.Table:
    """One histogram part: a row per (kind, layer), BINS bins."""
    rows: dict[str, list] = {"step": [], "kind": [], "layer": [], "edges": [], "counts": []}
    for kind in KINDS:
        for li, layer in enumerate(LAYERS):
            scale = {"weight": 0.15, "grad": 0.01, "act": 0.8}[kind] * float(rng.lognormal(0, 0.1)) / (1 + li / 4)
            size = 4000 if kind == "act" else 10000
            if kind == "act":
                values = np.tanh(rng.normal(0, 1.2, size)) if tanh else np.maximum(rng.normal(0, scale, size), 0)
            else:
                values = rng.normal(0, scale, size)
            counts, edges = np.histogram(values, bins=BINS)
            for column, value in (("step", step), ("kind", kind), ("layer", layer), ("edges", edges),
                                  ("counts", counts.astype(np.int64))):
                rows[column].append(value)
    return pa.table(rows, schema=ARROW_SCHEMA)


def _log(client: Any, run_id: str, metrics: list[Metric], params: list[Param]) -> None:
    """log_batch in chunks MLflow accepts: params (<= 100) ride with the first chunk of metrics."""
    first = MAX_BATCH - len(params)
    client.log_batch(run_id, metrics=metrics[:first], params=params)
    for start in range(first, len(metrics), MAX_BATCH):
        client.log_batch(run_id, metrics=metrics[start:start + MAX_BATCH])


def _params(values: dict[str, Any]) -> list[Param]:
    return [Param(key, "null" if value is None else str(value)) for key, value in values.items()]


def seed_store(folder: Path, runs: int, steps: int, full_stats: bool) -> Store:
    """One sweep of `runs` trials in the embedded store in `folder` (see the module docstring)."""
    start = time.perf_counter()
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    client = client_for(uri)
    rng = np.random.default_rng(0)
    sweep = sweep_from_dict({**SWEEP, "num_samples": runs})
    exp = experiment_id(client, sweep.name)
    base_params = flatten(config_to_dict(sweep.base))
    t0 = int(time.time() * 1000) - (runs + 1) * 60_000
    parent = client.create_run(exp, start_time=t0, run_name=f"{sweep.name}-sweep-000000",
                               tags={KIND_TAG: KIND_SWEEP, STUDY_TAG: sweep.name}).info.run_id
    parent_params = {"search": sweep.search, "scheduler": sweep.scheduler, "num_samples": runs, "trials": runs,
                     "metric": sweep.metric, "max_concurrent": sweep.max_concurrent,
                     **{f"space.{key}": json.dumps(d.to_dict()) for key, d in sweep.space.items()}}
    client.log_batch(parent, params=_params(parent_params))
    client.log_text(parent, dump_sweep(sweep), SEARCH_SPACE_FILE)
    diag_steps = snapshot_steps(steps)
    best = (math.inf, "", {})
    points_total = 0
    for i, point in enumerate(tune_points(sweep, runs, seed=0)):
        trial_id = f"{i:05d}"
        start_ms = t0 + (i + 1) * 60_000
        tags = {SWEEP_TAG: parent, PARENT_RUN_TAG: parent, TRIAL_TAG: trial_id, POINT_TAG: json.dumps(point),
                DATASET_TAG: "mnist1d", ARCH_TAG: "mlp", M_TRAIN_TAG: str(M_TRAIN)}
        run_id = client.create_run(exp, start_time=start_ms, tags=tags,
                                   run_name=f"{sweep.name}-{trial_id}").info.run_id
        curves, dev = curve_metrics(rng, point, start_ms)
        diag = diagnostics_metrics(rng, point, diag_steps, FULL_STATS if full_stats else BRIEF_STATS, start_ms)
        _log(client, run_id, curves + diag, _params({**base_params, **point, "run_name": f"{sweep.name}-{trial_id}"}))
        client.set_terminated(run_id, "FINISHED", end_time=start_ms + 30_000)
        points_total += len(curves) + len(diag)
        if dev < best[0]:
            best = (dev, run_id, point)
    _, best_id, best_point = best
    if not full_stats:  # the layers page's trial records every statistic, as a real run does
        missing = {kind: tuple(s for s in FULL_STATS[kind] if s not in BRIEF_STATS) for kind in KINDS}
        more = diagnostics_metrics(np.random.default_rng(1), best_point, diag_steps, missing, t0)
        _log(client, best_id, more, [])
        points_total += len(more)
    with tempfile.TemporaryDirectory(prefix="fitlens-bench-parts-") as tmp:
        parts = Path(tmp)
        (parts / SCHEMA_FILE).write_text(json.dumps(schema_document(BINS, KINDS), indent=2))
        for step in snapshot_steps(HISTOGRAM_PARTS):
            pq.write_table(histogram_table(rng, step, best_point["model.activation"] == "tanh"),
                           parts / histogram_part(step))
        client.log_artifacts(best_id, str(parts), DIAGNOSTICS_DIR)
    client.log_batch(parent, metrics=[Metric(f"best/{sweep.metric}", best[0], t0, 0)],
                     tags=[RunTag(BEST_RUN_TAG, best_id)])
    client.set_terminated(parent, "FINISHED", end_time=t0 + (runs + 1) * 60_000)
    finished = client.get_run(parent)
    write_trials(client, finished, search_trial_runs(client, finished))  # as `fitlens sweep` does as it finishes
    keep_sweep(uri, parent)
    return Store(uri, parent, best_id, runs, diag_steps, full_stats, points_total, time.perf_counter() - start)


# ---------------------------------------------------------------------------------------------------------
# 1. server side

Page = tuple[str, str, tuple[str, ...]]  # name, path, the texts that show its content (the sweep's: its table too)


def _check(page: str, text: str, expect: tuple[str, ...]) -> None:
    if any(part not in text for part in expect):
        raise SystemExit(f"{page}: the rendered page lacks one of {expect!r}: {text[:2000]}")
    for bad in ("this view failed", "could not be computed", "could not be read"):
        if bad in text:
            print(f"warning: {page} says {bad!r}", file=sys.stderr)


def render_cold(app: Any, path: str) -> tuple[dict[str, float], dict[str, Any], str]:
    """A fresh app's first paint, as its route callback answers: the controls, the content with their values and
    its digest, serialized."""
    t0 = time.perf_counter()
    answer = render_page(app.reader, path, "")
    text = to_json_plotly(answer)
    return {"total_s": time.perf_counter() - t0}, answer[2]["values"], text


def render_warm(app: Any, path: str, values: dict[str, Any]) -> tuple[float, str]:
    """The content callback again, its content sent (a control change; the page has drawn nothing like it)."""
    t0 = time.perf_counter()
    text = to_json_plotly(redraw(app.reader, path, "", values, None, refresh=True))
    return time.perf_counter() - t0, text


def server_times(store: Store, pages: list[Page], repeats: int) -> dict[str, Any]:
    out: dict[str, Any] = {name: {"cold": [], "warm": []} for name, _, _ in pages}
    for _ in range(repeats):
        for name, path, expect in pages:
            app = create_app(store.uri)
            cold, values, text = render_cold(app, path)
            _check(name, text, expect)
            warm, text = render_warm(app, path, values)
            _check(name, text, expect)
            out[name]["cold"].append(cold["total_s"])
            out[name]["warm"].append(warm)
    return out


def profile_cold(store: Store, pages: list[Page], top: int) -> str:
    """cProfile of one cold render of each page: the `top` entries by cumulative and by own time."""
    report = io.StringIO()
    for name, path, _ in pages:
        app = create_app(store.uri)
        profiler = cProfile.Profile()
        profiler.enable()
        render_cold(app, path)
        profiler.disable()
        for order in ("cumulative", "tottime"):
            report.write(f"\n### cold {name} page, by {order} time\n\n```\n")
            stats = pstats.Stats(profiler, stream=report).strip_dirs().sort_stats(order)
            stats.print_stats(top)
            report.write("```\n")
    return report.getvalue()


# ---------------------------------------------------------------------------------------------------------
# 2. first paint in Chromium

# Shown: the content's text (every string of `expect`) is there. Settled: shown, no callback pending, and the route
# callback (controls and content) has answered; a live refresh (every 5 s) pending delays it, as what the page
# shows is then being redrawn. Painted: settled, and every figure the window shows is drawn. Drawn: settled, and
# every figure of the page is drawn. Figures are drawn top to bottom, so one still empty in the window is not
# pushed out of it by those above.
READY_JS = """
const [expect, updates_at_load] = arguments;
const graphs = Array.from(document.querySelectorAll('.dash-graph'));
const updates = performance.getEntriesByType('resource').filter(e => e.name.includes('_dash-update-component'));
const text = document.body ? document.body.innerText : '';
const shown = expect.every(part => text.includes(part));
const settled = shown && graphs.length > 0 && updates.length >= updates_at_load
  && document.querySelectorAll("[data-dash-is-loading='true']").length === 0;
const drawn = g => g.querySelector('.main-svg') !== null;
const inWindow = g => { const box = g.getBoundingClientRect(); return box.bottom > 0 && box.top < window.innerHeight; };
return {
  shown: shown,
  painted: settled && graphs.filter(inWindow).every(drawn),
  drawn: settled && graphs.every(drawn),
  callbacks_done_s: Math.max(0, ...updates.map(e => e.responseEnd)) / 1000,
  callbacks: updates.length,
};
"""
UPDATES_AT_LOAD = 1
POLL_S = 0.025


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def dashboard_server(uri: str, log: Path) -> Iterator[str]:
    """`fitlens dashboard` over `uri` on a free port, until the block ends; yields its base URL."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    with log.open("w") as out:
        server = subprocess.Popen([FITLENS, "dashboard", "--port", str(port), "--tracking-uri", uri], env=env,
                                  stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"fitlens dashboard did not start:\n{log.read_text()[-3000:]}") from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@contextmanager
def browser() -> Iterator[Any]:
    """Headless Chromium with a fresh profile (an empty cache)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1000"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def first_paint(driver: Any, url: str, expect: tuple[str, ...], timeout: float = 300.0) -> dict[str, float]:
    """Seconds from driver.get(url) until the window shows the page's content, complete (READY_JS "painted");
    until every figure of the page is drawn ("drawn"); until its text first showed (figures perhaps still
    drawing); when its last callback had answered (from the navigation's start: the rest is the browser's own
    work, scripts and drawing); how many callbacks it took."""
    start = time.perf_counter()
    driver.get(url)
    found: dict[str, float] = {}
    while time.perf_counter() - start < timeout:
        state = driver.execute_script(READY_JS, list(expect), UPDATES_AT_LOAD)
        for when in ("shown", "painted"):
            if state[when]:
                found.setdefault(when, time.perf_counter() - start)
        if state["drawn"]:
            found.setdefault("painted", time.perf_counter() - start)
            return {"paint_s": found["painted"], "drawn_s": time.perf_counter() - start, "shown_s": found["shown"],
                    "callbacks_done_s": state["callbacks_done_s"], "callbacks": state["callbacks"]}
        time.sleep(POLL_S)
    text = driver.find_element("tag name", "body").text
    raise SystemExit(f"{url}: {expect!r} never showed with every figure drawn within {timeout:.0f} s; the page "
                     f"says:\n{text[:2000]}")


def browser_times(store: Store, pages: list[Page], repeats: int, folder: Path) -> dict[str, Any]:
    out: dict[str, Any] = {name: {"visits": []} for name, _, _ in pages}
    for _ in range(repeats):
        for name, path, expect in pages:
            with dashboard_server(store.uri, folder / "dashboard.log") as base, browser() as driver:
                for visit in ("cold", "warm"):
                    out[name]["visits"].append({"visit": visit, **first_paint(driver, base + path, expect)})
    return out


# ---------------------------------------------------------------------------------------------------------


def _timed(what: str, call: Callable[[], Any]) -> tuple[Any, float]:
    print(f"{what} ...", file=sys.stderr, flush=True)
    start = time.perf_counter()
    value = call()
    return value, time.perf_counter() - start


def _cell(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds:.2f}"


def _met(seconds: float | None, target: float) -> str:
    if seconds is None:
        return "n/a"
    return "yes" if seconds <= target else f"no (+{seconds - target:.2f} s, {seconds / target:.1f}x)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=500, help="trials of the sweep")
    parser.add_argument("--steps", type=int, default=10, help="diagnostics snapshots per trial")
    parser.add_argument("--full-stats", action="store_true",
                        help="every trial records every statistic of the economy preset (not only six)")
    parser.add_argument("--repeats", type=int, default=3, help="repeats of each measurement (medians shown)")
    parser.add_argument("--no-browser", action="store_true", help="skip the first-paint measurement in Chromium")
    parser.add_argument("--profile", type=int, metavar="N", default=0,
                        help="also print the N top entries of a cProfile of each page's cold server path")
    parser.add_argument("--json", metavar="FILE", help="also write the numbers here")
    args = parser.parse_args()
    quiet_libraries()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fitlens-bench-dashboard-") as tmp:
        folder = Path(tmp)
        store, _ = _timed(f"seeding {args.runs} runs", lambda: seed_store(folder, args.runs, args.steps,
                                                                          args.full_stats))
        print(f"seeded {store.runs} trials + 1 parent, {store.metric_points} metric points, snapshots at steps "
              f"{store.snapshot_steps}{' (every statistic)' if store.full_stats else ''}, in {store.seed_s:.0f} s",
              file=sys.stderr, flush=True)
        pages: list[Page] = [("sweep", f"/sweep/{store.parent_id}", ("Hyperparameter importance", "health flags")),
                             ("layers", f"/layers/{store.layers_trial_id}", ("Depth profile at step",))]
        server, _ = _timed("server side", lambda: server_times(store, pages, args.repeats))
        have_browser = Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists() and shutil.which(FITLENS)
        paint = None
        if args.no_browser or not have_browser:
            print("first paint skipped" + ("" if args.no_browser else ": no chromium/chromedriver (make browser)"),
                  file=sys.stderr)
        else:
            paint, _ = _timed("first paint in Chromium", lambda: browser_times(store, pages, args.repeats, folder))
        profile = profile_cold(store, pages, args.profile) if args.profile else ""

    results: dict[str, Any] = {"store": asdict(store), "repeats": args.repeats, "cores": len(os.sched_getaffinity(0)),
                               "targets": {"cold_s": TARGET_COLD_S, "warm_callback_s": TARGET_WARM_S}, "pages": {}}
    for name, path, _ in pages:
        visits = paint[name]["visits"] if paint else []

        def median(key: str, visit: str, visits: list[dict[str, Any]] = visits) -> float | None:
            return statistics.median(v[key] for v in visits if v["visit"] == visit) if visits else None

        row = {"path": path.split("/")[1], "server": server[name], "paint": paint[name] if paint else None,
               "cold_server_s": statistics.median(server[name]["cold"]),
               "warm_server_s": statistics.median(server[name]["warm"]),
               "first_cold_server_s": server[name]["cold"][0],
               "cold_callbacks": max(v["callbacks"] for v in visits) if visits else None,
               **{f"{visit}_{key}": median(key, visit) for visit in ("cold", "warm")
                  for key in ("paint_s", "drawn_s", "shown_s", "callbacks_done_s")}}
        results["pages"][name] = row
    results["total_s"] = time.perf_counter() - started

    print(f"Dashboard over one sweep of {store.runs} trials ({store.metric_points} metric points; diagnostics at "
          f"{len(store.snapshot_steps)} snapshots), {results['cores']} CPU cores, median of {args.repeats}; "
          f"seeding took {store.seed_s:.0f} s\n")
    print("| page | cold server (s) | warm server (s) | cold first paint (s) | warm first paint (s) | "
          "cold all drawn (s) | warm all drawn (s) | cold first paint <= 2 s | warm callback <= 0.3 s |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |")
    for name, row in results["pages"].items():
        cold = row["cold_paint_s"] if row["cold_paint_s"] is not None else row["cold_server_s"]
        print(f"| {name} (/{row['path']}/...) | {_cell(row['cold_server_s'])} | {_cell(row['warm_server_s'])} | "
              f"{_cell(row['cold_paint_s'])} | {_cell(row['warm_paint_s'])} | {_cell(row['cold_drawn_s'])} | "
              f"{_cell(row['warm_drawn_s'])} | {_met(cold, TARGET_COLD_S)} | "
              f"{_met(row['warm_server_s'], TARGET_WARM_S)} |")
    print("\ncold server: a fresh CachedReader's render_page (+ JSON); warm server: the content callback "
          "again on the same app, its content sent (a control change). First paint: headless Chromium (1400x1000) "
          "from driver.get until the window shows the page's content complete (its text and table, nothing "
          "loading, every figure in the window drawn); all drawn: until every figure of the page is drawn, "
          "below the window too. Cold = first visit after a server start (fresh browser profile), warm = the "
          "same URL reloaded. The cold target is judged on the first paint (on the server time without a "
          f"browser). Total run time {results['total_s']:.0f} s.\n")
    for name, row in results["pages"].items():
        line = f"- {name}: the first cold render in this process took {row['first_cold_server_s']:.2f} s"
        if row["cold_paint_s"] is not None:
            line += (f"; its text showed at {row['cold_shown_s']:.2f} s cold and {row['warm_shown_s']:.2f} s warm "
                     f"(figures perhaps still drawing)"
                     f"; in the browser its callbacks had answered at {row['cold_callbacks_done_s']:.2f} s cold "
                     f"and {row['warm_callbacks_done_s']:.2f} s warm (the rest of the first paint is the browser: "
                     f"Dash's scripts, Plotly, drawing); a cold load made up to {row['cold_callbacks']} callback "
                     f"requests ({UPDATES_AT_LOAD} without live refreshes)")
        print(line)
    if profile:
        print("\n## Where the cold server path spends its time (cProfile)\n" + profile)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

"""What running under Ray Tune costs, and what ASHA buys, measured side by side in one run (`make bench`).

1. Overhead of a trial: the same fit (the lr study's base config at one learning rate) as
   `fitlens train` and as a one-trial `fitlens sweep`, both as a user runs them (fresh processes,
   embedded store), alternating. Wall-clock of the command, and the fit itself as MLflow timed the
   run (start to end), which is where the per-epoch checkpoint and report to Tune show.
2. ASHA against FIFO on the lr study (random search, the same seeded draws for both, same budget
   of trials and epochs): total epochs trained, wall-clock of the sweep, and the epochs and seconds
   each needed until some trial first reached the same dev error (the worse of the two sweeps' best,
   so both reach it).

Prints Markdown tables (the README holds a copy) and, with --json FILE, writes the numbers.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from mlflow.tracking import MlflowClient

FITLENS = str(Path(sys.executable).parent / "fitlens")


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS")}


def _run(args: list[str], cwd: Path) -> tuple[float, dict[str, Any]]:
    start = time.perf_counter()
    proc = subprocess.run([FITLENS, *args, "--json"], cwd=cwd, env=_env(), capture_output=True, text=True,
                          check=False)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"fitlens {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return wall, json.loads(proc.stdout.strip().splitlines()[-1])


def _fit_seconds(folder: Path, run_id: str) -> float:
    info = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}").get_run(run_id).info
    return (info.end_time - info.start_time) / 1000


def trial_overhead(epochs: int, repeats: int) -> dict[str, float]:
    base = {"model": {"arch": "mlp", "depth": 2, "width": 100}, "optim": {"name": "adam", "lr": 3e-3},
            "train": {"max_epochs": epochs, "early_stopping": False, "threads": 1},
            "diagnostics": {"preset": "economy"}}
    sweep = {"name": "overhead", "base": base, "space": {"optim.lr": {"grid": [3e-3]}}, "search": "grid",
             "num_samples": 1, "max_concurrent": 1}
    times: dict[str, list[float]] = {"train_wall": [], "sweep_wall": [], "train_fit": [], "sweep_fit": []}
    for _ in range(repeats):
        for kind in ("train", "sweep"):
            with tempfile.TemporaryDirectory(prefix=f"fitlens-bench-{kind}-") as tmp:
                folder = Path(tmp)
                if kind == "train":
                    (folder / "c.yaml").write_text(yaml.safe_dump({"experiment": "overhead", **base}))
                    wall, summary = _run(["train", "--config", "c.yaml"], folder)
                    run_id = summary["run_id"]
                else:
                    (folder / "s.yaml").write_text(yaml.safe_dump(sweep))
                    wall, summary = _run(["sweep", "--config", "s.yaml"], folder)
                    run_id = summary["trial_run_ids"][0]
                times[f"{kind}_wall"].append(wall)
                times[f"{kind}_fit"].append(_fit_seconds(folder, run_id))
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"epochs": epochs, **{f"{k}_s": v for k, v in med.items()},
            "wall_overhead_s": med["sweep_wall"] - med["train_wall"],
            "fit_overhead": med["sweep_fit"] / med["train_fit"] - 1}


def _curves(folder: Path, parent: str) -> list[tuple[float, str, float]]:
    """(timestamp, trial, dev/error) of every epoch every trial of the sweep reported, in time order."""
    rows = []
    for progress in (folder / "sweeps" / parent).glob("*/progress.csv"):
        with progress.open() as f:
            for row in csv.DictReader(f):
                rows.append((float(row["timestamp"]), row["trial_id"], float(row["dev/error"])))
    return sorted(rows)


def asha_against_fifo(num_samples: int, epochs: int) -> dict[str, Any]:
    out: dict[str, Any] = {"num_samples": num_samples, "epochs": epochs}
    curves = {}
    for scheduler in ("fifo", "asha"):
        with tempfile.TemporaryDirectory(prefix=f"fitlens-bench-{scheduler}-") as tmp:
            folder = Path(tmp)
            start = time.time()
            wall, summary = _run(["sweep", "--study", "lr", f"scheduler={scheduler}", f"num_samples={num_samples}",
                                  f"base.train.max_epochs={epochs}", "grace_period=2", "reduction_factor=3"], folder)
            curves[scheduler] = (start, _curves(folder, summary["parent_run_id"]))
            out[scheduler] = {"wall_s": wall, "epochs_total": len(curves[scheduler][1]),
                              "best_dev_error": summary["best_value"],
                              "stopped_early": sum(bool(t["stopped_early"]) for t in summary["trials"])}
    target = max(out["fifo"]["best_dev_error"], out["asha"]["best_dev_error"])
    out["target_dev_error"] = target
    for scheduler, (start, rows) in curves.items():
        hit = next(i for i, row in enumerate(rows) if row[2] <= target + 1e-12)
        out[scheduler] |= {"epochs_to_target": hit + 1, "seconds_to_target": rows[hit][0] - start}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15, help="epochs of the overhead fit and of each trial")
    parser.add_argument("--repeats", type=int, default=2, help="commands per condition for the overhead")
    parser.add_argument("--samples", type=int, default=8, help="trials per sweep for ASHA against FIFO")
    parser.add_argument("--json", metavar="FILE", help="also write the numbers here")
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    overhead = trial_overhead(args.epochs, args.repeats)
    schedulers = asha_against_fifo(args.samples, args.epochs)
    print(f"Sweeps on {cores} CPU cores (a local Ray cluster started by each command)\n")
    print(f"| the lr study's MLP, {overhead['epochs']} epochs | `fitlens train` | one-trial `fitlens sweep` | "
          "difference |")
    print("| --- | ---: | ---: | ---: |")
    print(f"| command, wall-clock (s) | {overhead['train_wall_s']:.1f} | {overhead['sweep_wall_s']:.1f} | "
          f"+{overhead['wall_overhead_s']:.1f} s |")
    print(f"| the fit, as MLflow timed the run (s) | {overhead['train_fit_s']:.1f} | {overhead['sweep_fit_s']:.1f} | "
          f"{100 * overhead['fit_overhead']:+.1f}% |")
    print(f"\nlr study, {schedulers['num_samples']} random trials of up to {schedulers['epochs']} epochs, "
          f"the same seeded draws; target dev error {100 * schedulers['target_dev_error']:.2f}%\n")
    print("| scheduler | epochs trained | sweep wall-clock (s) | best dev error | stopped early | "
          "epochs to target | seconds to target |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name in ("fifo", "asha"):
        s = schedulers[name]
        print(f"| {name.upper()} | {s['epochs_total']} | {s['wall_s']:.0f} | {100 * s['best_dev_error']:.2f}% | "
              f"{s['stopped_early']} | {s['epochs_to_target']} | {s['seconds_to_target']:.0f} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"overhead": overhead, "schedulers": schedulers}, indent=2))


if __name__ == "__main__":
    main()

"""How right the diagnosis is on faults it was not built around: train the fault zoo (`benchmarks/faults/zoo.py`),
diagnose each run as `fitlens report` does, and score it.

    make bench-diagnosis                       # the 45 setups, about 2 minutes on 2 cores
    .venv/bin/python benchmarks/bench_diagnosis.py --only "zeros init, tanh" --show

Scores, per cause: recall (of the setups that have the fault, those whose findings name it, at any severity but
info), precision (of the setups whose findings name it as an error or warning, those where it is the fault or a
finding allowed beside it); top-1 (the first finding is one of the setup's causes); and the error-severity
findings on healthy setups (the goal: none). A fault fitlens cannot tell from what it records is listed with why,
and left out of the scores.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `benchmarks.faults.bugs` by import path

from analysis.gather import gather_report  # noqa: E402
from benchmarks.faults.zoo import FAST, Setup, overrides, setups, write_tables  # noqa: E402
from tracking.config import load_config  # noqa: E402
from tracking.store import quiet_libraries  # noqa: E402
from tracking.train import train  # noqa: E402

# What a healthy run may be told, as a warning: how it fit, not that it is broken.
HEALTHY_ALLOWED = ("high_bias", "high_variance", "overtrained", "undertrained", "label_noise", "minority_class",
                   "good_fit", "plateau")


@dataclass
class Result:
    setup: Setup
    run_id: str
    primary: str | None
    findings: list[dict[str, Any]]
    seconds: float

    @property
    def found(self) -> set[str]:
        """The causes named at error or warning severity."""
        return {f["cause"] for f in self.findings if f["severity"] != "info"}

    @property
    def errors(self) -> list[str]:
        return [f["cause"] for f in self.findings if f["severity"] == "error"]

    @property
    def allowed(self) -> set[str]:
        return set(self.setup.causes) | set(self.setup.also) | (set(HEALTHY_ALLOWED) if self.setup.healthy else set())


def run_setup(setup: Setup, index: int, work: Path, uri: str) -> Result:
    """Train one setup into its own experiment (its diagnosis compares it with nothing else) and diagnose it."""
    start = time.perf_counter()
    cfg = load_config(None, [*overrides(setup, work), f"experiment=zoo-{index:02d}"])
    summary = train(cfg, uri=uri)
    report = gather_report(summary["run_id"], uri)
    return Result(setup, summary["run_id"], report["primary_cause"], report["findings"], time.perf_counter() - start)


def score(results: Sequence[Result]) -> dict[str, Any]:
    """Per cause precision and recall, top-1 accuracy, and error findings on healthy setups (the undetectable
    faults left out)."""
    results = [r for r in results if not r.setup.undetectable]
    faults = [r for r in results if r.setup.causes]
    healthy = [r for r in results if r.setup.healthy]
    causes = sorted({c for r in faults for c in r.setup.causes} | {c for r in results for c in r.found})
    per_cause = {}
    for cause in causes:
        having = [r for r in faults if cause in r.setup.causes]
        named = [r for r in results if cause in r.found]
        hits = [r for r in having if cause in r.found or r.primary == cause]
        right = [r for r in named if cause in r.allowed]
        per_cause[cause] = {"setups": len(having), "found": len(hits), "named": len(named), "right": len(right),
                            "recall": len(hits) / len(having) if having else None,
                            "precision": len(right) / len(named) if named else None}
    top1 = [r for r in faults if r.primary in r.setup.causes]
    return {"per_cause": per_cause, "faults": len(faults), "top1": len(top1) / len(faults) if faults else None,
            "healthy": len(healthy), "healthy_with_errors": {r.setup.name: r.errors for r in healthy if r.errors}}


def table(results: Sequence[Result], scores: dict[str, Any]) -> str:
    lines = ["| setup | expected | first finding | other findings (error / warning) | right |",
             "| --- | --- | --- | --- | --- |"]
    for r in results:
        if r.setup.undetectable:
            continue
        expected = ", ".join(r.setup.causes) or "healthy: no error"
        others = ", ".join(f"{f['cause']} ({f['severity'][0]})" for f in r.findings[1:] if f["severity"] != "info")
        ok = (r.primary in r.setup.causes) if r.setup.causes else not r.errors
        lines.append(f"| {r.setup.name} | {expected} | {r.primary or '-'} | {others or '-'} "
                     f"| {'yes' if ok else 'NO'} |")
    lines += ["", "| cause | setups with it | recall | named (error / warning) | precision |",
              "| --- | ---: | ---: | ---: | ---: |"]
    for cause, s in scores["per_cause"].items():
        recall = "-" if s["recall"] is None else f"{s['found']}/{s['setups']} = {s['recall']:.0%}"
        precision = "-" if s["precision"] is None else f"{s['right']}/{s['named']} = {s['precision']:.0%}"
        lines.append(f"| {cause} | {s['setups']} | {recall} | {s['named']} | {precision} |")
    top1 = scores["top1"]
    sick = scores["healthy_with_errors"]
    lines += ["", f"top-1 (the first finding is the fault): {0 if top1 is None else top1:.0%} of {scores['faults']} "
                  f"faults; healthy setups with an error-severity finding: {len(sick)} of {scores['healthy']}"
                  + (f" ({sick})" if sick else "")]
    undetectable = [r.setup for r in results if r.setup.undetectable]
    if undetectable:
        lines += ["", "Not scored, not detectable from what fitlens records:"]
        lines += [f"- {s.name}: {s.undetectable}" for s in undetectable]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", metavar="NAME", help="a setup's name (repeatable)")
    parser.add_argument("--fast", action="store_true", help="the subset `make test` trains")
    parser.add_argument("--held-out", action="store_true", help="the held-out setups (not tuned on), scored apart")
    parser.add_argument("--show", action="store_true", help="print each run's findings as it is diagnosed")
    parser.add_argument("--json", metavar="FILE", help="also write the results here")
    args = parser.parse_args(argv)
    quiet_libraries()
    names = tuple(args.only) if args.only else (FAST if args.fast else None)
    chosen = setups(names, held_out=args.held_out)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fitlens-zoo-") as tmp:
        work = Path(tmp)
        write_tables(work)
        uri = f"sqlite:///{work / 'mlflow.db'}"
        results = []
        for i, setup in enumerate(chosen):
            result = run_setup(setup, i, work, uri)
            results.append(result)
            print(f"[{i + 1}/{len(chosen)}] {setup.name}: {result.primary} ({result.seconds:.1f} s)", flush=True)
            if args.show:
                for f in result.findings:
                    print(f"    [{f['severity']}] {f['cause']}: {f['summary']}")
    scores = score(results)
    wall = time.perf_counter() - start
    print(f"\nThe fault zoo: {len(results)} setups trained and diagnosed in {wall:.0f} s (2 CPU cores)\n")
    print(table(results, scores))
    if args.json:
        Path(args.json).write_text(json.dumps({"scores": scores, "wall_s": wall, "results": [
            {"setup": r.setup.name, "causes": r.setup.causes, "primary": r.primary, "findings": r.findings}
            for r in results]}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())

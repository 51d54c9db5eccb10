"""The `fitlens` command line."""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from typing import Any

from lightning_modules.config import ConfigError
from tracking.signals import Terminated


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `fitlens` console script; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return args.handler(args)
    except ConfigError as err:
        # A user error: the message names the field, the value and what is allowed; no traceback.
        print(f"fitlens: config error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fitlens: interrupted; the run is marked KILLED", file=sys.stderr)
        return 130
    except Terminated:
        print("fitlens: terminated (SIGTERM); the run is flushed and marked KILLED", file=sys.stderr)
        return 143


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fitlens", description="Training diagnostics for deep networks.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    train = commands.add_parser(
        "train", help="run one fit and record it in MLflow",
        description="Run one fit and record it as one MLflow run. Without --config the default config "
        "(an MLP on MNIST-1D) is used; overrides look like model.depth=6 optim.lr=3e-4.",
    )
    train.add_argument("--config", metavar="FILE", help="a YAML run config")
    train.add_argument("--tracking-uri", metavar="URI",
                       help="MLflow tracking URI (default: MLFLOW_TRACKING_URI, else ./mlflow.db)")
    train.add_argument("--json", action="store_true", help="print the summary as one JSON object, last line")
    train.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted config overrides")
    train.set_defaults(handler=_train)
    _add_gradcheck_parser(commands)
    _add_studies_parser(commands)
    return parser


def _train(args: argparse.Namespace) -> int:
    from tracking.config import load_config

    cfg = load_config(args.config, args.overrides)  # fail on bad input before importing the heavy parts
    from tracking.train import train

    summary = train(cfg, uri=args.tracking_uri, progress=not args.json and sys.stderr.isatty())
    if args.json:
        print(json.dumps(_json_safe(summary)))
    else:
        print(_describe(summary))
    return 0


def _describe(summary: dict[str, Any]) -> str:
    def pct(key: str) -> str:
        value = summary.get(key)
        return "n/a" if value is None else f"{100 * value:.2f}%"

    return (
        f"run {summary['run_id']} (experiment {summary['experiment_id']}) in {summary['tracking_uri']}\n"
        f"error  train {pct('train/error')}  dev {pct('dev/error')}  test {pct('test/error')}  "
        f"reference {pct('reference_error')}  after {summary.get('epochs')} epochs"
    )


def _json_safe(summary: dict[str, Any]) -> dict[str, Any]:
    # JSON has no NaN: a diverged run reports null.
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in summary.items()}


# ----------------------------------------------------------------------------------------------
# fitlens gradcheck

GRADCHECK_STEPS = 100  # SPEC: check at initialization *and* after some training; 100 Adam steps take ~1 s


def _add_gradcheck_parser(commands: Any) -> None:
    gradcheck = commands.add_parser(
        "gradcheck", help="check backprop's gradient against finite differences, recorded in MLflow",
        description="Compare the gradient of the cost J (cross-entropy + the L2/L1 terms) on a fixed training "
        "batch with two-sided finite differences (eps 1e-7, float64, dropout off), at initialization and after "
        "--steps optimizer steps, overall and per parameter tensor. Verdict on the relative difference: great "
        "below 1e-6, look closer below 1e-3, worry from 1e-3. Every coordinate is checked by default: the "
        "default config (an MLP on MNIST-1D, ~15k parameters) takes ~20 s on 2 CPU cores, ~5 s per check; for "
        "big nets set --max-per-tensor. The exit status is 0 whatever the verdict (it is a measurement), 2 on a config "
        "error. Overrides look like model.depth=6 reg.l2=0.1.",
    )
    gradcheck.add_argument("--config", metavar="FILE", help="a YAML run config (default: the default config)")
    gradcheck.add_argument("--steps", type=int, default=GRADCHECK_STEPS, metavar="K",
                           help=f"optimizer steps between the check at initialization and the second check; "
                           f"0 checks at initialization only (default: {GRADCHECK_STEPS})")
    gradcheck.add_argument("--batch-size", type=int, default=64, metavar="N",
                           help="examples in the fixed batch J is computed on, the first N of the training "
                           "split (default: 64)")
    gradcheck.add_argument("--max-per-tensor", type=int, default=None, metavar="N",
                           help="check a seeded random subset of N coordinates per parameter tensor "
                           "(default: all of them)")
    gradcheck.add_argument("--tracking-uri", metavar="URI",
                           help="MLflow tracking URI (default: MLFLOW_TRACKING_URI, else ./mlflow.db)")
    gradcheck.add_argument("--json", action="store_true", help="print the report as one JSON object, last line")
    gradcheck.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted config overrides")
    gradcheck.set_defaults(handler=_gradcheck)


def _gradcheck(args: argparse.Namespace) -> int:
    from tracking.config import load_config

    cfg = load_config(args.config, args.overrides)  # fail on bad input before importing the heavy parts
    from tracking.gradcheck import run_gradcheck

    report = run_gradcheck(cfg, steps=args.steps, batch_size=args.batch_size,
                           max_per_tensor=args.max_per_tensor, uri=args.tracking_uri)
    if args.json:
        print(json.dumps(report))  # already JSON-safe: a NaN difference is null
    else:
        print(_describe_gradcheck(report))
    return 0  # a measurement: the verdict is the output, not the exit status


def _describe_gradcheck(report: dict[str, Any]) -> str:
    """One line per check (overall relative difference and verdict), each followed by its per-tensor table."""

    def sci(value: float | None) -> str:
        return "nan" if value is None else f"{value:.2e}"

    def exact(value: float | None) -> str:
        # Enough digits to see where the two gradients part.
        return "nan" if value is None else f"{value:.9e}"

    lines = [f"run {report['run_id']} (experiment {report['experiment_id']}) in {report['tracking_uri']}"]
    for check in report["checks"]:
        lines.append(
            f"step {check['step']}: relative difference {sci(check['relative_difference'])}  {check['verdict']}"
            f"  ({check['checked']} of {check['n_parameters']} coordinates, eps {check['eps']:g}, "
            f"worst tensor {check['worst_tensor']})"
        )
        rows = [("tensor", "shape", "checked", "rel. diff", "verdict", "worst at", "analytic", "numeric")]
        for t in check["per_tensor"]:
            rows.append((t["name"], "x".join(map(str, t["shape"])) or "scalar", str(t["checked"]),
                         sci(t["relative_difference"]), t["verdict"], str(tuple(t["worst_index"])),
                         exact(t["worst_analytic"]), exact(t["worst_numeric"])))
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        lines += ["  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
                  for row in rows]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# fitlens studies


def _add_studies_parser(commands: Any) -> None:
    studies = commands.add_parser(
        "studies", help="list the packaged hyperparameter studies",
        description="List the ready-made sweep files (tracking/studies/*.yaml): name, number of trials "
        "(num_samples x the grid's combinations) and the first sentence of the lesson each shows.",
    )
    studies.add_argument("--json", action="store_true",
                         help="print one JSON list of {name, trials, summary, description}, last line")
    studies.set_defaults(handler=_studies)


def _studies(args: argparse.Namespace) -> int:
    from tracking.sweep_config import list_studies, load_sweep

    rows = []
    for name in list_studies():
        sweep = load_sweep(name)
        rows.append({"name": name, "trials": sweep.num_trials, "summary": _first_sentence(sweep.description),
                     "description": sweep.description})
    if args.json:
        print(json.dumps(rows))
    else:
        width = max((len(r["name"]) for r in rows), default=4)
        print(f"{'study'.ljust(width)}  trials  lesson")
        for r in rows:
            print(f"{r['name'].ljust(width)}  {r['trials']:>6}  {r['summary']}")
    return 0


def _first_sentence(text: str) -> str:
    head, sep, _ = " ".join(text.split()).partition(". ")
    return head + "." if sep else head


if __name__ == "__main__":
    sys.exit(main())

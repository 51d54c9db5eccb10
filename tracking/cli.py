"""The `fitlens` command line."""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from typing import Any

from lightning_modules.config import ConfigError


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


if __name__ == "__main__":
    sys.exit(main())

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
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:2] == ["sweep", "refine"]:
        argv = ["sweep-refine", *argv[2:]]  # `fitlens sweep refine ID`: a subcommand beside free overrides
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
    _add_tracking_uri(train)
    _add_json(train, "summary")
    train.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted config overrides")
    train.set_defaults(handler=_train)
    _add_gradcheck_parser(commands)
    _add_studies_parser(commands)
    _add_sweep_parsers(commands)
    _add_diagnosis_parsers(commands)
    _add_dashboard_parser(commands)
    _add_server_parser(commands)
    return parser


def _add_tracking_uri(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tracking-uri", metavar="URI",
                        help="MLflow tracking URI (default: MLFLOW_TRACKING_URI, else ./mlflow.db)")


def _add_json(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--json", action="store_true", help=f"print the {what} as one JSON object, last line")


def _train(args: argparse.Namespace) -> int:
    from tracking.config import load_config

    cfg = load_config(args.config, args.overrides)  # fail on bad input before importing the heavy parts
    from tracking.train import train

    summary = train(cfg, uri=args.tracking_uri, progress=not args.json and sys.stderr.isatty())
    if args.json:
        print(json.dumps(_json_safe(summary)))
    else:
        print(_train_text(summary))
    return 0


def _train_text(summary: dict[str, Any]) -> str:
    def pct(key: str) -> str:
        value = summary.get(key)
        return "n/a" if value is None else f"{100 * value:.2f}%"

    return (
        f"run {summary['run_id']} (experiment {summary['experiment_id']}) in {summary['tracking_uri']}\n"
        f"error  train {pct('train/error')}  dev {pct('dev/error')}  test {pct('test/error')}  "
        f"reference {pct('reference_error')}  after {summary.get('epochs')} epochs"
        + (f"\ndiverged at {summary['diverged']}; the kept weights are the last ones with a finite loss"
           if summary.get("diverged") else "")
    )


def _json_safe(value: Any) -> Any:
    """JSON has no NaN: a diverged run reports null."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return None if isinstance(value, float) and not math.isfinite(value) else value


# ----------------------------------------------------------------------------------------------
# fitlens gradcheck

GRADCHECK_STEPS = 100  # check at initialization *and* after some training (docs/conventions.md); 100 Adam steps ~1 s


def _add_gradcheck_parser(commands: Any) -> None:
    gradcheck = commands.add_parser(
        "gradcheck", help="check backprop's gradient against finite differences, recorded in MLflow",
        description="Compare the gradient of the cost J (cross-entropy + the L2/L1 terms) on a fixed training "
        "batch with two-sided finite differences (eps 1e-7, float64, dropout off), at initialization and after "
        "--steps optimizer steps, overall and per parameter tensor. Verdict on the relative difference: great "
        "below 1e-6, look closer below 1e-3, worry from 1e-3; a check reads its worst tensor's verdict. "
        "module=package.module:Class checks your own LightningModule on its training_step loss. Every "
        "coordinate is checked by default: the default config (an MLP on MNIST-1D, ~15k parameters) takes ~20 s "
        "on 2 CPU cores, ~5 s per check; for big nets set --max-per-tensor. The exit status is 0 whatever the "
        "verdict (it is a measurement), 2 on a config error. Overrides look like model.depth=6 reg.l2=0.1.",
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
    _add_tracking_uri(gradcheck)
    _add_json(gradcheck, "report")
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
        print(_gradcheck_text(report))
    return 0  # a measurement: the verdict is the output, not the exit status


def _gradcheck_text(report: dict[str, Any]) -> str:
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


# ----------------------------------------------------------------------------------------------
# fitlens sweep, fitlens sweep refine


def _add_sweep_parsers(commands: Any) -> None:
    sweep = commands.add_parser(
        "sweep", help="run a hyperparameter sweep on Ray Tune, recorded as MLflow parent and child runs",
        description="Run a sweep file (or a packaged study, see `fitlens studies`) on Ray Tune: one MLflow parent "
        "run with the search space, one child run per trial. RAY_ADDRESS joins an existing Ray cluster; unset, a "
        "local one is started. Running the same command again continues an interrupted sweep. Overrides look "
        "like num_samples=4 base.train.max_epochs=5 'space.optim.lr={loguniform: [1e-3, 1e-1]}'. "
        "`fitlens sweep refine SWEEP_RUN_ID [--top K]` narrows a finished sweep around its best trials.",
    )
    source = sweep.add_mutually_exclusive_group()
    source.add_argument("--study", metavar="NAME", help="a packaged study: " + ", ".join(_study_names()))
    source.add_argument("--config", metavar="FILE", help="a YAML sweep file")
    source.add_argument("--resume", action="store_true",
                        help="continue the most recent unfinished sweep in the store")
    _add_run_options(sweep)
    sweep.add_argument("--new", action="store_true",
                       help="start a new sweep even when an unfinished run of the same one exists")
    sweep.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted sweep-file overrides")
    sweep.set_defaults(handler=_sweep)

    refine = commands.add_parser(
        "sweep-refine", help=argparse.SUPPRESS, prog="fitlens sweep refine",
        description="Coarse to fine: narrow each range of a finished sweep around its best K trials, on the scale "
        "the space used (log for loguniform, log of 1 - beta for loguniform_one_minus), keep the categorical "
        "values those trials had, and run that sweep; its parent run is tagged fitlens.refined_from.",
    )
    refine.add_argument("sweep_run_id", metavar="SWEEP_RUN_ID", help="the parent run id of the sweep to refine")
    refine.add_argument("--top", type=int, default=3, metavar="K", help="trials to narrow around (default: 3)")
    refine.add_argument("--dry-run", action="store_true", help="print the refined sweep file; run nothing")
    _add_run_options(refine)
    refine.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides of the refined sweep")
    refine.set_defaults(handler=_sweep_refine)


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--smoke", action="store_true",
                        help="the same path in seconds: the sweep's smoke settings (few trials, tiny data)")
    _add_tracking_uri(parser)
    _add_json(parser, "summary")


def _study_names() -> list[str]:
    from tracking.sweep_config import list_studies

    return list_studies()


def _sweep(args: argparse.Namespace) -> int:
    from tracking.sweep_config import load_sweep

    if args.resume:
        if args.overrides:
            raise ConfigError(f"--resume takes no overrides (got {' '.join(args.overrides)}): it continues the sweep "
                              "exactly as it was started")
        from tracking.reader import unfinished_sweep

        sweep = unfinished_sweep(args.tracking_uri)
        return _run_sweep(args, sweep, smoke=False)
    if not (args.study or args.config):
        raise ConfigError("fitlens sweep needs --study NAME (one of: " + ", ".join(_study_names())
                          + "), --config FILE or --resume")
    sweep = load_sweep(args.study or args.config, args.overrides)  # fail on bad input before starting Ray
    return _run_sweep(args, sweep, smoke=args.smoke)


def _sweep_refine(args: argparse.Namespace) -> int:
    from analysis.gather import refine
    from tracking.sweep_config import dump_sweep, override_sweep

    sweep = override_sweep(refine(args.sweep_run_id, args.top, args.tracking_uri), args.overrides)
    if args.dry_run:
        print(dump_sweep(sweep), end="")
        return 0
    return _run_sweep(args, sweep, smoke=args.smoke, refined_from=args.sweep_run_id)


def _run_sweep(args: argparse.Namespace, sweep: Any, smoke: bool, refined_from: str | None = None) -> int:
    from tracking.sweep.driver import run_sweep
    from tracking.sweep.summary import summary_text

    summary = run_sweep(sweep, uri=args.tracking_uri, smoke=smoke, resume=not getattr(args, "new", False),
                        refined_from=refined_from, progress=not args.json)
    if not summary["interrupted"]:
        _keep_sweep(summary)
    if args.json:
        print(json.dumps(_json_safe(summary)))
    else:
        print(summary_text(summary))
    return 130 if summary["interrupted"] else 0


def _keep_sweep(summary: dict[str, Any]) -> None:
    """What the dashboard shows of the finished sweep, computed once and kept in its parent run."""
    from analysis.gather import keep_sweep

    try:
        keep_sweep(summary["tracking_uri"], summary["parent_run_id"])
    except Exception as err:  # the sweep is done; only the dashboard's first look at it gets slower
        print(f"fitlens sweep: the dashboard's reading of the sweep was not kept ({type(err).__name__}: {err})",
              file=sys.stderr)


# ----------------------------------------------------------------------------------------------
# fitlens report, fitlens diagnose


def _add_diagnosis_parsers(commands: Any) -> None:
    report = commands.add_parser(
        "report", help="diagnose a recorded run or sweep: bias/variance, the recipe, health flags",
        description="Read a run (or a sweep's parent run) from MLflow and say whether it underfits or overfits "
        "(avoidable bias = train - reference error, variance = dev - train), what to try next in the basic "
        "recipe's order with the runs of the same sweep or experiment that already tried it, and what its "
        "diagnostics flag (vanishing or exploding gradients, dead, saturated or identical units, ...). A sweep "
        "gets every trial's verdict and flags, hyperparameter importance, the refined ranges and its learning "
        "or regularization curves.",
    )
    report.add_argument("run_id", metavar="RUN_ID", help="a run id, or a sweep's parent run id")
    _add_tracking_uri(report)
    _add_verdict_options(report)
    report.set_defaults(handler=_report)

    diagnose = commands.add_parser(
        "diagnose", help="the bias/variance verdict and the recipe for raw error rates",
        description="The verdict on a train and dev error against the reference (human / Bayes) error, and the "
        "basic recipe's next steps, bias first. Errors are fractions (0.15) or percentages (15%%).",
    )
    diagnose.add_argument("--train-error", required=True, metavar="A", help="training-set error, e.g. 0.15 or 15%%")
    diagnose.add_argument("--dev-error", required=True, metavar="B", help="dev-set error")
    diagnose.add_argument("--reference-error", default="0", metavar="C",
                          help="human / Bayes error e* (default: 0, the course's convention: docs/conventions.md)")
    _add_verdict_options(diagnose)
    diagnose.set_defaults(handler=_diagnose)


def _add_verdict_options(parser: argparse.ArgumentParser) -> None:
    from analysis.thresholds import DEFAULT

    parser.add_argument("--bias-threshold", metavar="T", default=str(DEFAULT.high_bias),
                        help=f"avoidable bias above this is high bias (default: {DEFAULT.high_bias})")
    parser.add_argument("--variance-threshold", metavar="T", default=str(DEFAULT.high_variance),
                        help=f"variance above this is high variance (default: {DEFAULT.high_variance})")
    _add_json(parser, "report")


def _rate(option: str, text: str) -> float:
    """An error rate given as 0.15 or 15%; a ConfigError naming the option otherwise."""
    try:
        value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        value = math.nan
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"{option} = {text!r} is not allowed; it must be an error rate in [0, 1] (0.15) or a "
                          f"percentage (15%)")
    return value


def _thresholds(args: argparse.Namespace) -> Any:
    from analysis.thresholds import DEFAULT

    return DEFAULT.replace(high_bias=_rate("--bias-threshold", args.bias_threshold),
                           high_variance=_rate("--variance-threshold", args.variance_threshold))


def _report(args: argparse.Namespace) -> int:
    thresholds = _thresholds(args)
    from tracking.store import quiet_libraries

    quiet_libraries()
    from analysis.gather import gather_report
    from analysis.report import format_report

    report = gather_report(args.run_id, args.tracking_uri, thresholds)
    print(json.dumps(_json_safe(report)) if args.json else format_report(report))
    return 0


def _diagnose(args: argparse.Namespace) -> int:
    from analysis.bias_variance import diagnose
    from analysis.diagnosis import RunEvidence, finding_fields, primary_cause, verdict_findings
    from analysis.report import diagnosis_fields, format_report

    thresholds = _thresholds(args)
    errors = {"train_error": _rate("--train-error", args.train_error),
              "dev_error": _rate("--dev-error", args.dev_error),
              "reference_error": _rate("--reference-error", args.reference_error)}
    diagnosis = diagnose(errors["train_error"], errors["dev_error"], errors["reference_error"], thresholds)
    findings = verdict_findings(RunEvidence(errors), thresholds)  # numbers only: the verdict is all there is to read
    report = {**diagnosis_fields(diagnosis), "flags": [], "primary_cause": primary_cause(findings),
              "findings": [finding_fields(f) for f in findings],
              "thresholds": {"high_bias": thresholds.high_bias, "high_variance": thresholds.high_variance}}
    print(json.dumps(report) if args.json else format_report(report))
    return 0


# ----------------------------------------------------------------------------------------------
# fitlens dashboard


def _add_dashboard_parser(commands: Any) -> None:
    dashboard = commands.add_parser(
        "dashboard", help="serve the Dash dashboard over the MLflow store",
        description="Serve the dashboard (sweeps, runs, layers, regularization, optimization, gradient checks) "
        "over the tracking store, on waitress, bound to 127.0.0.1 unless --host says otherwise.",
    )
    dashboard.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine "
                           "only; 0.0.0.0 exposes the dashboard to the network)")
    dashboard.add_argument("--port", type=int, default=8050, help="port (default: 8050)")
    _add_tracking_uri(dashboard)
    dashboard.set_defaults(handler=_dashboard)


def _dashboard(args: argparse.Namespace) -> int:
    from dashboard.serve import serve

    serve(args.tracking_uri, args.host, args.port)
    return 0


# ----------------------------------------------------------------------------------------------
# fitlens server


def _add_server_parser(commands: Any) -> None:
    from tracking.server import ARTIFACTS_ENV, BACKEND_ENV, DEFAULT_ARTIFACTS, DEFAULT_BACKEND_URI, DEFAULT_PORT

    server = commands.add_parser(
        "server", help="serve a shared MLflow tracking server on PostgreSQL, for a team",
        description=f"Run `mlflow server` with a PostgreSQL backend store ({BACKEND_ENV}, default "
        f"{DEFAULT_BACKEND_URI}; the database is created if missing) and proxied artifacts ({ARTIFACTS_ENV}, "
        f"default ./{DEFAULT_ARTIFACTS}), bound to 127.0.0.1 unless --host says otherwise, with MLflow's "
        "security middleware on. Point clients at it with MLFLOW_TRACKING_URI=http://HOST:PORT. Further "
        "`mlflow server` options follow a --, e.g. `fitlens server -- --workers 2 --app-name basic-auth`.",
    )
    server.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine "
                        "only; 0.0.0.0 exposes the server to the network: only behind a firewall or proxy)")
    server.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default: {DEFAULT_PORT})")
    server.add_argument("--allowed-hosts", metavar="HOSTS", help="comma-separated Host headers the server "
                        "answers, host or host:port, * a wildcard, e.g. 'mlflow.example.com,localhost:*'; they "
                        "replace MLflow's default: localhost and private addresses, any port")
    server.add_argument("mlflow_args", nargs="*", metavar="-- MLFLOW_OPTION",
                        help="further `mlflow server` options, after --")
    server.set_defaults(handler=_server)


def _server(args: argparse.Namespace) -> int:
    from tracking.server import serve, server_settings

    serve(server_settings(args.host, args.port, args.allowed_hosts, args.mlflow_args))  # fail before starting


if __name__ == "__main__":
    sys.exit(main())

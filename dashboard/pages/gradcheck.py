"""Gradient check: backprop's gradient against two-sided finite differences, overall and per parameter tensor.

Reads the report `fitlens gradcheck` records (gradcheck/report.json, see `tracking.gradcheck`): one check at
initialization and one after some training steps, each with the relative difference
||dtheta_approx - dtheta|| / (||dtheta_approx|| + ||dtheta||), its verdict and a row per parameter tensor, so a
wrong backward pass can be located.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
from dash import dash_table, html
from dash.dash_table.Format import Format, Scheme

from dashboard.cache import CachedReader
from dashboard.components import message, run_link, section
from dashboard.figures.training import VERDICT_COLORS, gradcheck_bars
from dashboard.pages.regularization import graph
from tracking.gradcheck_verdict import GREAT_BELOW, WORRY_AT

PATH = "/gradcheck/<run_id>"
TITLE = "Gradient check"

TABLE_COLUMNS = (("name", "tensor"), ("shape", "shape"), ("checked", "coordinates checked"),
                 ("relative_difference", "relative difference"), ("verdict", "verdict"),
                 ("worst_index", "worst coordinate"), ("worst_analytic", "backprop there"),
                 ("worst_numeric", "finite difference there"))

NUMERIC_FORMATS = {"relative_difference": (2, Scheme.exponent), "worst_analytic": (10, Scheme.decimal_or_exponent),
                   "worst_numeric": (10, Scheme.decimal_or_exponent)}


def controls(reader: CachedReader, run_id: str, **_query: str) -> html.Div:
    """The page's title and links; a gradient check has nothing to choose."""
    run = reader.run(run_id)
    return html.Div([
        html.H1(f"{TITLE}: {run.info.run_name or run_id[:8]}"),
        html.Nav([run_link(run_id, "the run", "run")], className="nav"),
    ])


def content(reader: CachedReader, args: dict, values: dict) -> Any:
    """The overall verdict, then per check its relative difference, the per-tensor table and bar chart."""
    run_id = str(args.get("run_id", ""))
    report = reader.gradcheck(run_id)
    if report is None:
        return message(f"run {run_id} has no gradient check; run `fitlens gradcheck` to make one", "info")
    checks = report.get("checks")
    if not isinstance(checks, list) or not checks:
        checks = [report] if isinstance(report.get("per_tensor"), list) else []
    if not checks:
        return message(f"the gradient-check report of run {run_id} has no checks", "warning")
    return html.Div([headline(report, len(checks)), *(check_section(check) for check in checks)])


def verdict_span(verdict: Any) -> html.Span:
    """A gradient-check verdict (great, look closer, worry) as a coloured badge."""
    text = str(verdict)
    return html.Span(text, className="badge", style={"background": VERDICT_COLORS.get(text, "#6e7781")})


def scientific(value: Any) -> str:
    """A relative difference as 2.1e-09; a missing (non-finite) one as "not finite"."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return "not finite"
    return f"{number:.1e}" if math.isfinite(number) else "not finite"


def headline(report: dict, n_checks: int) -> html.Section:
    """The worst check's relative difference and verdict, and how to read them."""
    parts: list[Any] = [
        html.P(["relative difference ", html.Strong(scientific(report.get("relative_difference"))), " ",
                verdict_span(report.get("verdict"))]),
    ]
    where = []
    if report.get("worst_step") is not None:
        where.append(f"the worse of {n_checks} checks is at step {report['worst_step']}")
    if report.get("worst_tensor"):
        where.append(f"its worst tensor is {report['worst_tensor']}")
    if report.get("eps") is not None:
        batch = report.get("batch_size")
        where.append(f"eps = {report['eps']:g}" + (f", a fixed batch of {batch} examples" if batch else ""))
    if where:
        parts.append(html.P("; ".join(where) + "."))
    parts.append(html.P(
        "||dtheta_approx - dtheta|| / (||dtheta_approx|| + ||dtheta||), with two-sided differences in float64 "
        f"and dropout off: great below {GREAT_BELOW:.0e} (the course's ~1e-7), look closer up to {WORRY_AT:.0e} "
        f"(~1e-5), worry at {WORRY_AT:.0e} and above: then the tensor with the largest difference is where to look."))
    return section("Overall", *parts)


def per_tensor_frame(check: dict) -> pd.DataFrame:
    """The check's per_tensor rows as a table: name, shape ("8 x 2"), checked, relative_difference,
    verdict, worst_index ("[0, 1]"), worst_analytic, worst_numeric."""
    rows = []
    for row in check.get("per_tensor") or []:
        if not isinstance(row, dict):
            continue
        shape, index = row.get("shape") or [], row.get("worst_index") or []
        rows.append({
            "name": str(row.get("name", "")),
            "shape": " x ".join(str(n) for n in shape) if shape else "scalar",
            "checked": row.get("checked"),
            "relative_difference": row.get("relative_difference"),
            "verdict": str(row.get("verdict", "")),
            "worst_index": "[" + ", ".join(str(i) for i in index) + "]",
            "worst_analytic": row.get("worst_analytic"),
            "worst_numeric": row.get("worst_numeric"),
        })
    return pd.DataFrame(rows, columns=[c for c, _ in TABLE_COLUMNS])


def check_section(check: dict) -> html.Section:
    """One check: its relative difference and verdict, the per-tensor table and the bar chart."""
    frame = per_tensor_frame(check)
    step = check.get("step")
    checked, total = check.get("checked"), check.get("n_parameters")
    counted = f" over {checked} of {total} coordinates" if checked is not None and total is not None else ""
    table = dash_table.DataTable(
        data=frame.astype(object).where(frame.notna(), None).to_dict("records"),
        columns=[table_column(column, title) for column, title in TABLE_COLUMNS],
        sort_action="native",
        style_cell={"fontFamily": "inherit", "fontSize": "0.85rem", "textAlign": "left"},
        style_data_conditional=[
            {"if": {"filter_query": f'{{verdict}} = "{verdict}"', "column_id": "verdict"},
             "color": color, "fontWeight": 600}
            for verdict, color in VERDICT_COLORS.items()
        ],
    )
    title = "at initialization (step 0)" if step == 0 else (f"after {step} steps" if step is not None else "")
    return section(f"Check {title}".strip(),
                   html.P(["relative difference ", html.Strong(scientific(check.get("relative_difference"))),
                           counted, " ", verdict_span(check.get("verdict"))]),
                   table, graph(gradcheck_bars(frame)))


def table_column(column: str, title: str) -> dict[str, Any]:
    """A DataTable column: the relative difference in scientific notation and the gradients with 10 digits,
    kept numeric so that sorting orders them by value; a missing (non-finite) value reads "not finite"."""
    if column in NUMERIC_FORMATS:
        return {"name": title, "id": column, "type": "numeric",
                "format": Format(precision=NUMERIC_FORMATS[column][0], scheme=NUMERIC_FORMATS[column][1],
                                 nully="not finite")}
    if column == "checked":
        return {"name": title, "id": column, "type": "numeric"}
    return {"name": title, "id": column}

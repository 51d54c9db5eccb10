"""Markup from the store renders inert on every page, without a browser (test_browser.py checks a run name in
headless Chromium): a run name, tag values, param values and artifact contents carrying `<script>`, an
`<img onerror>`, `javascript:` links and Markdown link syntax appear in each page's component tree only as
plain text: never in a Markdown component or table cell that would render it (Markdown is escaped, HTML off),
never as a link target, never in a prop that takes HTML; in figures, only where Plotly draws text.

The store is hand-made with MlflowClient, laid out as tracking writes it (tracking.layout): a sweep (parent
run with its search_space.yaml, three trials) and a lone run with a gradient-check report, every name, tag,
param and report string hostile.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
import pytest
from dash import dash_table, dcc, html
from mlflow.entities import Metric, Param

from dashboard.app import render_content, render_controls
from dashboard.cache import CachedReader
from dashboard.pages import PAGES
from lightning_modules.config import RunConfig
from tracking.config import config_to_dict, flatten
from tracking.histograms import _write_part
from tracking.layout import (
    BEST_RUN_TAG,
    DATASET_TAG,
    DIVERGED_TAG,
    ERROR_TAG,
    GRADCHECK_REPORT,
    KIND_SWEEP,
    KIND_TAG,
    PARENT_RUN_TAG,
    POINT_TAG,
    SEARCH_SPACE_FILE,
    STOPPED_TAG,
    STUDY_TAG,
    SWEEP_TAG,
    TRIAL_TAG,
)
from tracking.store import client_for
from tracking.sweep_config import dump_sweep, sweep_from_dict

PIECES = ("<script>alert(1)</script>", "<img src=x onerror=alert(1)>", "javascript:alert(1)",
          "[x](javascript:alert(1))", '<a href="javascript:alert(1)">a</a>')
HOSTILE = "".join(PIECES)  # 124 characters: fits a run name, a tag and a param


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> dict[str, Any]:
    folder: Path = tmp_path_factory.mktemp("markup")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    client = client_for(uri)
    experiment = client.create_experiment(HOSTILE, artifact_location=str(folder / "artifacts"))
    sweep = sweep_from_dict({"name": "markup", "base": {"train": {"max_epochs": 3}},
                             "space": {"optim.name": {"choice": [HOSTILE, "adam"]}, "reg.l2": {"grid": [0.0, 0.1]}}})
    parent = client.create_run(experiment, run_name=HOSTILE, tags={KIND_TAG: KIND_SWEEP,
                                                                   STUDY_TAG: HOSTILE}).info.run_id
    client.log_param(parent, "metric", "dev/error")
    client.log_text(parent, dump_sweep(sweep), SEARCH_SPACE_FILE)

    def trial(name: str, point: dict[str, Any], dev: float, tags: dict[str, str], parent_id: str | None) -> str:
        tags = {**tags, POINT_TAG: json.dumps(point), TRIAL_TAG: name}
        if parent_id:
            tags |= {SWEEP_TAG: parent_id, PARENT_RUN_TAG: parent_id}
        run_id = client.create_run(experiment, run_name=HOSTILE + name, tags=tags).info.run_id
        cfg = config_to_dict(RunConfig())
        cfg["optim"]["name"], cfg["reg"]["l2"], cfg["data"]["path"] = point["optim.name"], point["reg.l2"], HOSTILE
        params = [Param(key, str(value)[:6000]) for key, value in flatten(cfg).items()]
        points = [("train/loss", 1.0), ("dev/loss", 1.2), ("train/error", dev / 4), ("dev/error", dev)]
        metrics = [Metric(key, value / (epoch + 1) if key.endswith("loss") else value, 0, epoch)
                   for epoch in range(3) for key, value in points]
        metrics += [Metric("epoch", epoch, 0, epoch) for epoch in range(3)]
        metrics += [Metric(f"diag/{kind}/{layer}/{stat}", value, 0, epoch) for epoch in range(3)
                    for layer in ("hidden.0.linear", "output") for kind in ("act", "weight", "update")
                    for stat, value in (("std", 0.5), ("norm", 2.0), ("p50", 0.0), ("update_ratio", 1e-3))]
        metrics += [Metric("best/train/error", dev / 4, 0, 2), Metric("best/dev/error", dev, 0, 2)]
        client.log_batch(run_id, metrics=metrics, params=params)
        for step in (0, 2):  # a part whose layer names are hostile too (an artifact's content)
            _write_part(client, run_id, str(folder / f"hist-{step:09d}.parquet"), {
                "step": [step, step], "kind": ["act", "weight"], "layer": [HOSTILE, HOSTILE],
                "edges": [np.linspace(-1, 1, 5)] * 2, "counts": [np.array([1, 2, 3, 4])] * 2})
        client.set_terminated(run_id, "FINISHED")
        return run_id

    hostile_tags = {STOPPED_TAG: HOSTILE, DIVERGED_TAG: HOSTILE, ERROR_TAG: HOSTILE, DATASET_TAG: HOSTILE}
    trials = [trial(f"_{i:05d}", {"optim.name": name, "reg.l2": l2}, dev, hostile_tags, parent)
              for i, (name, l2, dev) in enumerate([(HOSTILE, 0.0, 0.3), ("adam", 0.1, 0.2), (HOSTILE, 0.1, 0.25)])]
    client.set_tag(parent, BEST_RUN_TAG, trials[1])
    client.set_terminated(parent, "FINISHED")
    lone = trial("lone", {"optim.name": HOSTILE, "reg.l2": 0.0}, 0.1, hostile_tags, None)
    report = {"relative_difference": 2e-9, "verdict": HOSTILE, "worst_tensor": HOSTILE, "worst_step": HOSTILE,
              "checks": [{"step": 0, "relative_difference": 2e-9, "verdict": HOSTILE, "checked": 4,
                          "n_parameters": 4, "per_tensor": [
                              {"name": HOSTILE, "shape": [HOSTILE], "checked": 4, "relative_difference": 2e-9,
                               "verdict": HOSTILE, "worst_index": [HOSTILE], "worst_analytic": 0.5,
                               "worst_numeric": 0.5}]}]}
    client.log_text(lone, json.dumps(report), GRADCHECK_REPORT)
    return {"reader": CachedReader(uri), "parent": parent, "trial": trials[0], "lone": lone}


def pages(store: dict) -> list[tuple[str, str]]:
    """Every page, at the run it is for: (path, query)."""
    ids = {"/sweep": store["parent"], "/regularization": store["parent"], "/optimization": store["parent"],
           "/run": store["trial"], "/layers": store["trial"], "/gradcheck": store["lone"]}
    found = [("/", ""), (f"/layers/{store['lone']}", f"?compare={store['trial']}"), (f"/run/{store['lone']}", ""),
             (f"/regularization/{store['lone']}", ""), (f"/optimization/{store['lone']}", "")]
    for page in PAGES:
        if "<run_id>" in page.PATH:
            prefix = page.PATH.split("/<")[0]
            found.append((page.PATH.replace("<run_id>", ids[prefix]), ""))
    return found


# -- what a component tree holds, and where ---------------------------------------------------------------------

def components(node: Any) -> list[Any]:
    """Every Dash component in a tree, depth first."""
    found: list[Any] = []

    def walk(item: Any) -> None:
        if isinstance(item, (list, tuple)):
            for child in item:
                walk(child)
        elif hasattr(item, "to_plotly_json") and not isinstance(item, go.Figure):
            found.append(item)
            for name in getattr(item, "_prop_names", []):
                value = getattr(item, name, None)
                if name == "children" or hasattr(value, "to_plotly_json") or isinstance(value, (list, tuple)):
                    walk(value)
    walk(node)
    return found


def strings(value: Any) -> list[str]:
    """Every string inside a JSON-like value (props, figures, table data)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings(v)]
    if isinstance(value, (list, tuple)):
        return [s for v in value for s in strings(v)]
    if hasattr(value, "to_plotly_json"):
        return strings(value.to_plotly_json())
    return []


def hostile_in(text: str) -> bool:
    return any(piece in text for piece in PIECES)


def escaped_for_markdown(text: str) -> bool:
    """Markdown `text` shows every hostile piece it holds as the characters it is: each <, >, [, ], ( and ) of
    every occurrence is backslash-escaped, so it makes no tag and no link."""
    literal, escaped, i = [], [], 0
    while i < len(text):
        is_escape = text[i] == "\\" and i + 1 < len(text)
        literal.append(text[i + 1] if is_escape else text[i])
        escaped.append(is_escape)
        i += 2 if is_escape else 1
    shown = "".join(literal)
    for piece in PIECES:
        start = shown.find(piece)
        while start != -1:
            if any(ch in "<>[]()" and not escaped[start + j] for j, ch in enumerate(piece)):
                return False
            start = shown.find(piece, start + 1)
    return True


# Props a component shows as text (React escapes them); anything else carrying store text is a finding.
TEXT_PROPS = {"children", "title", "label", "value", "options", "placeholder", "data", "tooltip_data", "columns",
              "marks"}
# Props that load or run what they hold.
ACTIVE_PROPS = {"href", "src", "srcDoc", "action", "formAction", "poster", "data-href", "dangerously_allow_html"}
# Where store text may sit in a figure: what Plotly draws as text (its own tag whitelist: no script, links only
# to http, https and mailto) or keeps as data; never an image source or a link.
FIGURE_TEXT = {"name", "text", "hovertext", "customdata", "x", "y", "ticktext", "tickvals", "categoryarray",
               "legendgroup", "hovertemplate"}


def figure_findings(figure: Any, where: str) -> list[str]:
    """Store text in a figure anywhere but FIGURE_TEXT (and annotation or title text)."""
    found: list[str] = []

    def walk(value: Any, path: tuple[str, ...]) -> None:
        if hasattr(value, "tolist"):
            value = value.tolist()
        if isinstance(value, str):
            if hostile_in(value) and path[-1] not in FIGURE_TEXT and path[-2:] not in (("annotations", "text"),
                                                                                         ("title", "text")):
                found.append(f"{where}: figure.{'.'.join(path)} = {value[:60]!r}")
        elif isinstance(value, dict):
            for key, item in value.items():
                walk(item, (*path, key))
        elif isinstance(value, (list, tuple)):
            for item in value:
                walk(item, path)

    walk(figure.to_plotly_json() if hasattr(figure, "to_plotly_json") else figure, ("figure",))
    return found


def findings(tree: Any, where: str) -> list[str]:
    """Every place in a component tree where store markup is not plain text."""
    found: list[str] = []
    for component in components(tree):
        kind = type(component).__name__
        if isinstance(component, (html.Iframe, html.Script, html.ObjectEl, html.Embed)):
            found.append(f"{where}: a {kind} component")
        if isinstance(component, dcc.Markdown):
            if getattr(component, "dangerously_allow_html", False):
                found.append(f"{where}: Markdown with dangerously_allow_html")
            shown = " ".join(strings(getattr(component, "children", None)))
            if not escaped_for_markdown(shown):
                found.append(f"{where}: Markdown renders {shown[:60]!r}")
        if isinstance(component, dash_table.DataTable):
            if (getattr(component, "markdown_options", None) or {}).get("html"):
                found.append(f"{where}: a DataTable with markdown_options html")
            markdown = {c["id"] for c in getattr(component, "columns", None) or []
                        if c.get("presentation") == "markdown"}
            for row in getattr(component, "data", None) or []:
                for column in markdown:
                    if not escaped_for_markdown(str(row.get(column, ""))):
                        found.append(f"{where}: DataTable markdown cell {column} = {str(row[column])[:60]!r}")
            for row in getattr(component, "tooltip_data", None) or []:
                for column, tip in row.items():
                    if isinstance(tip, dict) and tip.get("type") == "markdown" and not escaped_for_markdown(
                            str(tip.get("value"))):
                        found.append(f"{where}: DataTable markdown tooltip {column}")
        for name in getattr(component, "_prop_names", []):
            value = getattr(component, name, None)
            if value is None or (name == "children" and not isinstance(value, str)):
                continue
            if name == "figure":
                found += figure_findings(value, f"{where} {kind}")
                continue
            texts = strings(value)
            if name in ACTIVE_PROPS and any(hostile_in(t) or t.strip().lower().startswith("javascript:")
                                            for t in texts):
                found.append(f"{where}: {kind}.{name} = {texts[0][:60]!r}")
            elif name not in TEXT_PROPS and any(hostile_in(t) for t in texts):
                found.append(f"{where}: {kind}.{name} carries store text")
    return found


def test_markup_from_the_store_is_plain_text_on_every_page(store) -> None:
    reader = store["reader"]
    seen, problems = [], []
    for path, query in pages(store):
        for part in ("controls", "content"):
            tree = (render_controls(reader, path, query) if part == "controls"
                    else render_content(reader, path, query, {}))
            text = json.dumps(tree.to_plotly_json(), default=lambda o: o.to_plotly_json()
                              if hasattr(o, "to_plotly_json") else str(o))
            assert "this view failed" not in text, (path, text[:500])
            problems += findings(tree, f"{path}{query} {part}")
            seen += [t for c in components(tree) for t in strings(getattr(c, "children", None)) if HOSTILE in t]
    assert problems == []
    # and the test saw what it checks: the names and tags are on the pages, as text
    for shown in (HOSTILE, f"Run {HOSTILE}", f"Sweep {HOSTILE}", f"the run failed: {HOSTILE}",
                  f"the run diverged: {HOSTILE}", f"stopped early by the sweep's scheduler: {HOSTILE}"):
        assert any(t.startswith(shown) for t in seen), shown


def test_the_checks_catch_markup_that_would_render() -> None:
    """The oracle's own test: each thing the page test forbids is found."""
    link = f"[{HOSTILE}](/run/x)"
    assert findings(dcc.Markdown(link), "p") and findings(dcc.Markdown("x", dangerously_allow_html=True), "p")
    assert findings(html.A("x", href="javascript:alert(1)"), "p") and findings(html.Iframe(srcDoc=HOSTILE), "p")
    assert findings(dash_table.DataTable(columns=[{"id": "a", "name": "a", "presentation": "markdown"}],
                                         data=[{"a": link}]), "p")
    assert figure_findings(go.Figure(layout={"images": [{"source": HOSTILE}]}), "p")
    assert not findings(html.Div([HOSTILE, html.Span(HOSTILE, title=HOSTILE)]), "p")
    from dashboard.pages.sweep import markdown_text

    assert not findings(dcc.Markdown(f"[{markdown_text(HOSTILE)}](/run/x)"), "p")

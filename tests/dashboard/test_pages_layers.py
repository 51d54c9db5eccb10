"""The layers page against a real init study (6-layer MLP, 5 inits x tanh / ReLU, recorded by a real sweep): the
initialization lessons must be visible in what `controls` and `content` return."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
from dash import dcc

from dashboard import ids
from dashboard.cache import CachedReader
from dashboard.pages import layers

STEP0 = {"step": 0}


def walk(component: Any) -> tuple[list[str], list[Any]]:
    """Every string and every component in a component tree, depth first."""
    strings: list[str] = []
    found: list[Any] = []

    def visit(node: Any) -> None:
        if isinstance(node, (list, tuple)):
            for child in node:
                visit(child)
        elif isinstance(node, str):
            strings.append(node)
        elif node is not None and hasattr(node, "to_plotly_json"):
            found.append(node)
            visit(getattr(node, "children", None))

    visit(component)
    return strings, found


def figures(component: Any) -> list[go.Figure]:
    return [go.Figure(c.figure) for c in walk(component)[1] if isinstance(c, dcc.Graph)]


def graph(component: Any, graph_id: str) -> go.Figure:
    (found,) = [go.Figure(c.figure) for c in walk(component)[1]
                if isinstance(c, dcc.Graph) and getattr(c, "id", None) == graph_id]
    return found


def text(component: Any) -> str:
    return "\n".join(walk(component)[0])


@pytest.fixture(scope="module")
def study(init_study) -> tuple[CachedReader, pd.DataFrame]:
    """The study's reader and its trials (run_id, run_name, model.init, model.init_std, model.activation)."""
    _, summary = init_study
    reader = CachedReader(summary["tracking_uri"])
    return reader, reader.trials_frame(summary["parent_run_id"])


def trial(trials: pd.DataFrame, init: str, activation: str, std: float | None = None) -> str:
    rows = trials[(trials["model.init"] == init) & (trials["model.activation"] == activation)]
    if std is not None:
        rows = rows[np.isclose(rows["model.init_std"].astype(float), std)]
    assert len(rows) == 1, (init, activation, std)
    return rows["run_id"].iloc[0]


def act_std_ratio(page: Any) -> float:
    """Last layer's activation std / the first's, read off the depth profile (one run)."""
    (act,) = [t for t in graph(page, ids.DEPTH_PROFILE).data if t.xaxis == "x"]
    assert list(act.x) == [f"hidden.{i}.linear" for i in range(6)]
    return float(act.y[-1] / act.y[0])


def test_controls_offer_the_recorded_kinds_layers_and_snapshot_steps(study) -> None:
    reader, trials = study
    run_id = trial(trials, "he", "relu")
    _, components = walk(layers.controls(reader, run_id))
    by_name = {c.id["name"]: c for c in components if isinstance(getattr(c, "id", None), dict)}
    assert set(by_name) == {"kind", "layer", "view", "scale", "step", "stat"}
    assert list(by_name["kind"].options) == ["weight", "grad", "act"]  # the economy preset's kinds
    assert by_name["kind"].value == "act"
    layer_values = [o["value"] for o in by_name["layer"].options]
    assert layer_values[0] == "all" and layer_values[1:] == [*(f"hidden.{i}.linear" for i in range(6)), "out"]
    steps = reader.histogram_steps(run_id)
    assert steps[:3] == [0, 1, 2]
    assert by_name["step"].max == len(steps) - 1 and by_name["step"].value == 0
    assert by_name["step"].marks[0] == "0" and by_name["step"].marks[len(steps) - 1] == str(steps[-1])
    assert by_name["stat"].value == ["act/std", "grad/norm"]


def test_zero_init_weights_at_initialization_are_a_single_spike_at_zero(study) -> None:
    reader, trials = study
    page = layers.content(reader, {"run_id": trial(trials, "zeros", "tanh")}, {"kind": "weight", **STEP0})
    bars = [t for fig in figures(page) for t in fig.data if t.type == "bar"]
    assert [t.name for t in bars] == [*(f"hidden.{i}.linear" for i in range(6)), "out"]
    for bar in bars:
        counts = np.asarray(bar.y)
        (full,) = np.flatnonzero(counts)  # one bin holds every weight
        centre, width = bar.x[full], bar.width[full]
        assert centre - width / 2 <= 0 <= centre + width / 2
    assert "identical units" in text(page)  # the flag says why it matters


def test_he_relu_keeps_the_activation_std_across_depth(study) -> None:
    reader, trials = study
    page = layers.content(reader, {"run_id": trial(trials, "he", "relu")}, STEP0)
    assert 0.5 < act_std_ratio(page) < 2
    assert graph(page, ids.DEPTH_PROFILE).layout.yaxis.type == "log"


def test_small_normal_init_with_tanh_lets_the_activations_die_out(study) -> None:
    reader, trials = study
    page = layers.content(reader, {"run_id": trial(trials, "normal", "tanh", 0.01)}, STEP0)
    assert act_std_ratio(page) < 0.01
    assert "activations collapsing" in text(page)


def test_large_normal_init_saturates_tanh_at_plus_minus_one(study) -> None:
    reader, trials = study
    page = layers.content(reader, {"run_id": trial(trials, "normal", "tanh", 1.0)}, {"kind": "act", **STEP0})
    bars = [t for fig in figures(page) for t in fig.data if t.type == "bar"]
    assert len(bars) == 6
    for bar in bars:
        counts = np.asarray(bar.y, dtype=float)
        assert counts[0] + counts[-1] > 0.3 * counts.sum()  # the two end bins, at -1 and +1


def test_compare_draws_one_line_per_run_and_names_a_bad_id(study) -> None:
    reader, trials = study
    zeros, he = trial(trials, "zeros", "relu"), trial(trials, "he", "relu")
    page = layers.content(reader, {"run_id": zeros, "compare": f"{he}, nonsense"}, {"view": "ridgeline", **STEP0})
    assert "compare: 'nonsense' is not a run id" in text(page)
    names = {t.name for t in graph(page, ids.DEPTH_PROFILE).data}
    assert len(names) == 2 and any("init=zeros" in n for n in names) and any("init=he" in n for n in names)
    ridges = [f for f in figures(page)
              if any(t.type == "scatter" and t.fill == "toself" and str(t.name).startswith("step ") for t in f.data)]
    assert len(ridges) == 2  # a ridgeline per run, side by side (a ridge per snapshot, named by its step)
    notes = [a.text for a in graph(page, ids.DEPTH_PROFILE).layout.annotations]
    assert any("init=zeros" in n and "act std is 0 or not finite in 6 of 6 layers" in n for n in notes)


def test_heatmap_rows_are_the_snapshots(study) -> None:
    reader, trials = study
    run_id = trial(trials, "xavier", "tanh")
    page = layers.content(reader, {"run_id": run_id}, {"kind": "grad", "layer": "out", "view": "heatmap"})
    (heat,) = [t for f in figures(page) for t in f.data if t.type == "heatmap"]
    steps = reader.histogram_steps(run_id)
    assert list(heat.y) == [str(s) for s in steps]
    assert np.shape(heat.z) == (len(steps), len(heat.x))


class _Reader:
    """A stand-in store: one run with the given metric keys, and histogram parts with a problem."""

    def __init__(self, real: CachedReader | None = None, metrics: dict | None = None) -> None:
        self.real, self.metrics = real, metrics or {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def run(self, run_id: str) -> Any:
        if self.real is not None:
            return self.real.run(run_id)
        return SimpleNamespace(info=SimpleNamespace(run_id=run_id, run_name="plain"),
                               data=SimpleNamespace(metrics=self.metrics, tags={}))

    def histograms(self, run_id: str, steps: Any = None) -> tuple[pd.DataFrame, list[str]]:
        rows, problems = self.real.histograms(run_id, steps)
        return rows[rows["step"] != 1], [*problems, "histogram part diagnostics/hist-000000001.parquet of run "
                                          f"{run_id} could not be read (ArrowInvalid)"]


def test_a_run_without_diagnostics_says_so() -> None:
    reader = _Reader(metrics={"train/loss": 0.5})
    page = layers.content(reader, {"run_id": "a" * 32}, {})
    assert "this run has no diagnostics (diagnostics.preset: off)" in text(page)
    assert "this run has no diagnostics" in text(layers.controls(reader, "a" * 32))


def test_an_unreadable_part_is_a_notice_and_the_rest_is_drawn(study) -> None:
    reader, trials = study
    page = layers.content(_Reader(reader), {"run_id": trial(trials, "he", "tanh")},
                            {"kind": "weight", "layer": "out", **STEP0})
    assert "hist-000000001.parquet" in text(page) and "could not be read" in text(page)
    (heat,) = [t for f in figures(page) for t in f.data if t.type == "heatmap"]
    assert "1" not in list(heat.y) and "0" in list(heat.y)

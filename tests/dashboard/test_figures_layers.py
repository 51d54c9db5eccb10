"""The layers page's figures on hand-built frames: re-binning, heat maps, ridgelines, percentile bands, the depth
profile and the small multiples, checked on trace values a reader can verify by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dashboard.figures.histograms import rebin
from dashboard.figures.layers import (
    depth_profile,
    histogram_heatmap,
    layer_grid,
    percentile_bands,
    ridgeline,
    small_multiples,
)


def texts(fig) -> list[str]:
    return [a.text for a in fig.layout.annotations]


def hist_rows(entries) -> pd.DataFrame:
    """(step, kind, layer, edges, counts) rows."""
    return pd.DataFrame(entries, columns=["step", "kind", "layer", "edges", "counts"])


def diag_rows(values: dict) -> pd.DataFrame:
    """{(step, kind, layer, stat): value} as the diagnostics frame."""
    return pd.DataFrame([(*key, value) for key, value in values.items()],
                        columns=["step", "kind", "layer", "stat", "value"])


# -- rebin ----------------------------------------------------------------------------------------------

def test_rebin_splits_a_bin_by_overlap_and_keeps_mass_where_it_was() -> None:
    # one bin [0, 1) with 10 counts onto half-width bins: 5 and 5, nothing in [1, 2]
    assert rebin([0, 1, 2], [10, 0], [0, 0.5, 1, 1.5, 2]).tolist() == [5, 5, 0, 0]
    # source bins [0, 0.3) with 3 and [0.3, 1] with 7 onto [0, 0.5), [0.5, 1]: 3 + 7 * 0.2/0.7 = 5, and 5
    np.testing.assert_allclose(rebin([0, 0.3, 1], [3, 7], [0, 0.5, 1]), [5, 5])


@pytest.mark.parametrize("grid", [np.linspace(-1, 3, 9), np.linspace(-0.5, 0.5, 65), np.array([-5.0, 5.0])])
def test_rebin_conserves_the_total_when_the_grid_covers_the_edges(grid) -> None:
    rng = np.random.default_rng(0)
    edges = np.linspace(-0.5, 0.5, 33) if grid[0] == -0.5 else np.linspace(0, 2, 17)
    counts = rng.integers(0, 50, len(edges) - 1)
    moved = rebin(edges, counts, grid)
    assert moved.sum() == pytest.approx(counts.sum())
    assert (moved >= 0).all()


def test_rebin_keeps_a_spike_in_the_grid_bin_that_holds_it() -> None:
    edges = np.linspace(-0.5, 0.5, 33)  # a constant-zero tensor's histogram: [v - 0.5, v + 0.5]
    counts = np.zeros(32)
    counts[16] = 4096  # [0, 1/32)
    grid = np.linspace(-1, 1, 65)  # bins of 1/32 from -1: [0, 1/32) is bin 32
    moved = rebin(edges, counts, grid)
    assert moved[32] == pytest.approx(4096) and moved.sum() == pytest.approx(4096)


def test_rebin_drops_mass_outside_the_grid_and_refuses_bad_input() -> None:
    assert rebin([0, 1, 2], [4, 6], [1, 2]).tolist() == [6]
    with pytest.raises(ValueError, match="len"):
        rebin([0, 1], [1, 2], [0, 1])
    with pytest.raises(ValueError, match="grid"):
        rebin([0, 1], [1], [1])


# -- heat map and ridgeline ----------------------------------------------------------------------------

def _three_snapshots() -> pd.DataFrame:
    # step 0: everything in [0, 1); step 1: [1, 2]; step 4: half and half over [0, 4]; plus another kind
    return hist_rows([
        (0, "weight", "hidden.0.linear", [0.0, 0.5, 1.0], [3, 1]),
        (1, "weight", "hidden.0.linear", [1.0, 1.5, 2.0], [0, 8]),
        (4, "weight", "hidden.0.linear", [0.0, 2.0, 4.0], [5, 5]),
        (0, "grad", "hidden.0.linear", [0.0, 1.0], [7]),
    ])


def test_layer_grid_spans_the_global_range_and_keeps_each_rows_total() -> None:
    rows = _three_snapshots()
    steps, centres, matrix = layer_grid(rows[rows["kind"] == "weight"], bins=4)
    assert steps == [0, 1, 4]
    np.testing.assert_allclose(centres, [0.5, 1.5, 2.5, 3.5])  # the grid: 0..4 (global min..max) in 4 bins
    np.testing.assert_allclose(matrix, [[4, 0, 0, 0], [0, 8, 0, 0], [2.5, 2.5, 2.5, 2.5]])


def test_heatmap_rows_are_snapshots_in_order_and_columns_the_common_grid() -> None:
    fig = histogram_heatmap(_three_snapshots(), "weight", "hidden.0.linear", bins=4)
    (trace,) = fig.data
    assert np.shape(trace.z) == (3, 4)
    assert list(trace.y) == ["0", "1", "4"]
    assert fig.layout.yaxis.type == "category"  # log-spaced steps get equal rows
    np.testing.assert_allclose(trace.x, [0.5, 1.5, 2.5, 3.5])
    np.testing.assert_allclose(trace.z, [[1, 0, 0, 0], [0, 1, 0, 0], [1, 1, 1, 1]])  # each row / its max
    logged = histogram_heatmap(_three_snapshots(), "weight", "hidden.0.linear", scale="log1p", bins=4)
    np.testing.assert_allclose(logged.data[0].z[0], np.log1p([4, 0, 0, 0]))


def test_heatmap_of_every_layer_goes_in_depth_order() -> None:
    rows = hist_rows([(0, "act", name, [0.0, 1.0], [1]) for name in ("out", "hidden.10", "hidden.2")])
    fig = histogram_heatmap(rows, "act")
    assert [t.name for t in fig.data] == ["hidden.2", "hidden.10", "out"]
    assert [a.text for a in fig.layout.annotations] == ["hidden.2", "hidden.10", "out"]


def test_ridgeline_draws_one_filled_ridge_per_snapshot_offset_by_its_position() -> None:
    fig = ridgeline(_three_snapshots(), "weight", "hidden.0.linear", bins=4)
    assert len(fig.data) == 3
    by_name = {t.name: t for t in fig.data}
    assert set(by_name) == {"step 0", "step 1", "step 4"}
    assert all(t.fill == "toself" for t in fig.data)
    for position, name in enumerate(["step 0", "step 1", "step 4"]):
        y = np.asarray(by_name[name].y)
        assert y[0] == y[-1] == position  # the ridge's base line
        assert y.max() > position  # and its peak above it
    assert list(fig.layout.yaxis.ticktext) == ["0", "1", "4"]


# -- percentile bands ---------------------------------------------------------------------------------

def test_percentile_bands_fill_between_the_percentiles_and_draw_the_median() -> None:
    values = {}
    for step in (0, 10):
        for i, stat in enumerate(("p01", "p05", "p25", "p50", "p75", "p95", "p99")):
            values[(step, "act", "hidden.0.linear", stat)] = i + step
        values[(step, "act", "hidden.0.linear", "mean")] = 3.5 + step
        values[(step, "grad", "hidden.0.linear", "p50")] = -1.0
    fig = percentile_bands(diag_rows(values), "act", "hidden.0.linear")
    named = {t.name: t for t in fig.data if t.name}
    assert {"p01-p99", "p05-p95", "p25-p75", "p50", "mean"} <= set(named)
    band = named["p01-p99"]  # up along p99, back along p01
    assert list(band.x) == [0, 10, 10, 0] and list(band.y) == [6, 16, 10, 0] and band.fill == "toself"
    assert list(named["p50"].y) == [3, 13] and list(named["p50"].x) == [0, 10]


# -- depth profile ------------------------------------------------------------------------------------

def _profile(run: str, std: dict[str, float], grad: dict[str, float], step: int = 0) -> pd.DataFrame:
    values = {(step, "act", layer, "std"): v for layer, v in std.items()}
    values |= {(step, "grad", layer, "norm"): v for layer, v in grad.items()}
    return diag_rows(values)


def test_depth_profile_orders_layers_from_input_to_output_on_log_axes() -> None:
    shrinking = _profile("small", {"hidden.10": 1e-6, "hidden.2": 1e-2, "hidden.1": 1e-1},
                         {"hidden.10": 1e-7, "hidden.2": 1e-7, "hidden.1": 1e-7, "out": 1e-7})
    flat = _profile("he", {"hidden.1": 0.8, "hidden.2": 0.9, "hidden.10": 0.7},
                    {"hidden.1": 1.0, "hidden.2": 2.0, "hidden.10": 2.5, "out": 1.5})
    fig = depth_profile({"std 0.01": shrinking, "he": flat}, step=0)
    act = [t for t in fig.data if t.xaxis == "x"]
    grad = [t for t in fig.data if t.xaxis == "x2"]
    assert [t.name for t in act] == ["std 0.01", "he"]
    assert list(act[0].x) == ["hidden.1", "hidden.2", "hidden.10"]  # natural order: hidden.2 before hidden.10
    np.testing.assert_allclose(act[0].y, [1e-1, 1e-2, 1e-6])
    assert list(grad[1].x) == ["hidden.1", "hidden.2", "hidden.10", "out"]
    assert fig.layout.yaxis.type == "log" and fig.layout.yaxis2.type == "log"
    assert list(fig.layout.xaxis.categoryarray) == ["hidden.1", "hidden.2", "hidden.10", "out"]


def test_depth_profile_notes_zero_values_it_cannot_draw_and_uses_the_nearest_snapshot() -> None:
    zeros = _profile("zeros", {"hidden.0": 0.0, "hidden.1": 0.0}, {"hidden.0": 0.0, "hidden.1": 0.0})
    later = _profile("later", {"hidden.0": 0.5, "hidden.1": 0.4}, {"hidden.0": 1.0, "hidden.1": 1.0}, step=8)
    fig = depth_profile({"zeros <b>": zeros, "later": later}, step=0)
    act = [t for t in fig.data if t.xaxis == "x"]
    assert np.isnan(np.asarray(act[0].y, dtype=float)).all()
    assert act[0].name == "zeros &lt;b&gt;"  # store text is inert in Plotly labels
    assert act[1].name == "later (step 8)"
    assert any("0 or not finite in 2 of 2 layers" in t for t in texts(fig))


def test_depth_profile_without_data_says_what_is_missing() -> None:
    assert texts(depth_profile({}, 0)) == ["no runs to profile"]
    other = diag_rows({(0, "weight", "hidden.0", "norm"): 1.0})
    assert texts(depth_profile({"run": other}, 0)) == ["no act std or grad norm recorded at step 0"]
    assert "lack the column" in texts(depth_profile({"run": pd.DataFrame({"step": [0]})}, 0))[0]


# -- small multiples and missing data ---------------------------------------------------------------------

def test_small_multiples_draw_every_layers_histogram_at_the_step() -> None:
    rows = hist_rows([
        (0, "act", "hidden.1", [-1.0, 0.0, 1.0], [10, 90]),
        (0, "act", "hidden.0", [-1.0, -0.5, 1.0], [60, 40]),
        (8, "act", "hidden.0", [-1.0, 1.0], [100]),
        (0, "weight", "hidden.0", [-1.0, 1.0], [5]),
    ])
    fig = small_multiples(rows, 0, "act")
    assert [t.name for t in fig.data] == ["hidden.0", "hidden.1"]
    np.testing.assert_allclose(fig.data[0].x, [-0.75, 0.25])
    np.testing.assert_allclose(fig.data[0].width, [0.5, 1.5])
    assert list(fig.data[0].y) == [60, 40] and list(fig.data[1].y) == [10, 90]


def test_figures_without_their_data_return_an_empty_figure_saying_why() -> None:
    rows = _three_snapshots()
    assert texts(histogram_heatmap(rows, "act")) == ["no act histograms"]
    assert texts(histogram_heatmap(rows, "weight", "out")) == ["no weight histograms for layer out"]
    assert texts(histogram_heatmap(pd.DataFrame({"step": [0]}), "weight"))[0].startswith("the histogram rows lack")
    assert texts(ridgeline(rows, "act")) == ["no act histograms"]
    assert texts(small_multiples(rows, 2, "weight")) == ["no weight histogram at step 2"]
    assert texts(percentile_bands(diag_rows({(0, "act", "h", "std"): 1.0}), "act")) == \
        ["no percentiles of act recorded"]
    assert texts(histogram_heatmap(rows, "weight", scale="cube")) == ["scale = 'cube': expected 'row' or 'log1p'"]

"""On-device diagnostics statistics against slow, obvious numpy twins and hand-checked numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tracking import stats
from tracking.layout import DISTRIBUTION_NAMES, PERCENTILE_NAMES, PERCENTILES, SMALL_WEIGHT, STAT_NAMES
from tracking.stats import (
    SATURATION,
    distribution_stats,
    frac_dead,
    frac_saturated,
    frac_small,
    histogram,
    kind_stats,
    symmetry,
)

# Twins: numpy, float64, loops where a loop is the obvious way.


def np_distribution_stats(x: np.ndarray) -> dict[str, float]:
    """The finite entries in float64, then numpy's own mean, std, percentile."""
    values = x.reshape(-1).astype(np.float64)
    finite = values[np.isfinite(values)]
    out = {"nonfinite": float(values.size - finite.size)}
    if finite.size == 0:
        return out | {name: math.nan for name in DISTRIBUTION_NAMES if name != "nonfinite"}
    out |= {
        "mean": finite.mean(),
        "std": finite.std(),  # ddof 0
        "norm": math.sqrt(sum(v * v for v in finite)),
        "min": finite.min(),
        "max": finite.max(),
    }
    for q in PERCENTILES:
        out[f"p{q:02d}"] = np.percentile(finite, q)  # linear interpolation
    return out


def np_frac_dead(a: np.ndarray) -> float:
    units = a.shape[1]
    dead = [np.all(a[:, u] == 0) for u in range(units)]
    return sum(dead) / units


def np_symmetry(x: np.ndarray, unit_dim: int) -> float:
    by_unit = np.moveaxis(x.astype(np.float64), unit_dim, 0).reshape(x.shape[unit_dim], -1)  # (U, N)
    t = by_unit.std()
    if t == 0:
        return 1.0
    s = np.mean([by_unit[:, j].std() for j in range(by_unit.shape[1])])
    return min(max(1 - s / t, 0.0), 1.0)


def np_histogram(x: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """numpy.histogram of the finite entries, with numpy's own equal-width edges."""
    values = x.reshape(-1).astype(np.float64)
    finite = values[np.isfinite(values)]
    low, high = finite.min(), finite.max()
    if low == high:
        low, high = low - 0.5, high + 0.5
    return np.histogram(finite, bins=bins, range=(low, high))[::-1]  # (edges, counts)


def _assert_stats_close(got: dict[str, torch.Tensor], want: dict[str, float], rtol: float, atol: float) -> None:
    assert set(got) == set(want)
    for name, value in got.items():
        assert value.shape == () and value.dtype == torch.float64, name
        np.testing.assert_allclose(value.numpy(), want[name], rtol=rtol, atol=atol, err_msg=name)


def _with_nonfinite(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """x with a few entries set to NaN, +inf and -inf at random places."""
    flat = x.clone().reshape(-1)
    places = torch.randperm(flat.numel(), generator=gen)[:3]
    flat[places] = torch.tensor([math.nan, math.inf, -math.inf], dtype=x.dtype)[: places.numel()]
    return flat.reshape(x.shape)


# distribution_stats


def test_distribution_stats_by_hand() -> None:
    x = torch.tensor([[3.0, -4.0], [math.nan, 0.0], [1.0, math.inf]])  # finite: 3, -4, 0, 1
    got = distribution_stats(x)
    assert list(got) == list(DISTRIBUTION_NAMES)
    assert got["mean"] == 0.0 and got["norm"] == pytest.approx(math.sqrt(26.0))  # float32 inside
    assert got["std"] == pytest.approx(math.sqrt(26.0 / 4))  # population std: divide by 4, not 3
    assert got["min"] == -4.0 and got["max"] == 3.0 and got["nonfinite"] == 2.0
    assert got["p50"] == pytest.approx(0.5)  # sorted -4, 0, 1, 3: halfway between 0 and 1
    assert got["p25"] == pytest.approx(-1.0)  # rank 0.75 between -4 and 0: -4 + 0.75 * 4


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("seed", range(6))
def test_distribution_stats_match_numpy(dtype: torch.dtype, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    shapes = [(257,), (32, 17), (8, 4, 9), (4, 3, 5, 5), (1,), (2, 1)]
    x = (torch.randn(shapes[seed], generator=gen, dtype=torch.float64) * 3 + seed).to(dtype)
    if seed % 2:
        x = _with_nonfinite(x, gen)
    rtol, atol = (1e-12, 1e-12) if dtype == torch.float64 else (2e-5, 2e-5)
    _assert_stats_close(distribution_stats(x), np_distribution_stats(x.double().numpy()), rtol, atol)


def test_distribution_stats_keep_std_when_mean_dwarfs_it() -> None:
    x = 1000.0 + torch.randn(10_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 1e-3
    x = x.float()
    want = np_distribution_stats(x.numpy())
    assert distribution_stats(x)["std"] == pytest.approx(want["std"], rel=1e-3)


def test_distribution_stats_nothing_finite_is_nan() -> None:
    got = distribution_stats(torch.tensor([math.nan, math.inf, -math.inf]))
    assert got["nonfinite"] == 3.0
    assert all(math.isnan(got[name]) for name in DISTRIBUTION_NAMES if name != "nonfinite")
    empty = distribution_stats(torch.zeros(0, 5))
    assert empty["nonfinite"] == 0.0 and math.isnan(empty["mean"]) and math.isnan(empty["p50"])


def test_device_percentiles_subsample_past_the_quantile_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    # The accelerator path (torch.nanquantile), run here on the CPU tensor directly.
    monkeypatch.setattr(stats, "_QUANTILE_MAX_NUMEL", 100)
    gen = torch.Generator().manual_seed(1)
    x = _with_nonfinite(torch.randn(40, 25, generator=gen), gen).reshape(-1)  # 1000 entries: every 10th one
    finite = torch.isfinite(x)
    low, percentiles, high = stats._ends_and_percentiles_on_device(x, finite, torch.where(finite, x, math.nan))
    full = np_distribution_stats(x.numpy())
    sample = np_distribution_stats(x[::10].numpy())
    assert (low.item(), high.item()) == (pytest.approx(full["min"]), pytest.approx(full["max"]))
    for name, got in zip(PERCENTILE_NAMES, percentiles.tolist(), strict=True):
        assert got == pytest.approx(sample[name], rel=1e-5, abs=1e-6), name


def test_device_percentiles_equal_the_host_ones() -> None:
    gen = torch.Generator().manual_seed(2)
    x = _with_nonfinite(torch.randn(3000, generator=gen), gen)
    finite = torch.isfinite(x)
    with_nan = torch.where(finite, x, math.nan)
    low, percentiles, high = stats._ends_and_percentiles_on_device(x, finite, with_nan)
    host = stats._sorted_percentiles_on_host(with_nan, int(finite.sum()))
    torch.testing.assert_close(torch.cat([low.reshape(1), percentiles, high.reshape(1)]), host)


# frac_small, frac_dead, frac_saturated


def test_frac_small_by_hand_and_twin() -> None:
    w = torch.tensor([0.0, 5e-4, -5e-4, 1e-3, -0.2, 0.3, math.nan, 2e-3])
    assert frac_small(w) == pytest.approx(3 / 8)  # 0, +-5e-4; 1e-3 itself is not below the threshold
    assert frac_small(w, threshold=0.25) == pytest.approx(6 / 8)
    x = torch.randn(64, 33, generator=torch.Generator().manual_seed(0)) * 1e-3
    want = np.mean([abs(v) < SMALL_WEIGHT for v in x.reshape(-1).tolist()])
    assert frac_small(x).item() == pytest.approx(want)


def test_frac_dead_by_hand() -> None:
    a = torch.tensor([[1.0, 0.0, 2.0], [0.5, 0.0, 0.0], [0.0, 0.0, 3.0], [2.0, 0.0, 0.0]])  # (4, 3), column 1 dead
    assert frac_dead(a) == pytest.approx(1 / 3)
    assert frac_dead(torch.zeros(5, 4)) == 1.0 and frac_dead(torch.ones(5, 4)) == 0.0


@pytest.mark.parametrize("shape", [(16, 10), (8, 6, 7), (4, 5, 3, 3)])
def test_frac_dead_matches_twin(shape: tuple[int, ...]) -> None:
    gen = torch.Generator().manual_seed(len(shape))
    a = torch.relu(torch.randn(shape, generator=gen))
    a[:, ::3] = 0.0  # every third unit (channel) dead
    a[:, 1] = 0.0
    a[-1, 1].reshape(-1)[-1] = 1.0  # unit 1 alive at a single example and position
    assert frac_dead(a).item() == pytest.approx(np_frac_dead(a.numpy()))
    assert frac_dead(a) == pytest.approx(len(range(0, shape[1], 3)) / shape[1])


def test_frac_dead_refuses_one_dim() -> None:
    with pytest.raises(ValueError, match="a must be"):
        frac_dead(torch.zeros(5))


def test_frac_saturated_by_hand() -> None:
    assert frac_saturated(torch.tensor([0.995, -0.999, 0.5, 0.0]), "tanh") == pytest.approx(0.5)
    assert frac_saturated(torch.tensor([0.005, 0.995, 0.5, 0.02]), "sigmoid") == pytest.approx(0.5)
    with pytest.raises(ValueError, match="activation.*'relu'"):
        frac_saturated(torch.zeros(3), "relu")


def test_frac_saturated_matches_twin() -> None:
    z = torch.randn(32, 5, 8, generator=torch.Generator().manual_seed(0)) * 3
    a_tanh, a_sigmoid = torch.tanh(z), torch.sigmoid(z)
    want_tanh = np.mean([abs(v) > SATURATION for v in a_tanh.reshape(-1).tolist()])
    want_sigmoid = np.mean([v < 1 - SATURATION or v > SATURATION for v in a_sigmoid.reshape(-1).tolist()])
    assert frac_saturated(a_tanh, "tanh").item() == pytest.approx(want_tanh)
    assert frac_saturated(a_sigmoid, "sigmoid").item() == pytest.approx(want_sigmoid)
    assert 0.1 < want_tanh < 0.9  # std 3: a fair share of each


# symmetry


def test_symmetry_by_hand() -> None:
    gen = torch.Generator().manual_seed(0)
    assert symmetry(torch.zeros(8, 5), unit_dim=0) == 1.0
    assert symmetry(torch.full((8, 5), 0.1), unit_dim=0) == 1.0
    assert symmetry(torch.randn(1, 5, generator=gen).expand(8, 5), unit_dim=0) == 1.0  # every row one row
    assert symmetry(torch.randn(256, 256, generator=gen), unit_dim=0) < 0.1
    # Rows 1, -1 and 0, 0: column stds across units 1 and 0 (s = 0.5), std of all entries sqrt(0.5).
    assert symmetry(torch.tensor([[1.0, 0.0], [-1.0, 0.0]]), unit_dim=0) == pytest.approx(1 - 0.5 / math.sqrt(0.5))


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64])
def test_symmetry_is_exactly_one_whatever_the_rounding_of_a_mean(dtype: torch.dtype) -> None:
    gen = torch.Generator().manual_seed(2)
    assert symmetry(torch.full((300, 257), 0.1, dtype=dtype), unit_dim=0) == 1.0  # sum(0.1 * n) / n != 0.1
    row = torch.randn(1, 257, generator=gen, dtype=torch.float64).to(dtype)
    assert symmetry(row.expand(300, 257).clone(), unit_dim=0) == 1.0
    conv = torch.randn(1, 3, 5, 5, generator=gen).to(dtype).expand(16, 3, 5, 5)  # (out, in, kh, kw), one filter
    assert symmetry(conv, unit_dim=0) == 1.0
    assert math.isnan(symmetry(torch.zeros(0, 4), unit_dim=0))


def test_symmetry_of_activations_uses_dim_one() -> None:
    gen = torch.Generator().manual_seed(1)
    a = torch.randn(16, 1, 7, generator=gen).expand(16, 6, 7)  # (B, C, L): every channel the same
    assert symmetry(a, unit_dim=1) == 1.0
    assert symmetry(a, unit_dim=0) < 0.3  # the examples still differ


@pytest.mark.parametrize(("shape", "unit_dim"), [((12, 9), 0), ((10, 4, 3, 3), 0), ((16, 6, 5), 1), ((8, 4, 3, 3), 1)])
def test_symmetry_matches_twin(shape: tuple[int, ...], unit_dim: int) -> None:
    gen = torch.Generator().manual_seed(sum(shape))
    x = torch.randn(shape, generator=gen, dtype=torch.float64)
    x = x + 2 * x.select(unit_dim, 0).unsqueeze(unit_dim)  # partly shared between units: symmetry in (0, 1)
    want = np_symmetry(x.numpy(), unit_dim)
    assert 0.05 < want < 0.95
    assert symmetry(x, unit_dim).item() == pytest.approx(want, rel=1e-10)
    assert symmetry(x.float(), unit_dim).item() == pytest.approx(want, rel=1e-5)


# update_ratio: ||after - before|| / ||before|| of one step (~1e-3 is healthy); inf when ||before|| == 0 and the
# update is not, 0 when both are 0


def update_ratio(before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
    return kind_stats("update", after, before=before)["update_ratio"]


def test_update_ratio_by_hand() -> None:
    before = torch.tensor([[3.0, 4.0]])  # norm 5
    after = torch.tensor([[3.0, 4.005]])  # update norm 0.005
    assert update_ratio(before, after) == pytest.approx(1e-3, rel=1e-4)
    assert update_ratio(torch.zeros(2, 2), torch.zeros(2, 2)) == 0.0
    assert update_ratio(torch.zeros(2, 2), torch.ones(2, 2)) == math.inf
    assert update_ratio(torch.ones(2, 2), torch.ones(2, 2)) == 0.0
    with pytest.raises(ValueError, match="one shape"):
        update_ratio(torch.zeros(2, 2), torch.zeros(4))


def test_update_ratio_of_bfloat16_weights_is_not_rounding() -> None:
    before = torch.tensor([1.0, 2.0, 2.0], dtype=torch.bfloat16)  # norm 3
    after = before + torch.tensor([0.0, 0.0, 0.03], dtype=torch.bfloat16)
    want = np.linalg.norm(after.double().numpy() - before.double().numpy()) / 3.0
    assert update_ratio(before, after).item() == pytest.approx(want, rel=1e-6)


# histogram


def _check_histogram(x: torch.Tensor, bins: int) -> None:
    edges, counts = histogram(x, bins)
    assert edges.shape == (bins + 1,) and counts.shape == (bins,)
    assert edges.dtype == counts.dtype == torch.float64
    want_edges, want_counts = np_histogram(x.double().numpy(), bins)
    np.testing.assert_array_equal(edges.numpy(), want_edges)  # numpy.linspace, bit for bit
    values = x.reshape(-1).double().numpy()
    finite = values[np.isfinite(values)]
    np.testing.assert_array_equal(counts.numpy(), np.histogram(finite, bins=edges.numpy())[0])
    np.testing.assert_array_equal(counts.numpy(), want_counts)
    assert counts.sum() == finite.size


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64])
def test_histogram_matches_numpy_on_random_tensors(dtype: torch.dtype) -> None:
    gen = torch.Generator().manual_seed(7)
    for trial in range(60):
        shape = [(50,), (13, 7), (4, 3, 11), (2, 3, 4, 5)][trial % 4]
        bins = [1, 2, 7, 10, 64, 100][trial % 6]
        x = torch.randn(shape, generator=gen, dtype=torch.float64) * 10 ** (trial % 5 - 2)
        if trial % 3 == 0:
            x = x.round(decimals=1)  # many duplicates
        if trial % 7 == 0:
            x = _with_nonfinite(x, gen)
        _check_histogram(x.to(dtype), bins)


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64])
def test_histogram_values_exactly_on_edges(dtype: torch.dtype) -> None:
    gen = torch.Generator().manual_seed(3)
    x = torch.randint(0, 17, (500,), generator=gen).to(dtype)
    x[:2] = torch.tensor([0.0, 16.0], dtype=dtype)  # edges 0, 1, ..., 16: every value sits on an edge
    _check_histogram(x, 16)
    edges, counts = histogram(x, 16)
    assert counts[-1] == ((x == 15) | (x == 16)).sum()  # the last bin is closed
    _check_histogram(x / 8, 32)  # quarter and eighth steps: edges 0, 0.0625, ... exact in binary


def test_histogram_by_hand() -> None:
    edges, counts = histogram(torch.tensor([0.0, 1.0, 1.0, 2.0, 3.0, 4.0, math.nan]), 4)
    assert edges.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert counts.tolist() == [1.0, 2.0, 1.0, 2.0]  # 3 and 4 share the closed last bin


def test_histogram_constant_and_nothing_finite() -> None:
    edges, counts = histogram(torch.full((3, 4), 2.5), 5)
    assert edges[0] == 2.0 and edges[-1] == 3.0 and bool((edges.diff() > 0).all())
    assert counts.tolist() == [0.0, 0.0, 12.0, 0.0, 0.0]
    _check_histogram(torch.full((3, 4), 2.5), 4)  # the value on the middle edge
    edges, counts = histogram(torch.tensor([math.nan, math.inf]), 3)
    assert bool(edges.isnan().all()) and counts.tolist() == [0.0, 0.0, 0.0]
    edges, counts = histogram(torch.zeros(0), 3)
    assert bool(edges.isnan().all()) and counts.tolist() == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="bins"):
        histogram(torch.zeros(3), 0)


# kind_stats


def test_parameters_need_no_detach() -> None:
    weight = torch.nn.Linear(5, 4).weight  # requires grad
    got = kind_stats("weight", weight)
    assert not any(v.requires_grad for v in got.values())
    assert not any(t.requires_grad for t in histogram(weight, 8))


def test_kind_stats_gives_each_kind_its_table() -> None:
    gen = torch.Generator().manual_seed(0)
    w, a = torch.randn(6, 4, generator=gen), torch.tanh(torch.randn(8, 6, 3, generator=gen))
    assert tuple(kind_stats("weight", w)) == STAT_NAMES["weight"]
    assert tuple(kind_stats("bias", w[0])) == STAT_NAMES["bias"]
    assert tuple(kind_stats("grad", w)) == STAT_NAMES["grad"]
    assert tuple(kind_stats("preact", a, unit_dim=1)) == STAT_NAMES["preact"]
    assert tuple(kind_stats("act", a, activation="tanh", unit_dim=1)) == STAT_NAMES["act"]
    relu_stats = kind_stats("act", torch.relu(a), activation=None, unit_dim=1)
    assert tuple(relu_stats) == tuple(n for n in STAT_NAMES["act"] if n != "frac_saturated")
    assert tuple(kind_stats("act", a, activation="relu", unit_dim=1)) == tuple(relu_stats)
    assert tuple(kind_stats("update", w + 1e-3, before=w)) == STAT_NAMES["update"]


def test_kind_stats_values_are_the_functions() -> None:
    gen = torch.Generator().manual_seed(1)
    w, a = torch.randn(6, 4, generator=gen), torch.sigmoid(3 * torch.randn(8, 6, generator=gen))
    got = kind_stats("weight", w)
    assert got["symmetry"] == symmetry(w, 0) and got["frac_small"] == frac_small(w)
    assert got["p50"] == distribution_stats(w)["p50"]
    got = kind_stats("act", a, activation="sigmoid", unit_dim=1)
    assert got["frac_saturated"] == frac_saturated(a, "sigmoid")
    after = w + 0.01
    got = kind_stats("update", after, before=w)
    assert got["norm"].item() == pytest.approx(0.01 * math.sqrt(24), rel=1e-4)
    assert got["update_ratio"] == update_ratio(w, after)


def test_kind_stats_errors_name_what_is_wrong() -> None:
    with pytest.raises(ValueError, match=r"kind must be one of \('weight', 'bias'.*got 'weights'"):
        kind_stats("weights", torch.zeros(2, 2))
    with pytest.raises(ValueError, match="before="):
        kind_stats("update", torch.zeros(2, 2))


# The host is never asked for a value: on the meta device (no data) any read-back raises.


def test_meta_device_raises_on_a_read_back() -> None:
    x = torch.ones(4, device="meta")
    with pytest.raises(RuntimeError):
        x.sum().item()
    with pytest.raises(NotImplementedError):
        x[x > 0]  # boolean indexing needs its size from the host


@pytest.mark.parametrize("kind", list(STAT_NAMES))
def test_no_host_read_back(kind: str) -> None:
    x = torch.randn(16, 8, 5, device="meta")
    got = kind_stats(kind, x, before=torch.randn(16, 8, 5, device="meta"), activation="tanh", unit_dim=1)
    assert all(v.device.type == "meta" and v.shape == () and v.dtype == torch.float64 for v in got.values())
    edges, counts = histogram(x, 64)
    assert edges.device.type == counts.device.type == "meta"
    parts = torch.cat([torch.stack(list(got.values())), edges, counts])  # what the caller does per snapshot
    assert parts.shape == (len(got) + 65 + 64,)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_histogram_values_set_to_interior_edges(dtype: torch.dtype) -> None:
    gen = torch.Generator().manual_seed(11)
    for bins in (3, 10, 64):
        x = torch.randn(300, generator=gen, dtype=torch.float64)
        edges = np.linspace(x.min().item(), x.max().item(), bins + 1)
        x[torch.randperm(300, generator=gen)[: bins - 1]] = torch.from_numpy(edges[1:-1])  # on (or next to) edges
        _check_histogram(x.to(dtype), bins)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_histogram_arithmetic_binning_on_edge_neighbours(dtype: torch.dtype) -> None:
    """float32 and narrower bin by (x - low) / step plus a correction: values next to every edge, at every scale."""
    gen = torch.Generator().manual_seed(5)
    info = torch.finfo(dtype)
    cases = [(1.0, 0.0, 64), (info.tiny * 1e3, 0.0, 10), (info.max / 1e3, 0.0, 7), (1e-1, 1000.0, 64),
             (1.0, -3e4, 1000), (1.0, 0.0, 2**16)]  # (scale, offset, bins): tiny, huge, narrow and offset ranges
    for trial, (scale, offset, bins) in enumerate(cases):
        base = (torch.rand(200, generator=gen, dtype=torch.float64) * scale + offset).to(dtype)
        low, high = base.min().double().item(), base.max().double().item()
        interior = torch.from_numpy(np.linspace(low, high, bins + 1)[1:-1]).to(dtype)  # edges rounded to dtype
        neighbours = torch.cat([interior, interior.nextafter(torch.tensor(math.inf, dtype=dtype)),
                                interior.nextafter(torch.tensor(-math.inf, dtype=dtype))])
        x = torch.cat([base, neighbours.clamp(base.min(), base.max())])
        _check_histogram(x, bins) if trial % 2 else _check_histogram(x[torch.randperm(x.numel(), generator=gen)], bins)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("value", [2.0**53, -(2.0**52) - 2, 1e16, 3e38])
def test_histogram_constant_too_large_to_widen(dtype: torch.dtype, value: float) -> None:
    """|v| >= 2**52: v +- 0.5 rounds back to v and the edges are equal (numpy itself refuses); every entry
    still lands where numpy.histogram with those edges puts it."""
    x = torch.full((5,), value, dtype=dtype)
    edges, counts = histogram(x, 4)
    assert bool((edges.diff() >= 0).all()) and counts.sum() == 5
    np.testing.assert_array_equal(counts.numpy(), np.histogram(x.double().numpy(), bins=edges.numpy())[0])


@pytest.mark.parametrize(
    ("low", "high", "bins"),
    [(0.00018310546875, 0.08722686767578125, 144), (0.5927734375, 5.3095703125, 57), (-177.5, 3328.0, 196),
     (-7.43865966796875e-05, 0.00015297532081604004, 110)],
)
def test_histogram_float32_entries_on_float64_edges(low: float, high: float, bins: int) -> None:
    """Ranges found by search where floor((x - low) / step) is one bin off for an entry on an edge, both ways:
    the comparisons with the edges must put it back."""
    edges = np.linspace(low, high, bins + 1)
    on_edges = edges[edges.astype(np.float32) == edges]  # the edges a float32 entry can sit on exactly
    rounded = edges.astype(np.float32)
    near = np.concatenate([on_edges, rounded, np.nextafter(rounded, np.float32(np.inf)),
                           np.nextafter(rounded, np.float32(-np.inf))])
    x = torch.from_numpy(np.concatenate([[low, high], near.clip(low, high)]).astype(np.float32))
    _check_histogram(x, bins)


# summarize: numpy on the host for CPU tensors, torch on the device elsewhere; the same numbers


@pytest.mark.parametrize("kind", sorted(STAT_NAMES))
@pytest.mark.parametrize("case", ["random", "nonfinite", "constant", "zeros", "relu"])
def test_summarize_on_the_host_equals_the_torch_path(kind: str, case: str) -> None:
    gen = torch.Generator().manual_seed(hash((kind, case)) % 2**31)
    x = torch.randn(64, 12, 5, generator=gen)
    if case == "nonfinite":
        x = _with_nonfinite(x, gen)
    elif case == "constant":
        x = torch.full((64, 12, 5), 0.25)
    elif case == "zeros":
        x = torch.zeros(64, 12, 5)
    elif case == "relu":
        x = torch.relu(x)
        x[:, 3] = 0.0  # a dead unit
    before = torch.randn(64, 12, 5, generator=gen) if kind == "update" else None
    activation = "tanh" if kind == "act" else None
    if kind == "act":
        x = torch.tanh(3 * x) if case == "random" else x
    unit_dim = 1 if kind in ("act", "preact") else 0
    got = stats.summarize(kind, x, 16, before=before, activation=activation, unit_dim=unit_dim)
    want = kind_stats(kind, x, before=before, activation=activation, unit_dim=unit_dim)
    want_edges, want_counts = histogram(x if before is None else x - before, 16)
    assert got.names == tuple(want)
    # numpy sums in float64, torch in float32 on the CPU: the same numbers to float32 precision.
    torch.testing.assert_close(got.values, torch.stack(list(want.values())), rtol=1e-5, atol=1e-7, equal_nan=True)
    torch.testing.assert_close(got.edges, want_edges, rtol=0, atol=0, equal_nan=True)
    torch.testing.assert_close(got.counts, want_counts, rtol=0, atol=0)


def test_summarize_histogram_equals_numpy_on_edges_and_duplicates() -> None:
    x = torch.tensor([0.0, 0.0, 0.25, 0.5, 0.5, 0.75, 1.0, 1.0, math.nan, math.inf])
    got = stats.summarize("bias", x, 4)
    counts, edges = np.histogram(np.array([0.0, 0.0, 0.25, 0.5, 0.5, 0.75, 1.0, 1.0]), bins=4)
    np.testing.assert_array_equal(got.edges.numpy(), edges)
    np.testing.assert_array_equal(got.counts.numpy(), counts)  # [2, 1, 2, 3]: the last bin holds 1.0
    assert dict(zip(got.names, got.values.tolist(), strict=True))["nonfinite"] == 2.0

"""Per-layer diagnostics statistics and histograms, computed on the device where the tensor lives.

Pure torch functions over one tensor (a weight, a bias, a gradient, a batch of pre-activations or
activations, or a weight before and after an optimizer step). Every result is a small float64 tensor
on `x.device`; nothing here moves data to the host (no `.item()`, `.cpu()`, `.tolist()`, no boolean
indexing, whose output size would have to be read back). The caller stacks everything from one
snapshot and copies it to the host in one transfer.

Nothing here records autograd history (torch.no_grad), so a parameter can be passed as it is.
Non-finite entries (NaN, +-inf) are counted (`nonfinite`) and otherwise ignored, so one NaN does not
hide the rest of the distribution. Each optimized function has a slow numpy twin in
tests/tracking/test_stats.py.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from tracking.layout import DISTRIBUTION_NAMES, PERCENTILE_NAMES, PERCENTILES, SMALL_WEIGHT, STAT_NAMES

# Beyond |a| = 0.99 the local slope is under 2% of its peak for tanh (1 - a^2 < 0.0199, |z| > 2.65) and
# under 4% for sigmoid (a (1 - a) < 0.0099 vs 0.25): the gradient through the unit has all but vanished.
SATURATION = 0.99

# torch.quantile refuses inputs with more than 2**24 entries.
_QUANTILE_MAX_NUMEL = 2**24
# Histograms of these dtypes bin by arithmetic (exact, see `_bin_index_by_arithmetic`), others by search.
_FAST_BINNING_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
_FAST_BINNING_MAX_BINS = 2**16

SATURATING_ACTIVATIONS = ("tanh", "sigmoid")


@torch.no_grad()
def distribution_stats(x: Tensor) -> dict[str, Tensor]:
    """Mean, std, norm, min, max, percentiles and non-finite count of the entries of `x`.

    - std is the population std (ddof 0), as numpy.std's default.
    - norm is the L2 norm of all (finite) entries, the Frobenius norm of a matrix.
    - p01 ... p99 use linear interpolation, as numpy.percentile's default. On the CPU they come from
      numpy's sort of every entry; on an accelerator from torch.nanquantile, and there tensors with
      more than 2**24 entries (torch.quantile's limit) get them from a deterministic strided subsample
      x.flatten()[::ceil(numel / 2**24)]; min and max still come from every entry.
    - nonfinite is the number of NaN / inf entries (a float, to sit with the others).
    All but nonfinite are computed on the finite entries only, and are NaN when there are none.
    Every value is a 0-dim float64 tensor on x.device.
    """
    n = x.numel()
    flat = x.reshape(-1).to(_work_dtype(x.dtype))  # (n,)
    if n == 0:
        nan = torch.full((len(DISTRIBUTION_NAMES),), math.nan, dtype=torch.float64, device=x.device)
        nan[-1] = 0.0  # no entries, none of them non-finite
        return dict(zip(DISTRIBUTION_NAMES, nan.unbind(), strict=True))
    finite = _finite(flat)  # (n,)
    count = finite.sum()  # () int64, the number of finite entries
    count_f = count.to(flat.dtype)
    clean = torch.where(finite, flat, 0.0)  # (n,) non-finite entries contribute nothing to sums
    mean = clean.sum() / count_f
    # Two passes (mean, then squared deviations) keep the std accurate when |mean| >> std.
    std = torch.linalg.vector_norm(torch.where(finite, flat - mean, 0.0)) / count_f.sqrt()
    norm = torch.linalg.vector_norm(clean)
    with_nan = torch.where(finite, flat, math.nan)  # (n,) the percentiles skip NaN
    if flat.device.type == "cpu":
        # The tensor is already in host memory: numpy's sort is some 20x faster than torch's CPU sort.
        ends_and_percentiles = _sorted_percentiles_on_host(with_nan, int(count))  # (9,)
        low, percentiles, high = ends_and_percentiles[0], ends_and_percentiles[1:-1], ends_and_percentiles[-1]
    else:
        low, percentiles, high = _ends_and_percentiles_on_device(flat, finite, with_nan)
    values = torch.cat([torch.stack([mean, std, norm, low, high]), percentiles])  # (12,)
    values = torch.where(count > 0, values, math.nan).to(torch.float64)
    nonfinite = (n - count).to(torch.float64).reshape(1)  # (1,)
    return dict(zip(DISTRIBUTION_NAMES, torch.cat([values, nonfinite]).unbind(), strict=True))


@torch.no_grad()
def frac_small(w: Tensor, threshold: float = SMALL_WEIGHT) -> Tensor:
    """Fraction of the entries of `w` with |w| < threshold: the near-zero weights L1 produces."""
    return _fraction(w.abs() < threshold)


@torch.no_grad()
def frac_dead(a: Tensor) -> Tensor:
    """Fraction of the units (dim 1) of activations `a` that are exactly 0 for the whole batch.

    a is (B, units), (B, C, L) or (B, C, H, W); a conv unit is a channel, dead when it is 0 for every
    example and every position. A dead ReLU gets no gradient and never comes back.
    """
    if a.dim() < 2:
        raise ValueError(f"frac_dead: a must be (B, units, ...) with at least 2 dims, got shape {tuple(a.shape)}")
    other_dims = (0, *range(2, a.dim()))
    alive = torch.any(a != 0, dim=other_dims)  # (units,)
    return _fraction(~alive)


@torch.no_grad()
def frac_saturated(a: Tensor, activation: str) -> Tensor:
    """Fraction of the entries of activations `a` where the activation is saturated (its slope ~0).

    tanh: |a| > 0.99; sigmoid: a < 0.01 or a > 0.99 (SATURATION).
    """
    if activation == "tanh":
        saturated = a.abs() > SATURATION
    elif activation == "sigmoid":
        saturated = (a < 1 - SATURATION) | (a > SATURATION)
    else:
        raise ValueError(f"frac_saturated: activation must be one of {SATURATING_ACTIVATIONS}, got {activation!r}")
    return _fraction(saturated)


@torch.no_grad()
def symmetry(x: Tensor, unit_dim: int) -> Tensor:
    """How alike the units of a layer are: 1 when all units are identical, ~0 when they are independent.

    The units are the slices of `x` along unit_dim (weights (out, in, ...): unit_dim 0; activations
    (B, units, ...): unit_dim 1). With x as (U, N) (units first, the rest flattened),
    s = mean over the N columns of the std across the U units, t = std of all entries, and
    symmetry = clamp(1 - s / t, 0, 1); 1 when all entries are equal (t == 0, e.g. zero init).
    Zero or constant init makes every unit of a layer compute the same thing and receive the same
    gradient, so gradient descent never tells them apart (docs/conventions.md): symmetry stays at 1. A layer of
    one unit has symmetry 1. NaN entries give NaN, and so does an empty x.
    """
    if x.numel() == 0:
        return torch.tensor(math.nan, dtype=torch.float64, device=x.device)
    x = x.to(_work_dtype(x.dtype))
    # Differences from unit 0 (per column) and from the first entry (overall) are exactly 0 between
    # equal entries, so identical units give s == 0 and a constant tensor t == 0 whatever the rounding
    # of a mean; the std does not change under the shift.
    s = _population_std(x - x.narrow(unit_dim, 0, 1), dim=unit_dim).mean()
    t = _population_std(x - x.reshape(-1)[0])
    value = (1 - s / t).clamp(0.0, 1.0)
    constant = t == 0
    return torch.where(constant, 1.0, value).to(torch.float64)


@torch.no_grad()
def histogram(x: Tensor, bins: int) -> tuple[Tensor, Tensor]:
    """Equal-width histogram of the finite entries of `x`, with numpy.histogram's semantics.

    Returns edges (bins + 1,) float64 from the min to the max of the finite entries ([v - 0.5, v + 0.5]
    when they are all v, as numpy) and counts (bins,) float64 holding exact integers. Bin i is
    [edges[i], edges[i + 1]), the last also holds edges[bins]. Non-finite entries are not counted;
    with no finite entry the edges are NaN and the counts 0. Equals
    numpy.histogram(x_finite.astype(float64), bins=edges) exactly, and the edges are
    numpy.linspace(min, max, bins + 1).
    """
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
        raise ValueError(f"histogram: bins must be an integer >= 1, got {bins!r}")
    flat = x.reshape(-1).to(torch.float64)  # (n,) exact for float16/32: the comparisons are done here
    if flat.numel() == 0:
        edges = torch.full((bins + 1,), math.nan, dtype=torch.float64, device=x.device)
        return edges, torch.zeros(bins, dtype=torch.float64, device=x.device)
    finite = _finite(flat)  # (n,)
    low = torch.where(finite, flat, math.inf).amin()
    high = torch.where(finite, flat, -math.inf).amax()
    edges = _equal_width_edges(low, high, bins)  # (bins + 1,)
    if x.dtype in _FAST_BINNING_DTYPES and bins <= _FAST_BINNING_MAX_BINS:
        bin_index = _bin_index_by_arithmetic(flat, edges, low, high)
    else:
        bin_index = _bin_index_by_search(flat, edges)
    bin_index = torch.where(finite, bin_index, bins)  # non-finite entries go to a slot that is dropped
    # scatter_add_ rather than bincount: bincount on CUDA reads the largest index back to the host.
    ones = torch.ones(flat.numel(), dtype=torch.float64, device=x.device)  # (n,) exact up to 2**53 per bin
    counts = torch.zeros(bins + 1, dtype=torch.float64, device=x.device).scatter_add_(0, bin_index, ones)
    return edges, counts[:bins]


@torch.no_grad()
def kind_stats(
    kind: str,
    x: Tensor,
    *,
    before: Tensor | None = None,
    activation: str | None = None,
    unit_dim: int = 0,
) -> dict[str, Tensor]:
    """The stats of STAT_NAMES[kind] for `x`, in that order, as 0-dim float64 tensors on x.device.

    kind "update": `before` is the weight before the optimizer step and x the weight after it.
    kind "act": frac_saturated only when activation is "tanh" or "sigmoid".
    unit_dim: the dim of the units, for symmetry (weights and grads: 0; activations (B, units, ...): 1).
    """
    if kind not in STAT_NAMES:
        raise ValueError(f"kind_stats: kind must be one of {tuple(STAT_NAMES)}, got {kind!r}")
    if kind == "update":
        if before is None:
            raise ValueError("kind_stats: kind 'update' needs before=, the weight before the step")
        norm, ratio = _update_norm_and_ratio(before, x)
        return {"norm": norm, "update_ratio": ratio}
    stats = distribution_stats(x)
    if kind in ("weight", "grad"):
        stats["symmetry"] = symmetry(x, unit_dim)
    if kind == "weight":
        stats["frac_small"] = frac_small(x)
    if kind == "act":
        stats["frac_dead"] = frac_dead(x)
        if activation in SATURATING_ACTIVATIONS:
            stats["frac_saturated"] = frac_saturated(x, activation)
    return {name: stats[name] for name in STAT_NAMES[kind] if name in stats}


def _work_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 stays float64; everything else (float16, bfloat16, float32, integers) is computed in float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


@functools.cache
def _quantile_levels(device: torch.device, dtype: torch.dtype, with_ends: bool) -> Tensor:
    """PERCENTILES / 100 (with 0 and 1 around them when with_ends), made once per device and dtype."""
    levels = [q / 100 for q in PERCENTILES]
    if with_ends:
        levels = [0.0, *levels, 1.0]
    return torch.tensor(levels, dtype=dtype, device=device)  # (7,) or (9,)


def _ends_and_percentiles_on_device(flat: Tensor, finite: Tensor, with_nan: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """min, the PERCENTILES (7,) and max of the finite entries, with torch where the tensor lives."""
    n = flat.numel()
    # nanquantile skips NaN: the same numbers as quantile over the finite entries, without the
    # boolean indexing (x[finite]) that would wait for the host to learn its size.
    if n <= _QUANTILE_MAX_NUMEL:
        # q = 0 and 1 give min and max exactly (the ends of the same sort).
        ends_and_percentiles = torch.nanquantile(with_nan, _quantile_levels(flat.device, flat.dtype, True))  # (9,)
        return ends_and_percentiles[0], ends_and_percentiles[1:-1], ends_and_percentiles[-1]
    sample = with_nan[:: math.ceil(n / _QUANTILE_MAX_NUMEL)]  # (<= 2**24,)
    percentiles = torch.nanquantile(sample, _quantile_levels(flat.device, flat.dtype, False))  # (7,)
    low = torch.where(finite, flat, math.inf).amin()
    high = torch.where(finite, flat, -math.inf).amax()
    return low, percentiles, high


def _sorted_percentiles_on_host(with_nan: Tensor, count: int) -> Tensor:
    """min, the PERCENTILES and max of the non-NaN entries of a CPU tensor (n,), with numpy.percentile's
    linear interpolation: position q * (count - 1) in the sorted finite entries."""
    if count == 0:
        return torch.full((len(PERCENTILES) + 2,), math.nan, dtype=with_nan.dtype)
    ordered = np.sort(with_nan.numpy())[:count].astype(np.float64)  # NaN sorts last: the finite entries
    values = _interpolated_percentiles(ordered, (0, *PERCENTILES, 100))  # (9,)
    return torch.from_numpy(values).to(with_nan.dtype)


def _interpolated_percentiles(ordered: np.ndarray, percentiles: tuple[float, ...]) -> np.ndarray:
    """numpy.percentile's linear interpolation on sorted values: position q/100 * (n - 1)."""
    position = np.array(percentiles) / 100 * (ordered.size - 1)
    below = np.floor(position).astype(np.int64)
    above = np.minimum(below + 1, ordered.size - 1)
    return ordered[below] + (ordered[above] - ordered[below]) * (position - below)


def _finite(x: Tensor) -> Tensor:
    """torch.isfinite(x) in two elementwise passes instead of four (NaN < inf is False too)."""
    return x.abs() < math.inf


def _population_std(x: Tensor, dim: int | None = None) -> Tensor:
    """std with ddof 0 along dim (all entries when None) in two passes: as accurate as torch.std's
    Welford, and some 20x faster on CPU."""
    deviation = x - x.mean(dim=dim, keepdim=True)
    return deviation.square_().mean(dim=dim).sqrt_()


def _fraction(mask: Tensor) -> Tensor:
    """The fraction of True entries of `mask`, float64 (NaN for an empty mask)."""
    return torch.count_nonzero(mask).to(torch.float64) / mask.numel()


def _update_norm_and_ratio(before: Tensor, after: Tensor) -> tuple[Tensor, Tensor]:
    """||after - before|| and ||after - before|| / ||before|| (0 when both are 0), float64."""
    if before.shape != after.shape:
        raise ValueError(f"update_ratio: before and after must have one shape, got {tuple(before.shape)} "
                         f"and {tuple(after.shape)}")
    work = _work_dtype(after.dtype)
    before = before.to(work)  # float32 at least: a bfloat16 difference would be mostly rounding
    update_norm = torch.linalg.vector_norm(after.to(work) - before)
    ratio = update_norm / torch.linalg.vector_norm(before)  # x / 0 = inf
    ratio = torch.where(update_norm == 0, 0.0, ratio)  # 0 / 0: no update, not NaN
    return update_norm.to(torch.float64), ratio.to(torch.float64)


def _bin_index_by_search(flat: Tensor, edges: Tensor) -> Tensor:
    """numpy.histogram's bin of each finite entry of `flat` (n,) float64: exact for any edges, slow on CPU."""
    bins = edges.numel() - 1
    # right=True counts the edges <= x, as numpy.searchsorted(side="right"): bin = that count - 1.
    bin_index = torch.bucketize(flat, edges, right=True) - 1  # (n,) in [0, bins] for finite x
    return bin_index.clamp_(0, bins - 1)  # x == edges[bins] joins the last bin


def _bin_index_by_arithmetic(flat: Tensor, edges: Tensor, low: Tensor, high: Tensor) -> Tensor:
    """The same bins as `_bin_index_by_search`, from (x - low) / step and one comparison on each side.

    Exact when the entries were float32 or narrower (and bins <= 2**16): two distinct float32 values
    differ by at least 2**-24 of the larger magnitude M, so a bin is at least 2**-24 M / bins wide,
    while float64 rounding moves an edge or the quotient by a few 2**-53 M: the quotient's floor is
    the right bin or a neighbour, which the comparisons with the edges settle. A constant tensor
    (low == high, the finite min and max) may have edges closer than float64 resolution (|value| > 2**52):
    its one value is looked up instead.
    """
    bins = edges.numel() - 1
    step = (edges[bins] - edges[0]) / bins
    position = ((flat - edges[0]) / step).nan_to_num_(nan=0.0, posinf=bins, neginf=0.0)  # (n,)
    guess = position.floor_().clamp_(0, bins - 1).long()  # (n,) the bin or a neighbour
    guess = torch.where(flat < edges.index_select(0, guess), guess - 1, guess)
    above = (flat >= edges.index_select(0, guess + 1)) & (guess < bins - 1)  # the last bin is closed
    guess = torch.where(above, guess + 1, guess)
    constant_bin = _bin_index_by_search(low.reshape(1), edges)  # (1,) the bin of the one finite value
    return torch.where(low == high, constant_bin, guess)


def _equal_width_edges(low: Tensor, high: Tensor, bins: int) -> Tensor:
    """numpy.linspace(low, high, bins + 1) from 0-dim float64 tensors, on their device.

    As numpy.histogram, an empty range becomes [low - 0.5, high + 0.5]; as numpy.linspace,
    edge i is i * step + low and the last edge is high itself. NaN when low > high (no finite entry).
    """
    empty_range = low == high
    low = torch.where(empty_range, low - 0.5, low)
    high = torch.where(empty_range, high + 0.5, high)
    step = (high - low) / bins
    positions = torch.arange(bins + 1, dtype=torch.float64, device=low.device)  # (bins + 1,)
    edges = torch.where(positions == bins, high, positions * step + low)  # (bins + 1,)
    return torch.where(low <= high, edges, math.nan)


class Summary(NamedTuple):
    """kind_stats and histogram of one tensor: the stats' names, their values (n,) float64, and the
    histogram's edges (bins + 1,) and counts (bins,) float64, all on the tensor's device."""

    names: tuple[str, ...]
    values: Tensor
    edges: Tensor
    counts: Tensor


@torch.no_grad()
def summarize(
    kind: str,
    x: Tensor,
    bins: int,
    *,
    before: Tensor | None = None,
    activation: str | None = None,
    unit_dim: int = 0,
) -> Summary:
    """`kind_stats(kind, x, ...)` and the histogram of x (of x - before for kind "update"), in one go.

    On an accelerator both are computed by torch where x lives. A CPU tensor is already in host
    memory: there numpy computes everything from one sort, since a snapshot is dozens of small
    tensors and torch's per-operation overhead (and its CPU sort) would dominate. Same numbers either way.
    """
    if kind not in STAT_NAMES:
        raise ValueError(f"kind_stats: kind must be one of {tuple(STAT_NAMES)}, got {kind!r}")
    if kind == "update" and before is None:
        raise ValueError("kind_stats: kind 'update' needs before=, the weight before the step")
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
        raise ValueError(f"histogram: bins must be an integer >= 1, got {bins!r}")
    if x.device.type == "cpu":
        return _summarize_on_host(kind, x, bins, before, activation, unit_dim)
    stats = kind_stats(kind, x, before=before, activation=activation, unit_dim=unit_dim)
    edges, counts = histogram(x if before is None else x - before, bins)
    return Summary(tuple(stats), torch.stack(list(stats.values())), edges, counts)


def _host_array(x: Tensor) -> np.ndarray:
    """x as a numpy array sharing its memory (float16 / bfloat16 widened to float32, as on the device)."""
    x = x.detach()
    return (x if x.dtype in (torch.float32, torch.float64) else x.float()).numpy()


def _summarize_on_host(
    kind: str, x: Tensor, bins: int, before: Tensor | None, activation: str | None, unit_dim: int
) -> Summary:
    array = _host_array(x)
    stats: dict[str, float] = {}
    if kind == "update":
        change = (array - _host_array(before)).reshape(-1).astype(np.float64)  # (n,) in x's precision, as torch
        update_norm = float(np.sqrt(_sum_of_squares(change)))
        before_norm = float(np.sqrt(_sum_of_squares(_host_array(before).reshape(-1).astype(np.float64))))
        stats["norm"] = update_norm
        stats["update_ratio"] = 0.0 if update_norm == 0 else (update_norm / before_norm if before_norm else math.inf)
        finite = _sorted_finite(change)
    else:
        finite = _sorted_finite(array)
        stats.update(_host_distribution(finite, array.size))
        if kind in ("weight", "grad"):
            stats["symmetry"] = _host_symmetry(array, unit_dim)
        if kind == "weight":
            stats["frac_small"] = float(np.count_nonzero(np.abs(array) < SMALL_WEIGHT)) / array.size
        if kind == "act":
            stats["frac_dead"] = _host_frac_dead(array)
            if activation in SATURATING_ACTIVATIONS:
                stats["frac_saturated"] = _host_frac_saturated(array, activation)
    names = tuple(name for name in STAT_NAMES[kind] if name in stats)
    values = torch.tensor([stats[name] for name in names], dtype=torch.float64)  # (n,)
    edges, counts = _host_histogram(finite, bins)
    return Summary(names, values, torch.from_numpy(edges), torch.from_numpy(counts))


def _sorted_finite(array: np.ndarray) -> np.ndarray:
    """The finite entries of `array`, sorted, as float64 (numpy sorts -inf first, then +inf, then NaN)."""
    ordered = np.sort(array.reshape(-1))
    first = np.searchsorted(ordered, -np.inf, side="right")
    end = np.searchsorted(ordered, np.inf, side="left")
    return ordered[first:end].astype(np.float64)


def _host_distribution(finite: np.ndarray, size: int) -> dict[str, float]:
    n = finite.size
    if n == 0:
        return {name: (float(size) if name == "nonfinite" else math.nan) for name in DISTRIBUTION_NAMES}
    mean = float(finite.mean())
    deviation = finite - mean
    percentiles = _interpolated_percentiles(finite, PERCENTILES)
    return {
        "mean": mean,
        "std": float(np.sqrt(_sum_of_squares(deviation) / n)),
        "norm": float(np.sqrt(_sum_of_squares(finite))),
        "min": float(finite[0]),
        "max": float(finite[-1]),
        **dict(zip(PERCENTILE_NAMES, percentiles.tolist(), strict=True)),
        "nonfinite": float(size - n),
    }


def _sum_of_squares(values: np.ndarray) -> float:
    # Not np.dot: that calls BLAS, whose threads wake up for every small vector and cost far more.
    return float(np.square(values).sum())


def _host_histogram(finite: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """numpy.histogram of sorted finite float64 values on linspace(min, max) edges, by bisection: the
    count of bin i is the number of values below edge i + 1 minus those below edge i."""
    if finite.size == 0:
        return np.full(bins + 1, np.nan), np.zeros(bins)
    low, high = finite[0], finite[-1]
    if low == high:
        low, high = low - 0.5, high + 0.5
    edges = np.linspace(low, high, bins + 1)  # (bins + 1,)
    below = np.searchsorted(finite, edges[:-1], side="left")  # (bins,) values below each left edge
    below = np.append(below, finite.size)  # the last bin is closed: it ends after every value
    return edges, np.diff(below).astype(np.float64)


def _host_symmetry(array: np.ndarray, unit_dim: int) -> float:
    if array.size == 0:
        return math.nan
    units = np.moveaxis(array, unit_dim, 0).reshape(array.shape[unit_dim], -1).astype(np.float64)  # (U, N)
    with np.errstate(invalid="ignore"):  # inf - inf: NaN in, NaN out, as on the device
        spread_across_units = (units - units[:1]).std(axis=0).mean()  # shifts as in `symmetry`
        spread = (units - units.reshape(-1)[0]).std()
    if spread == 0:
        return 1.0
    return float(np.clip(1 - spread_across_units / spread, 0.0, 1.0))


def _host_frac_dead(array: np.ndarray) -> float:
    if array.ndim < 2:
        raise ValueError(f"frac_dead: a must be (B, units, ...) with at least 2 dims, got shape {array.shape}")
    alive = np.any(array != 0, axis=(0, *range(2, array.ndim)))  # (units,)
    return float(np.count_nonzero(~alive)) / alive.size


def _host_frac_saturated(array: np.ndarray, activation: str) -> float:
    if activation == "tanh":
        saturated = np.abs(array) > SATURATION
    else:
        saturated = (array < 1 - SATURATION) | (array > SATURATION)
    return float(np.count_nonzero(saturated)) / array.size

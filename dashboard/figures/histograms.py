"""Histograms moved onto a common grid of bins: a heat map's rows, or several layers' and runs' weights pooled."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd


def rebin(edges: Sequence[float], counts: Sequence[float], grid: Sequence[float]) -> np.ndarray:
    """The histogram (`edges`, `counts`) moved onto the bins with edges `grid`: each grid bin gets every source
    bin's count in proportion to their overlap (values spread evenly within a source bin). Mass outside the grid
    is dropped, so the total is conserved when the grid covers `edges`. ValueError for edges that are not
    len(counts) + 1 increasing values, or a grid of fewer than 2 increasing edges."""
    edges = np.asarray(edges, dtype=np.float64)
    counts = np.asarray(counts, dtype=np.float64)
    grid = np.asarray(grid, dtype=np.float64)
    if edges.ndim != 1 or counts.ndim != 1 or len(edges) != len(counts) + 1 or len(counts) == 0:
        raise ValueError(f"rebin: expected len(edges) == len(counts) + 1 >= 2, got {edges.shape} and {counts.shape}")
    if np.any(np.diff(edges) < 0) or not np.all(np.isfinite(edges)):
        raise ValueError("rebin: edges must be finite and increasing")
    if grid.ndim != 1 or len(grid) < 2 or np.any(np.diff(grid) <= 0):
        raise ValueError("rebin: the grid must have at least 2 strictly increasing edges")
    cumulative = np.concatenate([[0.0], np.cumsum(counts)])
    x = edges.copy()
    for i in np.flatnonzero(np.diff(x) <= 0):  # a zero-width bin holds its mass at one point; interp needs x rising
        x[i + 1] = np.nextafter(x[i], np.inf)
    at_grid = np.interp(grid, x, cumulative, left=0.0, right=cumulative[-1])
    return np.diff(at_grid)


def pooled_histogram(rows: pd.DataFrame, grid: np.ndarray) -> np.ndarray:
    """The counts of several histograms (rows with edges, counts) re-binned onto the edges `grid` and summed,
    each bin's count spread evenly over its width (so the total is kept where the grid covers the edges); rows that
    are no histogram are left out."""
    total = np.zeros(len(grid) - 1)
    for edges, counts in zip(rows["edges"], rows["counts"], strict=True):
        try:
            total += rebin(edges, counts, grid)
        except ValueError:
            continue
    return total

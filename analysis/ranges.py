"""Coarse to fine: the best trials of a sweep and the search space narrowed around them.

The pure part of `fitlens sweep refine` (`tracking.sweep_store.refine` reads the trials from MLflow and
hands them here); the narrowing of one dimension is `Distribution.narrow`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from tracking.sweep_config import Distribution


def best_points(scored: Sequence[tuple[float, Mapping[str, Any]]], top: int) -> list[dict[str, Any]]:
    """The points of the `top` trials with the lowest finite metric, best first.

    `scored` holds (metric, point) pairs, the metric minimized (dev error); a NaN or infinite metric
    (a diverged trial) is skipped. Ties keep the order of `scored`; fewer than `top` finite trials
    gives them all.
    """
    if top < 1:
        raise ValueError(f"top = {top!r}: expected a number of trials >= 1")
    finite = [(value, point) for value, point in scored if math.isfinite(value)]
    ranked = sorted(finite, key=lambda pair: pair[0])  # sorted() is stable: ties keep their order
    return [dict(point) for _, point in ranked[:top]]


def refined_space(space: Mapping[str, Distribution], best: Sequence[Mapping[str, Any]],
                  margin: float = 0.25) -> dict[str, Distribution]:
    """The next space of coarse-to-fine search: each key narrowed around the values the `best` points have.

    A numeric range spans the best values widened by `margin` times its old width on its own scale (log
    for loguniform); a choice or grid keeps the values seen. A key that none of the best points has keeps
    its distribution.
    """
    refined: dict[str, Distribution] = {}
    for key, dist in space.items():
        values = [point[key] for point in best if key in point]
        refined[key] = dist.narrow(values, margin) if values else dist
    return refined

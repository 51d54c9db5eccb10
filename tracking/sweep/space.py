"""A sweep's search space on Ray Tune: each `Distribution` of a sweep file as the Tune domain that draws it,
and a drawn value back as the run config's value."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from ray import tune

from tracking.sweep_config import Distribution


def to_tune(dist: Distribution, searcher: bool = False) -> Any:
    """The Ray Tune search-space object that draws `dist`.

    randint becomes `tune.randint(low, high + 1)` (Ray's upper bound is exclusive). With `searcher=False`,
    loguniform_one_minus becomes a `tune.sample_from` drawing beta directly; model-based searchers (TPE) cannot see
    inside sample_from, so with `searcher=True` it is `tune.loguniform(1 - high, 1 - low)` over 1 - beta instead:
    map the value back with `from_tune`.
    """
    if dist.kind == "loguniform":
        return tune.loguniform(*dist.values)
    if dist.kind == "loguniform_one_minus":
        low, high = dist.values
        if searcher:
            return tune.loguniform(1.0 - high, 1.0 - low)
        log_low, log_high = math.log1p(-high), math.log1p(-low)
        return tune.sample_from(lambda _spec: float(1.0 - math.exp(np.random.uniform(log_low, log_high))))
    if dist.kind == "uniform":
        return tune.uniform(*dist.values)
    if dist.kind == "randint":
        low, high = dist.values
        return tune.randint(low, high + 1)
    if dist.kind == "choice":
        return tune.choice(list(dist.args))
    return tune.grid_search(list(dist.args))


def from_tune(dist: Distribution, value: Any, searcher: bool = False) -> Any:
    """The run-config value of what `to_tune(dist, searcher)` drew (1 - x back to beta for a searched 1 - beta)."""
    if dist.kind == "loguniform_one_minus" and searcher:
        return 1.0 - float(value)
    return value

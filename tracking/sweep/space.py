"""A sweep's search space on Ray Tune: each `Distribution` of a sweep file as the Tune domain that draws it,
and a drawn value back as the run config's value."""

from __future__ import annotations

from typing import Any

import numpy as np
from ray import tune
from ray.tune.search.variant_generator import generate_variants

from tracking.sweep_config import Distribution, SweepConfig


def to_tune(dist: Distribution) -> Any:
    """The Ray Tune search-space object that draws `dist`.

    randint becomes `tune.randint(low, high + 1)` (Ray's upper bound is exclusive). loguniform_one_minus becomes
    `tune.loguniform(1 - high, 1 - low)`, a draw of 1 - beta: one domain that Tune's seeded random search, Optuna's
    TPE and PBT's mutations all understand (a `tune.sample_from` of beta itself is opaque to TPE, and Tune calls it
    without the sweep's random state, so its draws would not repeat with the seed). `from_tune` maps it back.
    """
    if dist.kind == "loguniform":
        return tune.loguniform(*dist.values)
    if dist.kind == "loguniform_one_minus":
        low, high = dist.values
        return tune.loguniform(1.0 - high, 1.0 - low)
    if dist.kind == "uniform":
        return tune.uniform(*dist.values)
    if dist.kind == "randint":
        low, high = dist.values
        return tune.randint(low, high + 1)
    if dist.kind == "choice":
        return tune.choice(list(dist.args))
    return tune.grid_search(list(dist.args))


def from_tune(dist: Distribution, value: Any) -> Any:
    """The run-config value of what `to_tune(dist)` drew: 1 - x back to beta for loguniform_one_minus."""
    if dist.kind == "loguniform_one_minus":
        return 1.0 - float(value)
    return value


def tune_points(sweep: SweepConfig, num_samples: int, seed: int = 0) -> list[dict[str, Any]]:
    """The trials Tune's random search draws from the sweep's space with `seed` (the variant generation its
    BasicVariantGenerator runs, seeded as the sweep seeds it): `num_samples` draws, each crossed with every grid
    combination, as run-config values. What a sweep would run, without running it."""
    space = {key: to_tune(dist) for key, dist in sweep.space.items()}
    rng = np.random.default_rng(seed)
    points = []
    for _ in range(num_samples):
        for _, spec in generate_variants({"config": space}, random_state=rng):
            points.append({key: from_tune(sweep.space[key], spec["config"][key]) for key in sweep.space})
    return points

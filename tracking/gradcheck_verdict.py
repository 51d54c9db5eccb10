"""The gradient check's verdict on a relative difference, and its bounds: in a module without torch, so that the
readers of a check (the dashboard, `fitlens report`) do not load it (docs/conventions.md, "Gradient checking")."""

from __future__ import annotations

import math

# The course reads ~1e-7 as great, ~1e-5 as "look closer" and >= 1e-3 as worry; the boundaries sit between those
# orders of magnitude. Float64 rounding in J(theta +- eps) alone costs ~1e-16 * |J| / eps ~ 1e-9 per coordinate,
# far below GREAT_BELOW.
GREAT_BELOW = 1e-6
WORRY_AT = 1e-3
VERDICTS = ("great", "look closer", "worry")  # from the best to the worst


def gradcheck_verdict(relative_difference: float) -> str:
    """"great" below GREAT_BELOW, "look closer" below WORRY_AT, else "worry" (NaN or inf included)."""
    if not math.isfinite(relative_difference) or relative_difference >= WORRY_AT:
        return "worry"
    return "great" if relative_difference < GREAT_BELOW else "look closer"


def worst_verdict(verdicts: list[str]) -> str:
    """The worst of `verdicts` ("great" for none)."""
    return max(verdicts, key=VERDICTS.index, default="great")

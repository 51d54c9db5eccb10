"""Values as runs hold them (a setting, an error rate that may be missing) and the text a reader sees for them."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

# Columns of a runs frame that say how a run was recorded or run, not what was trained (a prefix ends in "."): two
# runs that differ only in them are no experiment.
NOT_SETTINGS = ("experiment", "experiment_id", "run_name", "diagnostics.", "train.threads", "train.accelerator",
                "train.devices")


def finite_or_none(value: Any) -> float | None:
    """`value` as a float when it is a finite number (not a boolean), else None: a missing error rate, a setting
    the run does not have (NaN in a frame of many runs), a diverged run's loss."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        return None
    return float(value) if math.isfinite(value) else None


def setting_text(value: Any) -> str:
    """A setting's value as a reader writes it: 30.0 -> '30', 0.001 -> '0.001', booleans as true / false, a missing
    one (None, NaN) as none / unset, lists and text as they are."""
    if isinstance(value, (bool, np.bool_)) or value is None:
        return str(bool(value)).lower() if value is not None else "none"
    if isinstance(value, (int, float, np.integer, np.floating)):
        value = float(value)
        if math.isnan(value):
            return "unset"
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else f"{value:g}"
    return str(value)

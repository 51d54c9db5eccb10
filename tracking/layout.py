"""Names of the run layout in MLflow that tracking writes and the dashboard reads (DESIGN.md).

One key-builder per kind of name, so the two sides cannot drift apart.
"""

from __future__ import annotations

DIAG_PREFIX = "diag"
DIAGNOSTICS_DIR = "diagnostics"  # histogram parts and schema.json, under the run's artifacts
SCHEMA_FILE = "schema.json"
SCHEMA_VERSION = 1
GRADCHECK_REPORT = "gradcheck/report.json"
CONFIG_FILE = "config.yaml"
CHECKPOINT_DIR = "checkpoints"


def diag_key(kind: str, layer: str, stat: str) -> str:
    """The metric key of one diagnostics statistic: diag/<kind>/<layer>/<stat>."""
    return f"{DIAG_PREFIX}/{kind}/{layer}/{stat}"


def parse_diag_key(key: str) -> tuple[str, str, str] | None:
    """(kind, layer, stat) of a diagnostics key, None for any other metric (layer names hold no '/')."""
    parts = key.split("/")
    if len(parts) != 4 or parts[0] != DIAG_PREFIX:
        return None
    return parts[1], parts[2], parts[3]


def histogram_part(index: int) -> str:
    """The file name of histogram part `index` (inside DIAGNOSTICS_DIR)."""
    return f"hist-{index:05d}.parquet"

"""Histogram storage: Parquet parts under the run's `diagnostics/` artifacts, with a `schema.json`.

One part per snapshot, serialized and uploaded by the writer's sender process: the training process
only hands over numpy arrays, and a crash loses at most the part being written. The schema is
documented in docs/diagnostics.md.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tracking import sender
from tracking.layout import DIAGNOSTICS_DIR, SCHEMA_FILE, SCHEMA_VERSION, histogram_part
from tracking.writer import RunWriter

if TYPE_CHECKING:  # annotations only: MLflow is read and written through tracking.reader and tracking.writer
    from mlflow.tracking import MlflowClient

ARROW_SCHEMA = pa.schema(
    [
        ("step", pa.int64()),
        ("kind", pa.string()),
        ("layer", pa.string()),
        ("edges", pa.list_(pa.float64())),
        ("counts", pa.list_(pa.int64())),
    ]
)


@dataclass
class HistogramRow:
    """The histogram of one tensor at one snapshot: bins + 1 increasing edges and bins counts."""

    step: int
    kind: str
    layer: str
    edges: np.ndarray  # (bins + 1,) float64
    counts: np.ndarray  # (bins,) int64


def schema_document(bins: int, kinds: tuple[str, ...]) -> dict:
    """The content of diagnostics/schema.json."""
    return {
        "schema_version": SCHEMA_VERSION,
        "format": "parquet",
        "parts": f"{DIAGNOSTICS_DIR}/hist-SSSSSSSSS.parquet, one per snapshot, named by its step (9 digits)",
        "row": "one row per (step, kind, layer)",
        "columns": {
            "step": "int64: the global step of the snapshot (0 = before the first update)",
            "kind": "string: one of " + ", ".join(kinds),
            "layer": "string: the module's name in named_modules()",
            "edges": "list<float64>: bins + 1 increasing bin edges, from the min to the max of the finite values",
            "counts": "list<int64>: bins counts, numpy.histogram semantics (the last bin includes its right edge); "
            "non-finite values are not counted (see the nonfinite statistic)",
        },
        "bins": bins,
        "kinds": list(kinds),
        "statistics": "MLflow metrics diag/<kind>/<layer>/<stat> at the same steps",
    }


class HistogramParts:
    """Writes each snapshot's histograms as one Parquet part of the run, from the writer's sender."""

    def __init__(self, writer: RunWriter, bins: int, kinds: tuple[str, ...]) -> None:
        self.writer = writer
        self._dir = Path(tempfile.mkdtemp(prefix="fitlens-hist-"))
        schema_path = self._dir / SCHEMA_FILE
        schema_path.write_text(json.dumps(schema_document(bins, kinds), indent=2))
        writer.log_artifact(schema_path, DIAGNOSTICS_DIR, delete=True)

    def write(self, rows: list[HistogramRow]) -> None:
        """Queue one part holding `rows`."""
        if not rows:
            return
        path = self._dir / histogram_part(rows[0].step)  # one snapshot: every row has its step
        columns = {
            "step": [r.step for r in rows],
            "kind": [r.kind for r in rows],
            "layer": [r.layer for r in rows],
            "edges": [r.edges for r in rows],
            "counts": [r.counts for r in rows],
        }
        self.writer.submit(_write_part, str(path), columns)

    def close(self) -> None:
        """Remove the staging folder once the sender has uploaded every part queued before (it runs jobs in
        order); each run used to leave an empty one behind in the temp folder."""
        self.writer.submit(_remove_folder, str(self._dir))


def _write_part(client: MlflowClient, run_id: str, path: str, columns: dict[str, list]) -> None:
    """In the writer's sender: serialize one part and upload it (a part on disk is always whole)."""
    table = pa.table(
        {**columns, "edges": [np.asarray(e, dtype=np.float64) for e in columns["edges"]],
         "counts": [np.asarray(c, dtype=np.int64) for c in columns["counts"]]},
        schema=ARROW_SCHEMA,
    )
    part = Path(path)
    tmp = part.with_suffix(".tmp")
    pq.write_table(table, tmp)
    tmp.rename(part)
    sender.log_artifact(client, run_id, str(part), DIAGNOSTICS_DIR, delete=True)


def _remove_folder(client: MlflowClient, run_id: str, path: str) -> None:
    """In the writer's sender, after the parts: the staging folder of the parts."""
    shutil.rmtree(path, ignore_errors=True)

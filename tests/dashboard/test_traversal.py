"""Traversal payloads get a notice, never a byte from outside the run's artifacts.

(a) Ids and values from URLs: every page, every path segment and query parameter (and every control value a
client can send) carrying `../`, `..%2F`, `%2e%2e/`, double encoding, an absolute path, backslashes or a NUL
renders a notice through the router, never an exception. (b) Artifact paths: the CachedReader reads histogram
parts and gradcheck/report.json only at plain relative paths under the run's artifact root; names a hostile
store lists are ignored unless they are exactly what tracking writes, and files planted in a run's artifact
folder as symlinks to a secret outside it (a file, a folder, /etc/passwd) are refused: MLflow checks a
download only against the folder it reads from, so a symlinked `diagnostics/` folder would otherwise lead out.

The evidence that nothing outside was read: a Python audit hook records every file opened while a page
renders or the CachedReader reads (shutil's copy of a download opens its source there), and no opened path resolves
to a secret; and the secrets' distinctive content appears in no returned value.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from dashboard.app import match, render_content, render_controls
from dashboard.cache import CachedReader
from dashboard.pages import PAGES
from tracking.histograms import _write_part
from tracking.layout import DIAGNOSTICS_DIR, GRADCHECK_REPORT
from tracking.reader import DataError, histogram_part_frame, safe_artifact_path
from tracking.store import client_for

SECRET_TEXT = "SECRET-TEXT-4242"  # in a file that is not Parquet or JSON
SECRET_LAYER = "SECRET_LAYER_4242"  # in a Parquet file that reads like a histogram part
SECRET_VERDICT = "SECRET-VERDICT-4242"  # in a JSON file that reads like a gradcheck report

PAYLOADS = [
    "../../etc/passwd", "..%2F..%2Fetc%2Fpasswd", "%2e%2e/%2e%2e/etc/passwd", "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "%252e%252e%252fetc%252fpasswd", "..%252F..%252Fsecret.txt", "/etc/passwd", "//etc/passwd",
    "..\\..\\etc\\passwd", "..%5C..%5Csecret.txt", "0123456789abcdef0123456789abcdef\x00", "%00", "abc\x00/../x",
    "....//....//etc/passwd", "0123456789ABCDEF0123456789ABCDEF", "0123456789abcdef0123456789abcdef\n",
    "<script>alert(1)</script>",
]

# -- what was opened: a Python audit hook (no mock, nothing patched) -----------------------------------------

_opened: list[str] | None = None


def _audit(event: str, args: tuple) -> None:
    if _opened is not None and event == "open" and isinstance(args[0], (str, bytes)):
        _opened.append(os.fsdecode(args[0]))


sys.addaudithook(_audit)  # hooks cannot be removed: this one records only inside `reads`


@contextmanager
def reads() -> Iterator[list[str]]:
    """The real paths of every file Python opened in the block."""
    global _opened
    _opened = []
    found: list[str] = []
    try:
        yield found
    finally:
        opened, _opened = _opened, None
        found.extend(os.path.realpath(p) for p in opened)


# -- a store with a clean run and runs whose artifact folders hold planted symlinks -------------------------

def _part_columns(step: int, layer: str) -> dict[str, list]:
    edges = np.linspace(-1, 1, 5)
    return {"step": [step], "kind": ["act"], "layer": [layer], "edges": [edges], "counts": [np.array([1, 2, 3, 4])]}


REPORT = {"relative_difference": 2e-9, "verdict": "great", "worst_tensor": "hidden.0.linear.weight",
          "checks": [{"step": 0, "relative_difference": 2e-9, "verdict": "great", "checked": 4, "n_parameters": 4,
                      "per_tensor": [{"name": "hidden.0.linear.weight", "shape": [2, 2], "checked": 4,
                                      "relative_difference": 2e-9, "verdict": "great", "worst_index": [0, 1],
                                      "worst_analytic": 0.5, "worst_numeric": 0.5}]}]}


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("traversal")
    outside = folder / "outside"  # everything here is outside every run's artifact root
    outside.mkdir()
    secrets = {"text": outside / "secret.txt", "part": outside / "secret.parquet", "report": outside / "secret.json"}
    secrets["text"].write_text(SECRET_TEXT)
    secrets["report"].write_text(json.dumps({**REPORT, "verdict": SECRET_VERDICT}))
    pd.DataFrame(_part_columns(1, SECRET_LAYER)).to_parquet(secrets["part"])  # reads like a histogram part
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    client = client_for(uri)
    experiment = client.create_experiment("traversal", artifact_location=str(folder / "artifacts"))

    def run(name: str) -> tuple[str, Path]:
        run_id = client.create_run(experiment, run_name=name).info.run_id
        for step in (0, 1):
            client.log_metric(run_id, "diag/act/hidden.0.linear/std", 1.0, step=step)
            client.log_metric(run_id, "diag/act/hidden.0.linear/p50", 0.1, step=step)
        for step in (0, 1):
            _write_part(client, run_id, str(folder / f"hist-{step:09d}.parquet"),
                        _part_columns(step, "hidden.0.linear"))
        client.log_text(run_id, json.dumps(REPORT), GRADCHECK_REPORT)
        client.set_terminated(run_id, "FINISHED")
        return run_id, Path(client.get_run(run_id).info.artifact_uri.removeprefix("file://"))

    runs: dict[str, str] = {}
    runs["clean"], _ = run("clean")
    runs["linked_part"], root = run("linked part")  # a part that is a symlink to a Parquet file outside
    (root / DIAGNOSTICS_DIR / "hist-000000001.parquet").unlink()
    os.symlink(secrets["part"], root / DIAGNOSTICS_DIR / "hist-000000001.parquet")
    runs["linked_text"], root = run("linked text")  # ... to a text file outside, and to /etc/passwd
    (root / DIAGNOSTICS_DIR / "hist-000000001.parquet").unlink()
    os.symlink(secrets["text"], root / DIAGNOSTICS_DIR / "hist-000000001.parquet")
    os.symlink("/etc/passwd", root / DIAGNOSTICS_DIR / "hist-000000002.parquet")
    runs["linked_dir"], root = run("linked folder")  # the whole diagnostics folder is a symlink to one outside
    shutil.rmtree(root / DIAGNOSTICS_DIR)
    (outside / "diagnostics").mkdir()
    shutil.copy(secrets["part"], outside / "diagnostics" / "hist-000000001.parquet")
    os.symlink(outside / "diagnostics", root / DIAGNOSTICS_DIR)
    runs["linked_report"], root = run("linked report")  # the gradcheck report is a symlink to a JSON outside
    (root / GRADCHECK_REPORT).unlink()
    os.symlink(secrets["report"], root / GRADCHECK_REPORT)
    runs["odd_names"], root = run("odd names")  # names no fitlens run has, beside the real parts
    for name in ("hist-1.parquet", "hist-000000003.parquet.lnk", "..hist-000000004.parquet",
                 "hist-00000000\u0665.parquet"):  # the last ends in an Arabic-Indic 5: int() would read it
        shutil.copy(secrets["part"], root / DIAGNOSTICS_DIR / name)
    (root / DIAGNOSTICS_DIR / "hist-000000005.parquet").mkdir()  # a folder with a part's name
    return {"reader": CachedReader(uri), "client": client, "runs": runs, "secrets": secrets, "outside": outside}


def assert_nothing_outside(store: dict, opened: list[str], *returned: Any) -> None:
    """No file outside the artifact roots was opened, and no secret shows in what was returned."""
    outside = os.path.realpath(store["outside"])
    leaked = [p for p in opened if p.startswith(outside + os.sep) or p in ("/etc/passwd", "/etc/shadow")]
    assert leaked == []
    text = repr([r.to_plotly_json() if hasattr(r, "to_plotly_json") else r for r in returned])
    for secret in (SECRET_TEXT, SECRET_LAYER, SECRET_VERDICT, "root:x:0:0"):
        assert secret not in text


# -- (a) ids and values from URLs ------------------------------------------------------------------------------

def _text(component: Any) -> str:
    return json.dumps(component.to_plotly_json() if hasattr(component, "to_plotly_json") else component,
                      default=lambda o: o.to_plotly_json() if hasattr(o, "to_plotly_json") else str(o))


CONTROL_VALUES = ["kind", "layer", "view", "scale", "step", "stat", "smoothing", "color_by", "setting"]


@pytest.mark.parametrize("payload", PAYLOADS)
def test_payloads_in_every_path_segment_get_a_notice(store, payload: str) -> None:
    reader, clean = store["reader"], store["runs"]["clean"]
    paths = [page.PATH.replace("<run_id>", payload) for page in PAGES if "<run_id>" in page.PATH]
    paths += [f"/{payload}", f"/run/{clean}/{payload}", f"/layers/{payload}/{clean}", f"/{payload}/{clean}"]
    with reads() as opened:
        for path in paths:
            controls = _text(render_controls(reader, path, ""))
            content = _text(render_content(reader, path, "", {name: payload for name in CONTROL_VALUES}))
            for text in (controls, content):
                assert "this view failed" not in text, (path, text[:500])
            routed = match(path)
            if routed is None:  # more or fewer segments, or no such page
                assert "no page at" in controls and content == "null", (path, controls[:300])
            else:  # the page's id is the payload: refused, by the page's controls and by its content
                assert routed[1]["run_id"] != clean
                assert "is not a run id" in controls and "is not a run id" in content, (path, controls[:300])
    assert_nothing_outside(store, opened, controls, content)


@pytest.mark.parametrize("payload", PAYLOADS)
def test_payloads_in_every_query_parameter_and_control_value_get_a_notice(store, payload: str) -> None:
    reader, clean = store["reader"], store["runs"]["clean"]
    from urllib.parse import quote

    query = "?" + "&".join(f"{name}={quote(payload)}" for name in ("compare", "steps", "step", "run_id", "reader",
                                                                    "kind", "layer")) + f"&{quote(payload)}=1"
    values = {name: payload for name in CONTROL_VALUES} | {"stat": [payload, "act/std"], "step": [payload]}
    rendered = []
    with reads() as opened:
        for page in PAGES:
            path = page.PATH.replace("<run_id>", clean)
            for part in (render_controls(reader, path, query), render_content(reader, path, query, values)):
                text = _text(part)
                assert "this view failed" not in text and "Traceback" not in text, (path, text[:500])
                rendered.append(part)
        layers = _text(render_content(reader, f"/layers/{clean}", query, values))
        # the compare id is refused by name (one that is 32 hex digits once stripped is merely not in the store)
        assert "compare: " in layers and ("is not a run id" in layers or "no such run" in layers), layers[:300]
        assert "Depth profile at step" in layers  # and the page's own run is drawn
    assert_nothing_outside(store, opened, *rendered)


# -- (b) artifact paths ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", [
    "../../etc/passwd", "/etc/passwd", "diagnostics/../../../secret.txt", "..%2F..%2Fsecret.txt", "%2e%2e/secret",
    "diagnostics\\..\\..\\secret.txt", "diagnostics/hist-000000001.parquet\x00.txt", "", ".", "./x", "a//b",
    "diagnostics/", "C:/Windows/win.ini", "~/secret.txt",
])
def test_artifact_paths_that_are_not_plain_relative_names_are_refused(path: str) -> None:
    with pytest.raises(DataError, match="is refused: expected a relative path of plain names"):
        safe_artifact_path(path)


def test_the_paths_tracking_writes_are_plain() -> None:
    assert safe_artifact_path("diagnostics/hist-000000123.parquet") == "diagnostics/hist-000000123.parquet"
    assert safe_artifact_path(GRADCHECK_REPORT) == "gradcheck/report.json"


def test_a_clean_run_reads_its_parts_and_report(store) -> None:
    reader, clean = CachedReader(store["reader"].uri), store["runs"]["clean"]  # a fresh cache: every read happens here
    with reads() as opened:
        rows, problems = reader.histograms(clean)
        report = reader.gradcheck(clean)
    assert problems == [] and sorted(rows["step"]) == [0, 1] and set(rows["layer"]) == {"hidden.0.linear"}
    assert report == REPORT
    # the hook sees the reads: MLflow's copy of each artifact opens it at its place in the run's folder
    root = os.path.realpath(reader.run(clean).info.artifact_uri.removeprefix("file://"))
    assert {os.path.relpath(p, root) for p in opened if p.startswith(root + os.sep)} >= {
        "diagnostics/hist-000000000.parquet", "diagnostics/hist-000000001.parquet", GRADCHECK_REPORT}
    assert_nothing_outside(store, opened, rows.to_dict(), report)


@pytest.mark.parametrize("name", ["linked_part", "linked_text"])
def test_a_part_that_is_a_symlink_outside_is_refused_and_the_rest_is_read(store, name: str) -> None:
    reader, run_id = store["reader"], store["runs"][name]
    with reads() as opened:
        steps = reader.histogram_steps(run_id)
        rows, problems = reader.histograms(run_id)
        page = render_content(reader, f"/layers/{run_id}", "", {"step": 1})
    assert steps == ([0, 1] if name == "linked_part" else [0, 1, 2])  # listed: a name is only a name
    assert sorted(set(rows["step"])) == [0] and set(rows["layer"]) == {"hidden.0.linear"}
    assert all("is refused: it is a link that leads outside the run's artifacts" in p for p in problems)
    assert len(problems) == len(steps) - 1
    assert "is a link that leads outside" in _text(page) and "this view failed" not in _text(page)
    assert_nothing_outside(store, opened, rows.to_dict(), problems, page)


def test_a_symlinked_diagnostics_folder_is_refused_where_mlflow_would_read_through_it(store) -> None:
    reader, client, run_id = store["reader"], store["client"], store["runs"]["linked_dir"]
    # The gap: MLflow's download checks the path against the folder it reads from, the symlink's target.
    with tempfile.TemporaryDirectory() as tmp:
        leaked = client.download_artifacts(run_id, f"{DIAGNOSTICS_DIR}/hist-000000001.parquet", tmp)
        assert SECRET_LAYER.encode() in Path(leaked).read_bytes()
    with reads() as opened:
        with pytest.raises(DataError, match=f"the histogram parts of run {run_id} could not be listed"):
            reader.histograms(run_id)
        with pytest.raises(DataError, match="is a link that leads outside the run's artifacts"):
            histogram_part_frame(reader.uri, reader.run(run_id), 1)  # the part MLflow would hand over
        page = render_content(reader, f"/layers/{run_id}", "", {})
    assert "could not be listed" in _text(page) and "this view failed" not in _text(page)
    assert_nothing_outside(store, opened, page)


def test_a_gradcheck_report_that_is_a_symlink_outside_is_refused(store) -> None:
    reader, run_id = store["reader"], store["runs"]["linked_report"]
    with reads() as opened:
        with pytest.raises(DataError, match="gradcheck/report.json is refused: it is a link that leads outside"):
            reader.gradcheck(run_id)
        page = render_content(reader, f"/gradcheck/{run_id}", "", {})
        run_page = render_content(reader, f"/run/{run_id}", "", {})
    assert "is a link that leads outside" in _text(page)
    assert f"/gradcheck/{run_id}" in _text(run_page)  # the run page links to the page that says why
    assert_nothing_outside(store, opened, page, run_page)


def test_names_a_store_lists_are_read_only_when_they_are_exactly_what_tracking_writes(store) -> None:
    reader, run_id = store["reader"], store["runs"]["odd_names"]
    with reads() as opened:
        steps = reader.histogram_steps(run_id)
        rows, problems = reader.histograms(run_id, [*range(6), "../../secret.txt", -1, 10**12])
    assert steps == [0, 1] and problems == [] and SECRET_LAYER not in set(rows["layer"])
    assert_nothing_outside(store, opened, rows.to_dict())


@pytest.mark.parametrize("payload", PAYLOADS)
def test_the_readers_artifact_methods_refuse_payload_run_ids(store, payload: str) -> None:
    reader = store["reader"]
    with reads() as opened:
        for method in (reader.histogram_steps, reader.histograms, reader.gradcheck):
            with pytest.raises(DataError, match="is not a run id"):
                method(payload)
    assert_nothing_outside(store, opened)

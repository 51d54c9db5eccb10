"""Fixtures shared across the test packages."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import TrackingServer, drop_database, fresh_database

# The dashboard's session fixtures (real sweeps on Ray, minutes each): the tests that use them share one worker.
STUDIES = {"study_store", "init_study", "overfit_sweep"}


def pytest_itemcollected(item: pytest.Item) -> None:
    """`make test` runs the suite in two pytest-xdist workers (--dist loadgroup): about half its time is waiting
    (for servers, sweeps, killed processes), not computing. A module's tests stay in one worker, so its module
    fixtures are made once; the tests on the dashboard's studies stay in one worker, so the studies run once.
    (Marked as each test is collected: pytest-xdist reads the marks in its own pytest_collection_modifyitems.)"""
    group = "studies" if STUDIES & set(getattr(item, "fixturenames", ())) else item.nodeid.split("::")[0]
    item.add_marker(pytest.mark.xdist_group(group))


@pytest.fixture
def tracking_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TrackingServer]:
    """A started `fitlens server` on a fresh PostgreSQL database named after the test, stopped afterwards."""
    stem = re.sub(r"[^a-z0-9]+", "_", request.node.name.lower()).strip("_")
    # PostgreSQL names stop at 63 bytes; the suffix keeps parallel or repeated runs apart.
    name = f"fitlens_{stem[:40]}_{uuid.uuid4().hex[:8]}"
    server = TrackingServer(fresh_database(name), tmp_path / "mlartifacts-server")
    try:
        with server:
            yield server
    finally:
        drop_database(name)

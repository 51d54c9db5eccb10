"""Fixtures shared across the test packages."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import TrackingServer, drop_database, fresh_database


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

"""A real PostgreSQL database and a real `fitlens server` for the tests that need a shared tracking server.

PostgreSQL is a system service, not something a test can start: where it is missing the tests skip with the
reason, and CI (FITLENS_REQUIRE_POSTGRES=1, set by .ci/run) turns that skip into a failure so a broken
database never passes as "skipped".
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

from tests.commands import FITLENS, free_port, start_server

POSTGRES_HOST = "127.0.0.1"
POSTGRES_PORT = 5432
POSTGRES_USER = "postgres"


def require_postgres() -> None:
    """Skip the test when PostgreSQL does not accept connections at 127.0.0.1:5432; fail it instead when
    FITLENS_REQUIRE_POSTGRES=1, where a missing database is a broken setup, not an optional extra."""
    try:
        socket.create_connection((POSTGRES_HOST, POSTGRES_PORT), timeout=3).close()
        return
    except OSError as err:
        reason = f"PostgreSQL is not reachable at {POSTGRES_HOST}:{POSTGRES_PORT}: {err}"
    if os.environ.get("FITLENS_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"{reason} (FITLENS_REQUIRE_POSTGRES=1; start it with "
                    "`pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`)")
    pytest.skip(reason)


def fresh_database(name: str) -> str:
    """Drop database `name` if it exists, create it empty, and return its SQLAlchemy URI."""
    require_postgres()
    drop_database(name)
    from psycopg2 import sql

    with _admin_connection() as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return f"postgresql://{POSTGRES_USER}@{POSTGRES_HOST}:{POSTGRES_PORT}/{name}"


def drop_database(name: str) -> None:
    """Drop database `name` (a test's leftovers would pile up in the shared cluster otherwise)."""
    from psycopg2 import sql

    with _admin_connection() as conn, conn.cursor() as cur:
        # FORCE: a server from an earlier, crashed test may still hold connections to it.
        cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@contextlib.contextmanager
def _admin_connection() -> Iterator[Any]:
    """An autocommit connection to the maintenance database: CREATE/DROP DATABASE cannot run in a transaction."""
    import psycopg2

    conn = psycopg2.connect(host=POSTGRES_HOST, port=POSTGRES_PORT, user=POSTGRES_USER, dbname="postgres",
                            connect_timeout=10)
    conn.autocommit = True
    try:
        yield conn
    finally:
        conn.close()


class TrackingServer:
    """`fitlens server` as a user runs it, on `backend_uri` with proxied artifacts under `artifacts`.

    The port stays the same across `restart()`, so clients holding `uri` reconnect to the new process."""

    def __init__(self, backend_uri: str, artifacts: Path, port: int | None = None) -> None:
        self.backend_uri = backend_uri
        self.artifacts = Path(artifacts)
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120) -> TrackingServer:
        """Start the server and return once it answers GET /health (the port opens before the app is ready)."""
        assert self.proc is None, "the server is already running"
        self.proc = start_server(
            [FITLENS, "server", "--port", str(self.port)], self.port, timeout=timeout,
            extra_env={"FITLENS_BACKEND_URI": self.backend_uri,
                       "FITLENS_ARTIFACTS_DESTINATION": str(self.artifacts)},
        )
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=5) as response:
                    if response.status == 200:
                        return self
            except (OSError, urllib.error.URLError):
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"fitlens server on {self.uri} did not answer /health")
            time.sleep(0.3)

    def stop(self, timeout: float = 30) -> int | None:
        """SIGTERM (the server shuts its workers down cleanly), then SIGKILL if it is still up after `timeout`;
        returns the exit status (None when it was not running)."""
        if self.proc is None:
            return None
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        _wait_until_closed(self.port)
        return proc.returncode

    def restart(self) -> TrackingServer:
        self.stop()
        return self.start()

    def __enter__(self) -> TrackingServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def _wait_until_closed(port: int, timeout: float = 15) -> None:
    """Workers outlive their parent by a moment; a restart on the same port must not race them."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        except OSError:
            return
        time.sleep(0.2)

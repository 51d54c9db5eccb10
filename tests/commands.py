"""Running the `fitlens` command as a user does, for the end-to-end tests."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FITLENS = str(Path(sys.executable).parent / "fitlens")


def env() -> dict[str, str]:
    """The environment without a tracking URI or Ray address: the command uses the folder's embedded store and
    starts its own local Ray cluster."""
    return {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS")}


def fitlens(folder: Path, *args: str, timeout: int = 600) -> tuple[int, dict, str]:
    """`fitlens ARGS --json` in `folder`: the exit status, the JSON object of the last line, and stderr."""
    proc = subprocess.run([FITLENS, *args, "--json"], cwd=folder, env=env(), capture_output=True, text=True,
                          timeout=timeout)
    lines = proc.stdout.strip().splitlines()
    assert lines, proc.stderr[-3000:]
    return proc.returncode, json.loads(lines[-1]), proc.stderr


def free_port() -> int:
    """A TCP port on 127.0.0.1 nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(command: list[str], port: int, timeout: float = 90, cwd: Path | None = None,
                 extra_env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start `command` (a server on `port`) and return once the port accepts connections; a server that exits
    first fails the test with its output. `extra_env` is added to `env()` (e.g. the backend a server uses)."""
    log = tempfile.TemporaryFile("w+")  # not a pipe: a chatty server would block once a pipe's buffer is full
    proc = subprocess.Popen(command, cwd=cwd, env={**env(), **(extra_env or {})}, stdout=log,
                            stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc
        except OSError:
            if proc.poll() is not None:
                log.seek(0)
                raise AssertionError(f"{' '.join(command)} exited {proc.returncode}:\n{log.read()[-3000:]}") from None
            time.sleep(0.3)
    proc.kill()
    raise AssertionError(f"{' '.join(command)}: nothing listened on port {port} after {timeout:.0f} s")

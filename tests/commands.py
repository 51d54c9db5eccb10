"""Running the `fitlens` command as a user does, for the end-to-end tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
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

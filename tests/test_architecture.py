"""The structure the README's layout section promises: the import layers and the packages' acyclic imports
(import-linter's contracts in pyproject.toml), the dashboard process without torch, and MLflow's client used by the
one reader and the one writer only."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from mlflow.tracking import MlflowClient

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("lightning_modules", "tracking", "analysis", "dashboard", "fitlens")
# The modules that call MLflow's client: the reader, the writer (and its sender process), and the store's opening.
CLIENT_MODULES = {"tracking/reader.py", "tracking/writer.py", "tracking/sender.py", "tracking/store.py"}


def test_the_import_contracts_hold() -> None:
    done = subprocess.run([str(Path(sys.executable).parent / "lint-imports"), "--no-cache"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "Contracts: 5 kept, 0 broken." in done.stdout, done.stdout[-2000:]


def test_the_dashboard_process_loads_no_torch_lightning_or_ray() -> None:
    probe = ("import dashboard.app, sys; "
             "print(sorted(m for m in ('torch', 'pytorch_lightning', 'ray') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "[]"


def _client_calls(path: Path) -> list[str]:
    """`client.<method>` (or `x.client.<method>`) uses of MlflowClient's methods in one module, as line: text."""
    methods = {name for name in dir(MlflowClient) if not name.startswith("_") and callable(getattr(MlflowClient, name))}
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Attribute) and node.attr in methods:
            owner = ast.unparse(node.value)
            if owner == "client" or owner.endswith(".client") or owner.endswith("_client"):
                found.append(f"{node.lineno}: {ast.unparse(node)}")
    return found


def test_only_the_reader_and_the_writer_call_mlflow_s_client() -> None:
    elsewhere = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            if relative not in CLIENT_MODULES and (calls := _client_calls(path)):
                elsewhere[relative] = calls
    assert elsewhere == {}
    # the check sees what it looks for: the reader calls the client
    assert any("search_runs" in call for call in _client_calls(ROOT / "tracking" / "reader.py"))

"""The `fitlens` command line itself: what `studies` lists, and `sweep` refusing bad input before anything starts.
(Each command's own work is tested where that work lives: tracking, analysis, dashboard.)"""

from __future__ import annotations

import json

import pytest

from fitlens.cli import main

STUDIES = ["activations", "batch_size", "capacity", "init", "learning_curve", "lr", "optimizers", "regularization"]


def test_studies_command_json(capsys) -> None:
    assert main(["studies", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [r["name"] for r in rows] == STUDIES
    trials = {r["name"]: r["trials"] for r in rows}
    assert trials["init"] == 10 and trials["capacity"] == 9 and trials["optimizers"] == 10
    init = next(r for r in rows if r["name"] == "init")
    assert init["summary"] == "Initialization decides whether a deep network can learn at all."


def test_studies_command_table(capsys) -> None:
    assert main(["studies"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in STUDIES) and "trials" in out


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["sweep", "--study", "lrr"], "sweep 'lrr' is neither a file nor a packaged study (did you mean 'lr'?)"),
        (["sweep"], "fitlens sweep needs --study NAME (one of: activations,"),
        (["sweep", "--study", "lr", "num_samples=0"], "num_samples = 0"),
        (["sweep", "--study", "lr", "scheduler=hyperband"], "scheduler = 'hyperband'"),
        (["sweep", "--study", "lr", "space.optim.lr={loguniform: [0, 1]}"], "loguniform bounds must be > 0"),
        (["sweep", "--resume", "num_samples=3"], "--resume takes no overrides"),
        (["sweep", "refine", "abc", "--top", "0"], "--top = 0"),
    ],
)
def test_sweep_command_refuses_bad_input_before_starting_anything(argv, expected, capsys, tmp_path,
                                                                    monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("fitlens: config error: ") and expected in err, err
    assert not (tmp_path / "sweeps").exists()  # no Ray cluster, no sweep state

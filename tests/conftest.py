"""Fixtures shared across the test packages."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.commands import fitlens
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


# Real sweeps the dashboard and analysis tests share (session-scoped: each costs a Ray cluster and a few trials).

@pytest.fixture(scope="session")
def study_store(tmp_path_factory) -> Path:
    """One folder, one embedded store, for every sweep below: the dashboard's browser test serves them all."""
    return tmp_path_factory.mktemp("studies")


@pytest.fixture(scope="session")
def overfit_sweep(study_store: Path) -> tuple[Path, dict]:
    """A wide MLP on 10% of a teacher-student set (~120 examples, 10% label noise = the Bayes error), 60 epochs
    without early stopping: it memorizes the training set. One trial adds a strong L2 term."""
    folder = study_store
    sweep = {
        "name": "overfit",
        "base": {"model": {"depth": 2, "width": 256}, "data": {"name": "teacher_student", "train_fraction": 0.1},
                 "optim": {"lr": 1.0e-3}, "train": {"max_epochs": 60, "early_stopping": False, "threads": 1},
                 "diagnostics": {"preset": "economy"}},
        "space": {"reg.l2": {"grid": [0.0, 30.0]}},
        "search": "grid", "num_samples": 1, "max_concurrent": 2,
    }
    (folder / "overfit.yaml").write_text(yaml.safe_dump(sweep))
    code, summary, err = fitlens(folder, "sweep", "--config", "overfit.yaml")
    assert code == 0, err[-3000:]
    return folder, summary


@pytest.fixture(scope="session")
def init_study(study_store: Path) -> tuple[Path, dict]:
    """The packaged init study (6-layer MLP, 5 inits x tanh / ReLU), cut to 2 epochs of 5 batches: the flags
    of an initialization show from the first snapshots."""
    folder = study_store
    code, summary, err = fitlens(folder, "sweep", "--study", "init", "base.train.max_epochs=2",
                                 "base.train.limit_batches=5")
    assert code == 0, err[-3000:]
    return folder, summary

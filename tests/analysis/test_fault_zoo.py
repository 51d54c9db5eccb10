"""The diagnosis on the fault zoo's fast subset (benchmarks/faults/zoo.py FAST): 8 faults whose first finding must
be their cause, and healthy setups that must get no error. Real fits, recorded and diagnosed as `fitlens report`
does; `make bench-diagnosis` runs the whole zoo and prints its scores."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.bench_diagnosis import run_setup
from benchmarks.faults.zoo import FAST, setups, write_tables


@pytest.fixture(scope="module")
def zoo(tmp_path_factory) -> tuple[Path, str]:
    work = tmp_path_factory.mktemp("zoo")
    write_tables(work)
    return work, f"sqlite:///{work / 'mlflow.db'}"


FAST_SETUPS = setups(FAST)


def test_the_fast_subset_has_eight_faults_and_three_healthy_setups() -> None:
    assert len(FAST_SETUPS) == len(FAST)
    assert sum(1 for s in FAST_SETUPS if s.causes) >= 8 and sum(1 for s in FAST_SETUPS if s.healthy) >= 3


@pytest.mark.parametrize("setup", FAST_SETUPS, ids=[s.name for s in FAST_SETUPS])
def test_the_first_finding_is_the_fault_and_a_healthy_run_gets_no_error(setup, zoo) -> None:
    work, uri = zoo
    result = run_setup(setup, FAST.index(setup.name), work, uri)
    shown = [(f["severity"], f["cause"]) for f in result.findings]
    if setup.causes:
        assert result.primary in setup.causes, shown
        assert set(setup.causes) <= result.found | {result.primary}, shown
    else:
        assert result.errors == [], shown

"""A process killed with SIGKILL mid-provision or mid-acquire leaves nothing that
`reconcile` cannot bring back to a consistent state."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from reliability.invariants import check_invariants

from core import VMState, open_engine

# Slow enough (about 0.3-0.6 s a first boot) that kills land in the middle of steps.
SCALE = 0.01

PROVISION = r"""
import sys
from core import open_engine
with open_engine(db=sys.argv[1], backend="sim", sim_scale=float(sys.argv[2])) as engine:
    engine.provision_pool("p", parallelism=3)
"""

ACQUIRE = r"""
import sys
from core import open_engine
with open_engine(db=sys.argv[1], backend="sim", sim_scale=float(sys.argv[2])) as engine:
    while True:
        vm = engine.acquire("p", wait_s=10)
        engine.release(vm.name)
"""


def assert_consistent(db: str) -> None:
    with open_engine(db=db, backend="sim", sim_scale=0) as engine:
        report = engine.reconcile()
        assert report.errors == [] and report.orphans == [] and report.busy == []
        assert check_invariants(engine, report=report, errors_allowed=False) == []
        # And the pool can be completed from here.
        report2 = engine.provision_pool("p")
        assert not report2.failed
        assert len(engine.list_vms(pool="p")) == 4
        assert engine.reconcile().fixed == []


def setup(db: str, provision: bool) -> None:
    with open_engine(db=db, backend="sim", sim_scale=0) as engine:
        engine.create_template("t", r"C:\T\t.vhdx", memory_mb=2048)
        engine.create_pool("p", "t", count=4, warm=3, hot=1)
        if provision:
            engine.provision_pool("p")


def kill_after(script: str, db: str, delay: float) -> None:
    proc = subprocess.Popen([sys.executable, "-c", script, db, str(SCALE)])
    time.sleep(delay)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


@pytest.mark.parametrize("trial", range(6))
def test_killed_while_provisioning(tmp_path: Path, trial: int) -> None:
    db = str(tmp_path / "crash.db")
    run_provisioning_trial(db, trial)


@pytest.mark.parametrize("trial", range(2))
def test_killed_while_provisioning_on_postgresql(pg_url: str, trial: int) -> None:
    run_provisioning_trial(pg_url, trial)


def run_provisioning_trial(db: str, trial: int) -> None:
    setup(db, provision=False)
    delay = random.Random(trial).uniform(0.6, 2.5)  # seeded: the same kills every run
    kill_after(PROVISION, db, delay)
    assert_consistent(db)


@pytest.mark.parametrize("trial", range(6))
def test_killed_while_acquiring(tmp_path: Path, trial: int) -> None:
    run_acquiring_trial(str(tmp_path / "crash.db"), trial)


@pytest.mark.parametrize("trial", range(2))
def test_killed_while_acquiring_on_postgresql(pg_url: str, trial: int) -> None:
    run_acquiring_trial(pg_url, trial)


def run_acquiring_trial(db: str, trial: int) -> None:
    setup(db, provision=True)
    delay = random.Random(100 + trial).uniform(0.8, 2.5)
    kill_after(ACQUIRE, db, delay)
    assert_consistent(db)
    with open_engine(db=db, backend="sim", sim_scale=0) as engine:
        # A VM whose acquire was cut short is free again; one fully acquired stays held.
        held = [vm for vm in engine.list_vms() if vm.holder]
        assert all(vm.state is VMState.RUNNING for vm in held)

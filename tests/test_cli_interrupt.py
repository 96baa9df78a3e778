"""Ctrl-C during `hvkube pool provision`, in a real process on a simulated host that takes
time: no VM is begun after the signal, what was in flight is finished or removed, the
command says so and exits 130; a second Ctrl-C abandons at once and names what is left
half-done, which `hvkube reconcile` settles. (The time from signal to exit is measured by
bench/interrupt.py, not asserted here.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from core import open_engine
from core.states import VMState
from tests.conftest import REPO, run_cli

# Slow enough that a build of 5, two at a time, is still running when the signal comes.
SLOW = {"HVKUBE_SIM_SCALE": "0.1"}


def _pool_of_five() -> None:
    for args in (
        ("template", "create", "--name", "t", "--vhdx", r"C:\t.vhdx"),
        ("pool", "create", "--name", "bp", "--template", "t", "--count", "5", "--warm", "5"),
    ):
        assert run_cli(*args).returncode == 0


class Provisioning:
    """`hvkube pool provision bp --parallel 2`, its stderr read line by line."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "core.cli", "pool", "provision", "bp", "--parallel", "2"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **SLOW},
            cwd=REPO,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, needle: str, count: int = 1, limit_s: float = 60) -> None:
        deadline = time.monotonic() + limit_s
        while sum(needle in line for line in self.lines) < count:
            assert time.monotonic() < deadline, f"no {needle!r} in {self.lines}"
            assert self.proc.poll() is None, f"exited early: {self.lines}"
            time.sleep(0.02)

    def finish(self) -> tuple[int, str, str]:
        # Not communicate(): it would read stderr too, taking lines from the reader.
        code = self.proc.wait(timeout=120)
        assert self.proc.stdout is not None
        out = self.proc.stdout.read()
        self._reader.join(timeout=10)
        return code, out, "\n".join(self.lines)


def _store_and_host(db: Path) -> tuple[dict[str, VMState], set[str]]:
    with open_engine(db=str(db), backend="sim", sim_scale=0) as engine:
        store = {vm.name: vm.state for vm in engine.list_vms()}
        host = {vm.name for vm in engine.backend.list_vms()}
    return store, host


def test_ctrl_c_stops_provisioning_cleanly_and_says_what_was_done(db_path: Path) -> None:
    _pool_of_five()
    run = Provisioning()
    run.wait_for(": boot", count=2)  # two VMs are being built, three wait their turn
    run.proc.send_signal(signal.SIGINT)
    code, out, err = run.finish()
    before, _, after = err.partition("SIGINT: stopping")
    begun = {line.split(":")[0] for line in before.splitlines() if ": disk " in line}

    assert code == 130, err
    assert "stopping building pool bp" in err  # acknowledged on the spot
    assert "pool bp: stopped after" in out
    assert "not begun: " in out and "Nothing is left half-done" in out
    store, host = _store_and_host(db_path)
    # Nothing is left half-done: every VM in the store is ready, and the host has exactly
    # the store's VMs.
    assert all(not state.transitional for state in store.values()), store
    assert set(store) == host
    # No VM that had not been begun when the signal came was started afterwards.
    never = {f"bp-00{i}" for i in range(1, 6)} - begun
    assert never, "the signal came before every build had begun"
    for name in never:
        assert name not in host and f"{name}: disk" not in after
        assert f"{name}: not started" in after, err
    # What the summary says is what the store holds.
    for name in store:
        assert name in out.split("built and ready:")[1].splitlines()[0]
    assert run_cli("reconcile").stdout.strip().endswith("store and host agree")


def test_a_second_ctrl_c_abandons_at_once_and_reconcile_settles_the_rest(
    db_path: Path,
) -> None:
    _pool_of_five()
    # Undoing the first VM hangs (Remove-VM does not return), so the first Ctrl-C cannot
    # finish: the second one must end the command anyway.
    assert run_cli("sim", "fault", "hang", "--op", "remove", "--seconds", "60").returncode == 0
    run = Provisioning()
    run.wait_for(": boot", count=2)
    run.proc.send_signal(signal.SIGINT)
    run.wait_for(": rollback")
    run.proc.send_signal(signal.SIGINT)
    code, _, err = run.finish()

    assert code == 130, err
    assert "abandoned" in err, err
    store, _ = _store_and_host(db_path)
    stuck = sorted(name for name, state in store.items() if state.transitional)
    assert stuck, store
    for name in stuck:  # whatever it left in the middle of a step, it named
        assert name in err.split("abandoned")[1]
    assert "hvkube reconcile" in err
    assert run_cli("sim", "clear").returncode == 0
    assert run_cli("reconcile").returncode == 0
    store, host = _store_and_host(db_path)
    assert all(not state.transitional for state in store.values()), store
    assert set(store) == host

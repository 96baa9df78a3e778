"""Lifecycle conformance: the same engine-level tests on every available backend.

The engine (over a fresh SQLite store) drives the backend; each test checks what
the store says against what the host says. No test asserts on timing.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
from pathlib import Path

from PIL import Image

from core.backends.base import CLEAN_CHECKPOINT
from core.engine import Engine
from core.models import HostState, VMState
from tests.conformance.backends import BackendCase
from tests.conformance.conftest import engine_env
from tests.host_support import host_named, ref_named

POOL = "conf"
REPO = Path(__file__).resolve().parents[2]


def make_pool(engine: Engine, case: BackendCase, root: Path, count: int, warm: int, hot: int = 0):
    engine.create_template("tpl", case.template_disk(root), memory_mb=case.memory_mb, cpus=1)
    engine.create_pool(POOL, "tpl", count=count, warm=warm, hot=hot)
    report = engine.provision_pool(POOL)
    assert report.failed == {}
    assert len(report.created) == count
    return report


def host_state(engine: Engine, name: str) -> HostState:
    host = host_named(engine, name)
    assert host is not None, f"{name} is not on the host"
    return host.state


def test_provision_and_prepare(case: BackendCase, engine: Engine, root: Path) -> None:
    make_pool(engine, case, root, count=2, warm=1)
    vms = engine.list_vms(pool=POOL)
    assert sorted(vm.state for vm in vms) == sorted([VMState.SAVED, VMState.OFF])
    for vm in vms:
        host = host_named(engine, vm.name)
        assert host is not None
        assert host.state.value == {VMState.SAVED: "Saved", VMState.OFF: "Off"}[vm.state]
        assert CLEAN_CHECKPOINT in engine.backend.checkpoint_names(ref_named(engine, vm.name))
        assert not vm.held
    saved = next(vm for vm in vms if vm.state is VMState.SAVED)
    assert engine.backend.saved_state_path(ref_named(engine, saved.name))
    kinds = {(e.kind, e.ok) for e in engine.events(pool=POOL, limit=100)}
    assert ("provision", True) in kinds
    assert ("checkpoint", True) in kinds


def test_acquire_and_release_with_reset(case: BackendCase, engine: Engine, root: Path) -> None:
    make_pool(engine, case, root, count=2, warm=1)

    warm = engine.acquire(POOL, holder="agent-a")
    assert warm.from_state is VMState.SAVED
    assert warm.ip
    assert host_state(engine, warm.name) is HostState.RUNNING
    assert engine.backend.heartbeat_ok(ref_named(engine, warm.name))

    cold = engine.acquire(POOL, holder="agent-b")
    assert cold.from_state is VMState.OFF
    assert host_state(engine, cold.name) is HostState.RUNNING
    assert engine.backend.heartbeat_ok(ref_named(engine, cold.name))

    for lease in (warm, cold):
        vm = engine.release(lease.name, policy="reset", holder=lease.holder)
        assert vm is not None
        assert vm.state is VMState.SAVED
        assert not vm.held
        assert host_state(engine, lease.name) is HostState.SAVED

    again = engine.acquire(POOL)
    assert again.from_state is VMState.SAVED
    assert engine.backend.heartbeat_ok(ref_named(engine, again.name))
    assert engine.get_vm(again.name).error is None


def test_hot_tier_acquire(case: BackendCase, engine: Engine, root: Path) -> None:
    make_pool(engine, case, root, count=1, warm=0, hot=1)
    (vm,) = engine.list_vms(pool=POOL)
    assert vm.state is VMState.PAUSED
    assert host_state(engine, vm.name) is HostState.PAUSED
    lease = engine.acquire(POOL)
    assert lease.from_state is VMState.PAUSED
    assert host_state(engine, lease.name) is HostState.RUNNING
    assert engine.backend.heartbeat_ok(ref_named(engine, lease.name))


def test_resume_falls_back_to_clean_after_damaged_saved_state(
    case: BackendCase, engine: Engine, root: Path
) -> None:
    make_pool(engine, case, root, count=1, warm=1)
    (vm,) = engine.list_vms(pool=POOL)
    assert vm.state is VMState.SAVED
    case.damage_saved_state(engine, vm.name)

    lease = engine.acquire(POOL)

    assert lease.from_state is VMState.SAVED
    assert host_state(engine, lease.name) is HostState.RUNNING
    assert engine.backend.heartbeat_ok(ref_named(engine, lease.name))
    now = engine.get_vm(lease.name)
    assert now.state is VMState.RUNNING
    assert now.error is None  # restored from the clean checkpoint, no cold boot needed
    fallbacks = engine.events(vm=lease.name, kind="resume_fallback")
    assert [e.ok for e in fallbacks] == [True]


SNIPPET = """
import sys, time
from core import open_engine

engine = open_engine()
real_start = engine.backend.start

def start(name):
    real_start(name)
    print("STARTED", name, flush=True)
    time.sleep(3600)  # killed here: the host resumed the VM, the store never heard of it

engine.backend.start = start
engine.acquire(sys.argv[1], holder="doomed")
"""


def test_reconcile_after_engine_killed(case: BackendCase, engine: Engine, root: Path) -> None:
    make_pool(engine, case, root, count=1, warm=1)
    (vm,) = engine.list_vms(pool=POOL)

    proc = subprocess.Popen(
        [sys.executable, "-c", SNIPPET, POOL],
        cwd=REPO,
        env=engine_env(case, engine, root),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.split() == ["STARTED", vm.name]
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()

    # The store recorded the intent; the host kept running the VM without the engine.
    assert engine.get_vm(vm.name).state is VMState.RESUMING
    assert host_state(engine, vm.name) is HostState.RUNNING

    report = engine.reconcile()

    assert report.errors == []
    assert any(line.startswith(f"{vm.name}:") for line in report.fixed)
    after = engine.get_vm(vm.name)
    assert after.state is VMState.SAVED
    assert not after.held
    assert host_state(engine, vm.name) is HostState.SAVED
    lease = engine.acquire(POOL)
    assert lease.name == vm.name
    assert engine.backend.heartbeat_ok(ref_named(engine, vm.name))


def test_screenshot_is_png_of_screen_size(case: BackendCase, engine: Engine, root: Path) -> None:
    make_pool(engine, case, root, count=1, warm=1)
    lease = engine.acquire(POOL)
    data = engine.screenshot(lease.name)
    image = Image.open(io.BytesIO(data))
    image.load()
    assert image.format == "PNG"
    assert image.size == case.screen_size

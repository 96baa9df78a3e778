"""The engine's lifecycle, written once and run on the simulated host and on the Hyper-V
backend over the fake PowerShell host (the real transport, framing, parsing and errors)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from hyperv_helpers import engine_on, sim_host

from core.backends.base import CLEAN_CHECKPOINT
from core.engine import Engine
from core.models import HostState, VMState
from tests.host_support import host_named


@pytest.fixture(params=["sim", "hyperv"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    eng = engine_on(request.param, tmp_path, sessions=4)
    yield eng
    eng.close()


def test_provision_parks_vms_saved_with_a_clean_checkpoint(engine: Engine) -> None:
    report = engine.provision_pool("web")
    assert sorted(report.created) == ["web-001", "web-002"] and not report.failed
    for vm in engine.list_vms(pool="web"):
        assert vm.state is VMState.SAVED
        host = host_named(engine, vm.name)
        assert host is not None and host.state is HostState.SAVED
        assert engine.backend.checkpoint_names(engine.ref(vm)) == [CLEAN_CHECKPOINT]


def test_acquire_then_release_with_reset(engine: Engine) -> None:
    engine.provision_pool("web")
    got = engine.acquire("web")
    assert got.from_state is VMState.SAVED and got.ip
    assert host_named(engine, got.name).state is HostState.RUNNING  # type: ignore[union-attr]
    vm = engine.release(got.name, policy="reset")
    assert vm is not None and vm.state is VMState.SAVED and not vm.held
    assert host_named(engine, got.name).state is HostState.SAVED  # type: ignore[union-attr]


def test_reconcile_marks_a_vm_deleted_outside_as_missing(engine: Engine, tmp_path: Path) -> None:
    engine.provision_pool("web")
    sim_host(tmp_path).inject_fault("delete-vm", vm="web-002")
    report = engine.reconcile()
    assert report.missing == ["web-002"]
    assert engine.get_vm("web-002").state is VMState.MISSING
    assert engine.get_vm("web-001").state is VMState.SAVED


def test_reconcile_finishes_an_interrupted_reset(engine: Engine) -> None:
    engine.provision_pool("web")
    got = engine.acquire("web")
    # A crash after the intent was recorded: the row says RESETTING, nobody owns it.
    engine.ledger.begin(got.name, VMState.RESETTING, holder=got.holder, op="release")
    dead = f"{socket.gethostname()}:999999999:1"  # a process of this host that is gone
    engine.store.t.VM.update(op_owner=dead).where(engine.store.t.VM.name == got.name).execute()
    report = engine.reconcile()
    assert any(got.name in fixed for fixed in report.fixed)
    vm = engine.get_vm(got.name)
    assert vm.state is VMState.SAVED and not vm.held


def test_resume_falls_back_to_clean_when_the_saved_state_is_corrupt(
    engine: Engine, tmp_path: Path
) -> None:
    engine.provision_pool("web")
    sim_host(tmp_path).inject_fault("corrupt-saved-state", vm="web-001")
    vm = engine.resume_vm("web-001")
    assert vm.state is VMState.RUNNING and vm.ip
    kinds = [e.kind for e in engine.events(vm="web-001")]
    assert "resume_fallback" in kinds


def test_out_of_memory_is_reported_as_such(engine: Engine, tmp_path: Path) -> None:
    from core.errors import CapacityExceeded, OutOfMemory

    engine.provision_pool("web")
    sim_host(tmp_path).inject_fault("out-of-memory")
    with pytest.raises((OutOfMemory, CapacityExceeded)):
        engine.acquire("web")

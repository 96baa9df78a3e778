"""The VM lifecycle through the engine on the simulated host."""

from __future__ import annotations

import time

import pytest

from core import Engine, VMState
from core.backends.sim import SimHost
from core.errors import (
    AlreadyExists,
    CapacityExceeded,
    Conflict,
    InvalidInput,
    NotFound,
    NoVMAvailable,
    ReadOnlyMode,
)
from core.ledger import state_from_host
from core.models import HostState, ReleasePolicy
from tests.host_support import host_named


def states(engine: Engine, pool: str) -> dict[str, VMState]:
    return {vm.name: vm.state for vm in engine.list_vms(pool=pool)}


def host_state(engine: Engine, name: str) -> HostState:
    vm = host_named(engine, name)
    assert vm is not None
    return vm.state


def test_provision_parks_vms_in_the_asked_tiers(engine: Engine, pool: str) -> None:
    counts = sorted(states(engine, pool).values())
    assert counts == sorted(
        [VMState.PAUSED, VMState.SAVED, VMState.SAVED, VMState.SAVED, VMState.OFF]
    )
    for vm in engine.list_vms(pool=pool):
        host = host_named(engine, vm.name)
        assert host is not None and "clean" in host.checkpoints
        assert state_from_host(host) == vm.state
    kinds = {e.kind for e in engine.events(limit=500)}
    assert {"provision", "first_boot", "checkpoint"} <= kinds


def test_acquire_takes_hot_then_warm_then_cold(engine: Engine, pool: str) -> None:
    order = [engine.acquire(pool).from_state for _ in range(5)]
    assert order == [VMState.PAUSED, VMState.SAVED, VMState.SAVED, VMState.SAVED, VMState.OFF]
    with pytest.raises(NoVMAvailable):
        engine.acquire(pool)


def test_acquire_resumes_and_reports_address(engine: Engine, pool: str) -> None:
    vm = engine.acquire(pool)
    row = engine.get_vm(vm.name)
    assert row.state is VMState.RUNNING and row.holder == vm.holder
    assert vm.ip and vm.ip == row.ip
    assert host_state(engine, vm.name) is HostState.RUNNING
    assert row.last_resume_ms is not None


def test_release_with_reset_restores_clean_to_saved(engine: Engine, pool: str) -> None:
    vm = engine.acquire(pool)
    released = engine.release(vm.name)  # pool policy: reset
    assert released is not None and released.state is VMState.SAVED
    assert host_state(engine, vm.name) is HostState.SAVED
    assert engine.get_vm(vm.name).holder is None
    assert engine.events(vm=vm.name, limit=1)[0].kind == "release_reset"


def test_release_policies(engine: Engine, pool: str) -> None:
    vm = engine.acquire(pool)
    assert engine.release(vm.name, policy="save").state is VMState.SAVED  # type: ignore[union-attr]
    vm = engine.acquire(pool)
    assert engine.release(vm.name, policy=ReleasePolicy.DESTROY) is None
    assert host_named(engine, vm.name) is None
    with pytest.raises(NotFound):
        engine.get_vm(vm.name)
    with pytest.raises(InvalidInput):
        engine.release(engine.acquire(pool).name, policy="explode")


def test_release_of_an_idle_vm_is_refused(engine: Engine, pool: str) -> None:
    name = engine.list_vms(pool=pool)[0].name
    with pytest.raises(Conflict):
        engine.release(name)


def test_resume_falls_back_when_saved_state_is_corrupt(engine: Engine, pool: str) -> None:
    saved = [vm.name for vm in engine.list_vms(pool=pool) if vm.state is VMState.SAVED]
    sim = engine.backend
    assert isinstance(sim, SimHost)
    for name in saved:
        sim.inject_fault("corrupt-saved-state", vm=name)
    engine.acquire(pool)  # the hot one
    vm = engine.acquire(pool)
    assert vm.from_state is VMState.SAVED
    assert host_state(engine, vm.name) is HostState.RUNNING
    kinds = [e.kind for e in engine.events(vm=vm.name, limit=5)]
    assert "resume_fallback" in kinds


def test_ip_is_refreshed_after_resume(engine: Engine, pool: str) -> None:
    vm = engine.acquire(pool)
    engine.release(vm.name, policy="save")
    sim = engine.backend
    assert isinstance(sim, SimHost)
    sim.inject_fault("ip-change", vm=vm.name)
    before = engine.get_vm(vm.name).ip
    again = [engine.acquire(pool) for _ in range(5)]
    moved = next(a for a in again if a.name == vm.name)
    assert moved.ip != before and engine.get_vm(vm.name).ip == moved.ip


def test_provisioning_waits_for_memory_instead_of_overcommitting(engine: Engine) -> None:
    # 65,536 MB host with an 80% ceiling: two 20,000 MB VMs may boot at once, not three.
    engine.create_template("big", r"C:\T\big.vhdx", memory_mb=20_000)
    engine.create_pool("bigpool", "big", count=4, warm=4)
    report = engine.provision_pool("bigpool", parallelism=8)
    assert sorted(report.created) == [f"bigpool-00{i}" for i in range(1, 5)]
    assert set(states(engine, "bigpool").values()) == {VMState.SAVED}


def test_provisioning_waits_for_booted_vms_to_park(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two 20,000 MB VMs have booted and are still being checkpointed (holding memory,
    # no boot in flight): the third must wait for them to be saved, not be refused.
    engine.create_template("big", r"C:\T\big.vhdx", memory_mb=20_000)
    engine.create_pool("bigpool", "big", count=3, warm=3)
    checkpoint = engine.backend.checkpoint

    def slow_checkpoint(name: str, checkpoint_name: str) -> None:
        time.sleep(0.3)
        checkpoint(name, checkpoint_name)

    monkeypatch.setattr(engine.backend, "checkpoint", slow_checkpoint)
    report = engine.provision_pool("bigpool", parallelism=3)
    assert report.failed == {}
    assert sorted(report.created) == [f"bigpool-00{i}" for i in range(1, 4)]


def test_provision_refuses_before_building_when_nothing_fits(engine: Engine) -> None:
    engine.create_template("huge", r"C:\T\huge.vhdx", memory_mb=60_000)
    engine.create_pool("hp", "huge", count=1)
    with pytest.raises(CapacityExceeded) as caught:
        engine.provision_pool("hp")
    assert "80% ceiling" in str(caught.value)
    assert engine.list_vms(pool="hp") == []


def test_hot_tier_must_fit_in_memory(engine: Engine) -> None:
    engine.create_template("t", r"C:\T\t.vhdx", memory_mb=16_384)
    with pytest.raises(CapacityExceeded, match="hot VMs"):
        engine.create_pool("p", "t", count=4, hot=4)


def test_guards(engine: Engine, pool: str) -> None:
    with pytest.raises(Conflict, match="used by pool"):
        engine.delete_template("win11")
    with pytest.raises(Conflict, match="--with-vms"):
        engine.delete_pool(pool)
    with pytest.raises(AlreadyExists):
        engine.create_pool(pool, "win11", count=1)
    vm = engine.acquire(pool)
    with pytest.raises(Conflict, match="in use"):
        engine.delete_pool(pool, with_vms=True)
    engine.release(vm.name)
    assert engine.delete_pool(pool, with_vms=True) == 5
    assert engine.backend.list_vms() == []
    engine.delete_template("win11")
    assert engine.list_templates() == []


def test_scale_up_and_down(engine: Engine, pool: str) -> None:
    engine.scale_pool(pool, 7)
    assert len(engine.list_vms(pool=pool)) == 7
    held = engine.acquire(pool)
    engine.update_pool(pool, warm=0, hot=0)
    engine.scale_pool(pool, 2)
    names = {vm.name for vm in engine.list_vms(pool=pool)}
    assert len(names) == 2 and held.name in names  # a held VM is never removed
    assert {vm.name for vm in engine.backend.list_vms()} == names


def test_bad_counts_are_refused(engine: Engine) -> None:
    engine.create_template("t", r"C:\T\t.vhdx")
    for kwargs in ({"count": -1}, {"count": 2, "warm": 2, "hot": 1}, {"count": 1, "warm": -1}):
        with pytest.raises(InvalidInput):
            engine.create_pool("p", "t", **kwargs)  # type: ignore[arg-type]
    with pytest.raises(NotFound):
        engine.create_pool("p", "nope", count=1)
    assert engine.list_pools() == []


def test_vm_operations(engine: Engine, pool: str) -> None:
    name = next(vm.name for vm in engine.list_vms(pool=pool) if vm.state is VMState.SAVED)
    assert engine.resume_vm(name).state is VMState.RUNNING
    assert engine.pause_vm(name).state is VMState.PAUSED
    assert engine.save_vm(name).state is VMState.SAVED
    with pytest.raises(Conflict):
        engine.save_vm(name)  # Saved already: the store refuses before the host is asked
    assert engine.reset_vm(name).state is VMState.SAVED
    engine.resume_vm(name)
    assert engine.stop_vm(name, force=True).state is VMState.OFF
    assert engine.screenshot(name).startswith(b"\x89PNG")
    engine.delete_vm(name)
    assert host_named(engine, name) is None


def test_read_only_engine_refuses_every_change(engine: Engine, pool: str) -> None:
    engine.readonly = True
    name = engine.list_vms(pool=pool)[0].name
    calls = [
        lambda: engine.create_template("t2", r"C:\T\t.vhdx"),
        lambda: engine.create_pool("p2", "win11", count=1),
        lambda: engine.provision_pool(pool),
        lambda: engine.acquire(pool),
        lambda: engine.resume_vm(name),
        lambda: engine.save_vm(name),
        lambda: engine.reset_vm(name),
        lambda: engine.delete_vm(name),
        lambda: engine.delete_pool(pool, with_vms=True),
        lambda: engine.submit_agent(pool, "wf"),
        lambda: engine.reconcile(),
    ]
    before = states(engine, pool)
    for call in calls:
        with pytest.raises(ReadOnlyMode):
            call()
    assert states(engine, pool) == before
    assert len(engine.list_pools()) == 1


def test_gpu_agents_need_a_gpu_pool(engine: Engine, pool: str) -> None:
    with pytest.raises(InvalidInput, match="GPU"):
        engine.submit_agent(pool, "render", requires_gpu=True)
    agent = engine.submit_agent(pool, "book-flight", {"dest": "NYC"})
    assert engine.get_agent(agent.id).task.input == {"dest": "NYC"}
    assert engine.cancel_agent(agent.id).status.value == "cancelled"


def test_a_saved_vm_records_where_its_state_is_until_it_resumes(engine: Engine, pool: str) -> None:
    got = engine.acquire(pool)
    saved = engine.release(got.name, policy="save")
    assert saved is not None and saved.saved_state_path
    assert engine.get_vm(got.name).saved_state_path == saved.saved_state_path
    engine.resume_vm(got.name)
    assert engine.get_vm(got.name).saved_state_path is None
    assert engine.save_vm(got.name).saved_state_path == saved.saved_state_path

"""Races between a scale-down and an acquire, made deterministic: the acquire lands exactly
between the scale-down's look at the VM and its recorded intent to delete it."""

from __future__ import annotations

from pathlib import Path

import pytest
from reliability.invariants import check_invariants

from core import open_engine
from core.engine import Engine
from core.errors import Conflict
from core.models import VMState
from tests.host_support import host_named


def test_a_vm_claimed_while_being_scaled_away_is_not_deleted(db_path: Path) -> None:
    with (
        open_engine(db=str(db_path), backend="sim", sim_scale=0) as scaler,
        open_engine(db=str(db_path), backend="sim", sim_scale=0) as agent,
    ):
        scaler.create_template("t", r"C:\T\t.vhdx", memory_mb=2048)
        scaler.create_pool("p", "t", count=1, warm=1)
        scaler.provision_pool("p")
        looked = Engine.get_vm

        def get_vm_then_someone_acquires(self: Engine, name: str):  # type: ignore[no-untyped-def]
            vm = looked(self, name)
            if self is scaler and not vm.held:
                agent.acquire("p", holder="agent-lease")  # resumed and handed over
            return vm

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(Engine, "get_vm", get_vm_then_someone_acquires)
            with pytest.raises(Conflict):
                scaler.delete_vm("p-001")
        vm = scaler.get_vm("p-001")
        assert vm.holder == "agent-lease" and vm.state is VMState.RUNNING
        assert host_named(scaler, "p-001") is not None
        assert check_invariants(scaler) == []


def test_reconcile_goes_on_while_another_process_writes(db_path: Path) -> None:
    """Reconcile releases VMs held for ended agents while another process writes. Found by
    the `reconcile-twice` crash trials: it read the rows lazily and wrote while the read was
    still open, and SQLite refuses to turn such a read into a write once another connection
    has committed ("database is locked", which no busy timeout waits out)."""
    from core.models import AgentStatus
    from core.store import Store, utcnow

    with open_engine(db=str(db_path), backend="sim", sim_scale=0) as engine:
        engine.create_template("t", r"C:\T\t.vhdx", memory_mb=2048)
        engine.create_pool("p", "t", count=3, warm=3)
        engine.provision_pool("p")
        for _ in range(3):
            agent = engine.submit_agent("p", "wf")
            engine.acquire("p", holder=f"agent-{agent.id}", agent_id=agent.id)
        # The agents end without their VMs being released (their process died).
        engine.store.t.Agent.update(
            status=AgentStatus.COMPLETED.value, finished_at=utcnow()
        ).execute()
        other = Store(db_path)
        release = Engine.release

        def release_while_another_writes(self: Engine, *args: object, **kw: object):  # type: ignore[no-untyped-def]
            other.insert_event("elsewhere", None, None, 0.0, True, None)  # commits at once
            return release(self, *args, **kw)  # type: ignore[arg-type]

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(Engine, "release", release_while_another_writes)
            report = engine.reconcile()
        other.close()
        assert report.errors == []
        assert sum("released from agent" in line for line in report.fixed) == 3
        assert all(not vm.held for vm in engine.list_vms())
        assert check_invariants(engine) == []

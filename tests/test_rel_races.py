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
        assert scaler.backend.get_vm("p-001") is not None
        assert check_invariants(scaler) == []

"""Backend faults, on the simulated host and on the Hyper-V backend over the fake PowerShell
host: each shows what the user sees (a clear error or an automatic recovery) and that the
store stays consistent with the host, before and after reconcile."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hyperv_helpers import fake_backend, sim_host
from reliability.invariants import check_invariants
from reliability.stats import count

from core.backends.base import Backend
from core.backends.sim import SimHost
from core.engine import Engine
from core.errors import BackendError, CapacityExceeded, HvkubeError, OutOfMemory
from core.models import HostState, VMState
from core.settings import Settings
from core.store import Store
from tests.fakes import fakeps
from tests.host_support import host_named, ref_named


def _settings(folder: Path, kind: str) -> Settings:
    return Settings(
        db=str(folder / "hvkube.db"),
        backend="sim" if kind == "sim" else "hyperv",
        # The pool is built once on the simulated host that the fake PowerShell host answers
        # from: the same VMs, the same ids, so moving the store to Hyper-V is sound.
        backend_switch=kind != "sim",
        sim_scale=0,
        ready_timeout_s=10,
        op_timeout_s=3.0,
    )


@pytest.fixture(scope="module")
def provisioned(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pool of two warm VMs, built once on the simulated host and copied for each test (the
    fake PowerShell host answers from the same simulated host)."""
    folder = tmp_path_factory.mktemp("provisioned")
    engine = Engine(Store(folder / "hvkube.db"), sim_host(folder), _settings(folder, "sim"))
    engine.create_template("win11", "C:\\templates\\win11.vhdx", memory_mb=2048)
    engine.create_pool("web", "win11", count=2, warm=2)
    assert not engine.provision_pool("web").failed
    engine.close()
    return folder


class Rig:
    """An engine on one backend, the simulated host behind it, and fault injection."""

    def __init__(self, kind: str, folder: Path) -> None:
        self.kind = kind
        self.folder = folder
        self.sim: SimHost = sim_host(folder)
        backend: Backend = (
            self.sim if kind == "sim" else fake_backend(folder, op_timeout_s=3.0, sessions=1)
        )
        self.engine = Engine(Store(folder / "hvkube.db"), backend, _settings(folder, kind))

    def fault(self, kind: str, **where: str | float) -> None:
        count("faults injected")
        self.sim.inject_fault(kind, **where)  # type: ignore[arg-type]

    def session_fault(self, kind: str, op: str) -> None:
        count("faults injected")
        fakeps.inject(self.folder, kind, op=op)

    def consistent(self) -> None:
        """No transitional state, store and host agree, holders belong to live agents: first
        as the failed operation left things, then after a reconcile."""
        assert check_invariants(self.engine, sim=self.sim) == []
        report = self.engine.reconcile()
        assert report.errors == [] and report.busy == []
        assert check_invariants(self.engine, report=report, sim=self.sim) == []

    def host_state(self, name: str) -> HostState:
        vm = host_named(self.sim, name)
        assert vm is not None
        return vm.state


def _rig(kind: str, provisioned: Path, tmp_path: Path) -> Rig:
    folder = tmp_path / "data"
    shutil.copytree(provisioned, folder)
    return Rig(kind, folder)


@pytest.fixture(params=["sim", "hyperv"])
def rig(request: pytest.FixtureRequest, provisioned: Path, tmp_path: Path) -> Iterator[Rig]:
    r = _rig(request.param, provisioned, tmp_path)
    yield r
    r.engine.close()


@pytest.fixture
def hv(provisioned: Path, tmp_path: Path) -> Iterator[Rig]:
    r = _rig("hyperv", provisioned, tmp_path)
    yield r
    r.engine.close()


# -- faults of the host ------------------------------------------------------------------------


def test_corrupt_saved_state_recovers_from_the_clean_checkpoint(rig: Rig) -> None:
    rig.fault("corrupt-saved-state", vm="web-001")
    got = rig.engine.acquire("web")
    assert got.name == "web-001" and got.ip
    assert "resume_fallback" in [e.kind for e in rig.engine.events(vm="web-001")]
    assert rig.engine.get_vm("web-001").state is VMState.RUNNING
    rig.consistent()


def test_vm_deleted_outside_is_reported_and_replaced(rig: Rig) -> None:
    rig.fault("delete-vm", vm="web-002")
    report = rig.engine.reconcile()
    assert report.missing == ["web-002"]
    assert rig.engine.get_vm("web-002").state is VMState.MISSING
    rig.consistent()
    assert rig.engine.provision_pool("web").created == ["web-002"]
    assert rig.engine.get_vm("web-002").state is VMState.SAVED
    rig.consistent()


def test_vm_deleted_outside_before_acquire_is_skipped(rig: Rig) -> None:
    rig.fault("delete-vm", vm="web-001")
    got = rig.engine.acquire("web")
    assert got.name == "web-002"
    assert rig.engine.get_vm("web-001").state is VMState.MISSING
    rig.consistent()


def test_ip_change_on_resume_is_recorded(rig: Rig) -> None:
    first = rig.engine.acquire("web")
    rig.engine.release(first.name, policy="save")
    rig.fault("ip-change", vm=first.name)
    again = rig.engine.acquire("web", holder="second")
    assert again.name == first.name
    assert again.ip and again.ip != first.ip
    assert (
        rig.engine.get_vm(first.name).ip
        == again.ip
        == rig.sim.ip_address(ref_named(rig.sim, first.name))
    )
    rig.consistent()


@pytest.mark.parametrize(
    ("kind", "expected", "words"),
    [
        ("hang", BackendError, "did not"),
        ("out-of-memory", (OutOfMemory, CapacityExceeded), "memory"),
        ("permission-denied", BackendError, "permission"),
        ("fail", BackendError, "failed"),
    ],
)
def test_failed_resume_on_acquire_is_a_clear_error_and_the_vm_stays_in_the_pool(
    rig: Rig, kind: str, expected: type[Exception] | tuple[type[Exception], ...], words: str
) -> None:
    rig.fault(kind, op="start") if kind != "out-of-memory" else rig.fault(kind)
    with pytest.raises(expected) as info:
        rig.engine.acquire("web")
    assert words in str(info.value).lower()
    # Nothing happened on the host: the VM is back in the pool, free, as it was.
    vm = rig.engine.get_vm("web-001")
    assert vm.state is VMState.SAVED and not vm.held and vm.error
    assert rig.host_state("web-001") is HostState.SAVED
    rig.consistent()
    rig.sim.clear_faults()
    assert rig.engine.acquire("web").name == "web-001"
    rig.consistent()


def test_hung_reset_on_release_is_a_clear_error_and_the_vm_leaves_the_pool(rig: Rig) -> None:
    got = rig.engine.acquire("web")
    rig.fault("hang", op="restore", vm=got.name)
    with pytest.raises(BackendError) as info:
        rig.engine.release(got.name)
    assert "did not" in str(info.value)
    vm = rig.engine.get_vm(got.name)
    # Not reset: it must not go back to the pool dirty.
    assert vm.state is VMState.ERROR and not vm.held and vm.error
    rig.consistent()
    assert rig.engine.provision_pool("web").created == [got.name]  # replaced
    rig.consistent()


def test_out_of_memory_when_provisioning_is_reported_with_figures(rig: Rig) -> None:
    rig.engine.scale_pool("web", 2)
    rig.fault("out-of-memory")
    with pytest.raises((OutOfMemory, CapacityExceeded)) as info:
        rig.engine.scale_pool("web", 4)
    assert "MB" in str(info.value)
    rig.consistent()


# -- faults of the PowerShell session (Hyper-V backend only) -----------------------------------


@pytest.mark.parametrize("kind", ["die", "hang", "garbage"])
def test_session_fault_during_acquire_is_a_clear_error_and_changes_nothing(
    hv: Rig, kind: str
) -> None:
    hv.session_fault(kind, "vm_start")
    with pytest.raises(BackendError) as info:
        hv.engine.acquire("web")
    assert info.value.message and "\n" not in info.value.message.strip()
    vm = hv.engine.get_vm("web-001")
    assert vm.state is VMState.SAVED and not vm.held
    hv.consistent()
    assert hv.engine.acquire("web").name == "web-001"  # the next session works
    hv.consistent()


@pytest.mark.parametrize("kind", ["die", "hang", "garbage"])
def test_session_fault_during_release_leaves_the_vm_out_of_the_pool(hv: Rig, kind: str) -> None:
    got = hv.engine.acquire("web")
    hv.session_fault(kind, "checkpoint_restore")
    with pytest.raises(HvkubeError):
        hv.engine.release(got.name)
    vm = hv.engine.get_vm(got.name)
    assert vm.state is VMState.ERROR and not vm.held and vm.error
    hv.consistent()


def test_noise_and_forged_frames_are_ignored(hv: Rig) -> None:
    hv.session_fault("noise", "vm_start")
    got = hv.engine.acquire("web")
    assert got.ip and hv.engine.get_vm(got.name).state is VMState.RUNNING
    hv.consistent()


def test_permission_denied_by_the_host_says_so(hv: Rig) -> None:
    hv.fault("permission-denied", op="save")
    got = hv.engine.acquire("web")
    with pytest.raises(BackendError) as info:
        hv.engine.release(got.name, policy="save")
    assert type(info.value).__name__ == "PermissionDenied"
    assert "permission" in info.value.message
    hv.consistent()


@pytest.mark.parametrize(
    ("op", "call"),
    [
        ("vm_start", lambda e: e.acquire("web")),
        ("checkpoint_restore", lambda e: e.release(e.acquire("web").name)),
        ("vm_save", lambda e: e.save_vm(e.resume_vm("web-002").name)),
    ],
    ids=["acquire", "release", "save"],
)
def test_session_dying_after_the_host_acted_takes_the_vm_out_of_the_pool(
    hv: Rig, op: str, call: Any
) -> None:
    """The worst case: the host did the work, the answer was lost. hvkube cannot know what
    happened, so the VM goes to ERROR with the reason (never back to the pool as if nothing
    happened), no one holds it, and provisioning replaces it."""
    hv.session_fault("die-after", op)
    with pytest.raises(BackendError) as info:
        call(hv.engine)
    assert "session ended" in info.value.message
    broken = [vm for vm in hv.engine.list_vms() if vm.state is VMState.ERROR]
    assert len(broken) == 1 and not broken[0].held and broken[0].error
    hv.consistent()
    assert hv.engine.provision_pool("web").created == [broken[0].name]
    hv.consistent()

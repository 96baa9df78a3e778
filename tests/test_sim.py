"""The simulated host follows Hyper-V's state rules, persists, and can be broken on purpose."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from core.backends.base import Backend, VMRef
from core.backends.sim import SimHost
from core.errors import (
    BackendError,
    InvalidVMState,
    OutOfMemory,
    SavedStateCorrupt,
    VMNotFoundInHost,
)
from core.models import HostState


def make_vm(host: SimHost, name: str = "vm-001", memory_mb: int = 4096) -> VMRef:
    disk = host.disk_path_for(name, r"C:\T\win11.vhdx")
    host.create_differencing_disk(r"C:\T\win11.vhdx", disk)
    made = host.create_vm(name, disk, memory_mb, 2, False, owner="0" * 32)
    return VMRef(made.name, made.id)


def state(host: SimHost, name: VMRef) -> HostState:
    vm = host.get_vm(name)
    assert vm is not None
    return vm.state


def test_it_is_a_backend(tmp_path: Path) -> None:
    host = SimHost(tmp_path, scale=0)
    assert isinstance(host, Backend)
    assert host.simulated


def test_hyperv_state_rules(tmp_path: Path) -> None:
    host = SimHost(tmp_path, scale=0)
    name = make_vm(host)
    assert state(host, name) is HostState.OFF
    with pytest.raises(InvalidVMState):
        host.save(name)  # Save on Off fails
    host.start(name)
    assert state(host, name) is HostState.RUNNING
    host.checkpoint(name, "clean")
    host.save(name)
    assert state(host, name) is HostState.SAVED
    host.start(name)  # Start on Saved resumes
    assert state(host, name) is HostState.RUNNING
    host.pause(name)
    assert state(host, name) is HostState.PAUSED
    with pytest.raises(InvalidVMState):
        host.start(name)
    host.unpause(name)
    host.stop(name, force=True)
    assert state(host, name) is HostState.OFF
    host.restore_checkpoint(name, "clean")  # taken while running: restores to Saved
    assert state(host, name) is HostState.SAVED


def test_vms_are_addressed_by_id_never_by_name(tmp_path: Path) -> None:
    host = SimHost(tmp_path, scale=0)
    ours = make_vm(host, "agent-001")
    assert host.find_vms("agent-*") == []  # exact names, no wildcards
    # Hyper-V allows a second VM of the same name (told apart by id), in any case.
    theirs = host.add_foreign_vm("AGENT-001")
    assert {vm.id for vm in host.find_vms("agent-001")} == {ours.id, theirs.id}
    stale = VMRef("agent-001", "00000000-0000-0000-0000-000000000000")
    assert host.get_vm(stale) is None
    with pytest.raises(VMNotFoundInHost):
        host.start(stale)
    host.start(ours)
    assert state(host, ours) is HostState.RUNNING
    assert host.get_vm(VMRef(theirs.name, theirs.id)).state is HostState.OFF  # type: ignore[union-attr]
    assert host.get_vm(ours).owner == "0" * 32  # type: ignore[union-attr]
    assert theirs.owner is None


def test_remove_vm_keeps_its_disk_as_remove_vm_does(tmp_path: Path) -> None:
    host = SimHost(tmp_path, scale=0)
    ref = make_vm(host, "keep-001")
    disk = host.disk_path_for("keep-001", r"C:\T\win11.vhdx")
    host.remove(ref)
    assert host.get_vm(ref) is None and host.disk_exists(disk)
    host.remove_disk(disk.upper())  # NTFS: one file, whatever the case
    assert not host.disk_exists(disk)


def test_a_broken_vm_is_left_out_of_listings_and_stops_nothing_else(tmp_path: Path) -> None:
    host = SimHost(tmp_path, scale=0)
    good, ghost = make_vm(host, "good-001"), make_vm(host, "ghost-001")
    host.inject_fault("broken-vm", vm="ghost-001")
    assert [vm.name for vm in host.list_vms()] == ["good-001"]
    host.start(good)
    assert state(host, good) is HostState.RUNNING
    with pytest.raises(BackendError):
        host.start(ghost)


def test_memory_is_finite(tmp_path: Path) -> None:
    host = SimHost(tmp_path, scale=0, total_memory_mb=10_000)
    a = make_vm(host, "a", 6000)
    b = make_vm(host, "b", 6000)
    host.start(a)
    with pytest.raises(OutOfMemory) as caught:
        host.start(b)
    assert "6000 MB needed" in str(caught.value)
    host.save(a)
    host.start(b)  # a Saved VM holds no RAM
    assert host.capacity().free_memory_mb == 4000


def test_faults(tmp_path: Path) -> None:
    host = SimHost(tmp_path, scale=0)
    name = make_vm(host)
    host.start(name)
    first_ip = host.ip_address(name)
    host.save(name)
    host.inject_fault("corrupt-saved-state", vm=name.name)
    with pytest.raises(SavedStateCorrupt):
        host.start(name)
    host.clear_faults()
    host.inject_fault("ip-change", vm=name.name)
    host.start(name)
    assert host.ip_address(name) not in (None, first_ip)
    host.inject_fault("delete-vm", vm=name.name)
    assert host.get_vm(name) is None
    with pytest.raises(ValueError):
        host.inject_fault("no-such-fault")


def test_state_is_shared_between_processes(tmp_path: Path) -> None:
    host = SimHost(tmp_path, scale=0)
    ref = make_vm(host, "shared-001")
    code = (
        "import sys; from core.backends.sim import SimHost; from core.backends.base import VMRef; "
        "h = SimHost(sys.argv[1], scale=0); r = VMRef('shared-001', sys.argv[2]); "
        "h.start(r); h.save(r)"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path), ref.id], check=True, timeout=60)
    assert state(SimHost(tmp_path, scale=0), ref) is HostState.SAVED


def test_screenshot_is_a_png_naming_the_vm(tmp_path: Path) -> None:
    from io import BytesIO

    from PIL import Image

    host = SimHost(tmp_path, scale=0)
    name = make_vm(host)
    host.start(name)
    data = host.screenshot(name)
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    image = Image.open(BytesIO(data))
    assert image.size == (640, 400)
    # Off is drawn black, running is not: the picture follows the state.
    host.stop(name, force=True)
    off = Image.open(BytesIO(host.screenshot(name))).convert("RGB")
    assert off.getpixel((5, 5)) == (0, 0, 0)
    assert image.convert("RGB").getpixel((5, 5)) != (0, 0, 0)

"""The simulated host follows Hyper-V's state rules, persists, and can be broken on purpose."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from core.backends.base import Backend
from core.backends.sim import SimHost
from core.errors import InvalidVMState, OutOfMemory, SavedStateCorrupt, VMNotFoundInHost
from core.models import HostState


def make_vm(host: SimHost, name: str = "vm-001", memory_mb: int = 4096) -> str:
    disk = host.disk_path_for(name, r"C:\T\win11.vhdx")
    host.create_differencing_disk(r"C:\T\win11.vhdx", disk)
    host.create_vm(name, disk, memory_mb, 2, False)
    return name


def state(host: SimHost, name: str) -> HostState:
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


def test_exact_names_only(tmp_path: Path) -> None:
    host = SimHost(tmp_path, scale=0)
    make_vm(host, "agent-001")
    assert host.get_vm("agent-*") is None
    with pytest.raises(VMNotFoundInHost):
        host.start("agent-*")


def test_memory_is_finite(tmp_path: Path) -> None:
    host = SimHost(tmp_path, scale=0, total_memory_mb=10_000)
    make_vm(host, "a", 6000)
    make_vm(host, "b", 6000)
    host.start("a")
    with pytest.raises(OutOfMemory) as caught:
        host.start("b")
    assert "6000 MB needed" in str(caught.value)
    host.save("a")
    host.start("b")  # a Saved VM holds no RAM
    assert host.capacity().free_memory_mb == 4000


def test_faults(tmp_path: Path) -> None:
    host = SimHost(tmp_path, scale=0)
    name = make_vm(host)
    host.start(name)
    first_ip = host.ip_address(name)
    host.save(name)
    host.inject_fault("corrupt-saved-state", vm=name)
    with pytest.raises(SavedStateCorrupt):
        host.start(name)
    host.clear_faults()
    host.inject_fault("ip-change", vm=name)
    host.start(name)
    assert host.ip_address(name) not in (None, first_ip)
    host.inject_fault("delete-vm", vm=name)
    assert host.get_vm(name) is None
    with pytest.raises(ValueError):
        host.inject_fault("no-such-fault")


def test_state_is_shared_between_processes(tmp_path: Path) -> None:
    host = SimHost(tmp_path, scale=0)
    make_vm(host, "shared-001")
    code = (
        "import sys; from core.backends.sim import SimHost; "
        "h = SimHost(sys.argv[1], scale=0); h.start('shared-001'); h.save('shared-001')"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True, timeout=60)
    assert state(SimHost(tmp_path, scale=0), "shared-001") is HostState.SAVED


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

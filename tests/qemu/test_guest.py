"""The qemu backend on a real QEMU process with the test guest (skipped without them)."""

from __future__ import annotations

import io
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from core.backends.base import InputBackend, VMRef
from core.backends.qemu import QemuBackend, default_test_guest
from core.backends.qemu.marker import new_id
from core.errors import InvalidVMState, SavedStateCorrupt, VMNotFoundInHost
from core.models import HostState
from tests.conformance.backends import QEMU, qemu_accel

pytestmark = pytest.mark.skipif(QEMU.missing() is not None, reason=str(QEMU.missing()))


@pytest.fixture
def backend() -> Iterator[QemuBackend]:
    with tempfile.TemporaryDirectory(prefix="hvk-") as tmp:
        qemu = QemuBackend(Path(tmp) / "vms", state_dir=tmp, accel=qemu_accel(), op_timeout_s=120)
        try:
            yield qemu
        finally:
            for vm in qemu.list_vms():
                qemu.remove(VMRef(vm.name, vm.id))
            qemu.close()


STORE = "0123456789abcdef0123456789abcdef"


def booted_vm(backend: QemuBackend, name: str = "g1") -> VMRef:
    template = str(default_test_guest())
    disk = backend.disk_path_for(name, template)
    backend.create_differencing_disk(template, disk)
    made = backend.create_vm(name, disk, 256, 1, False, owner=STORE)
    vm = VMRef(made.name, made.id)
    backend.start(vm)
    deadline = time.monotonic() + 180
    while not backend.heartbeat_ok(vm):
        assert time.monotonic() < deadline, "the test guest did not get ready"
        time.sleep(0.1)
    return vm


def state_of(backend: QemuBackend, vm: VMRef) -> HostState:
    found = backend.get_vm(vm)
    assert found is not None
    return found.state


def serial_text(backend: QemuBackend, vm: VMRef) -> str:
    return backend.files_of(vm).serial.read_text(errors="replace")


def test_guest_keeps_running_across_save_and_resume(backend: QemuBackend) -> None:
    vm = booted_vm(backend)
    assert "HVKUBE-ECHO one" in backend.console_exchange(vm, "one", "HVKUBE-ECHO one", timeout_s=60)
    assert backend.ip_address(vm) == "127.0.0.1"
    assert backend.forwarded_port(vm) > 0

    with pytest.raises(InvalidVMState):
        backend.start(vm)  # already running
    backend.save(vm)
    state = backend.saved_state_path(vm)
    assert state is not None and Path(state).stat().st_size > 1024 * 1024
    assert state_of(backend, vm) is HostState.SAVED
    assert backend.ip_address(vm) is None

    backend.start(vm)
    assert state_of(backend, vm) is HostState.RUNNING
    assert not Path(state).exists()  # consumed by the resume
    assert backend.heartbeat_ok(vm)
    # The same guest answers, and it never booted again.
    assert "HVKUBE-ECHO two" in backend.console_exchange(vm, "two", "HVKUBE-ECHO two", timeout_s=60)
    assert serial_text(backend, vm).count("HVKUBE-READY") == 1


def test_a_stale_ref_leaves_the_running_vm_alone(backend: QemuBackend) -> None:
    vm = booted_vm(backend)
    stale = VMRef(vm.name, new_id())  # the id of a VM of that name that is gone
    for act in (
        lambda: backend.stop(stale, force=True),
        lambda: backend.save(stale),
        lambda: backend.pause(stale),
        lambda: backend.send_key(stale, "x"),
        lambda: backend.remove(stale),
    ):
        with pytest.raises(VMNotFoundInHost):
            act()
    assert state_of(backend, vm) is HostState.RUNNING
    assert "HVKUBE-ECHO still" in backend.console_exchange(
        vm, "still", "HVKUBE-ECHO still", timeout_s=60
    )


def test_keyboard_and_screen(backend: QemuBackend) -> None:
    vm = booted_vm(backend)
    backend.send_text(vm, "Typed Text!\n")
    deadline = time.monotonic() + 60
    while "HVKUBE-KEY Typed Text!" not in serial_text(backend, vm):
        assert time.monotonic() < deadline, "typed line not reported by the guest"
        time.sleep(0.1)
    backend.send_key(vm, "x")
    backend.send_key(vm, "enter")
    while "HVKUBE-KEY x" not in serial_text(backend, vm):
        assert time.monotonic() < deadline, "pressed key not reported by the guest"
        time.sleep(0.1)
    backend.click(vm, 100, 100)  # the USB tablet takes it; nothing to see in a text console
    image = Image.open(io.BytesIO(backend.screenshot(vm)))
    assert image.format == "PNG" and image.size == (720, 400)
    assert isinstance(backend, InputBackend)


def test_checkpoint_restores_to_saved_and_damage_is_detected(backend: QemuBackend) -> None:
    vm = booted_vm(backend)
    backend.checkpoint(vm, "clean")
    assert state_of(backend, vm) is HostState.RUNNING
    backend.pause(vm)
    assert state_of(backend, vm) is HostState.PAUSED

    backend.restore_checkpoint(vm, "clean")
    assert state_of(backend, vm) is HostState.SAVED

    state = backend.saved_state_path(vm)
    assert state is not None
    Path(state).write_bytes(b"not a migration stream" * 1000)
    with pytest.raises(SavedStateCorrupt):
        backend.start(vm)
    assert state_of(backend, vm) is HostState.SAVED

    backend.stop(vm, force=True)  # drops the damaged state
    assert state_of(backend, vm) is HostState.OFF
    backend.restore_checkpoint(vm, "clean")
    backend.start(vm)
    assert backend.heartbeat_ok(vm)
    assert serial_text(backend, vm).count("HVKUBE-READY") == 1

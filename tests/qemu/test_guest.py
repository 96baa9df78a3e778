"""The qemu backend on a real QEMU process with the test guest (skipped without them)."""

from __future__ import annotations

import io
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from core.backends.base import InputBackend
from core.backends.qemu import QemuBackend, default_test_guest
from core.errors import InvalidVMState, SavedStateCorrupt
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
                qemu.remove(vm.name)
            qemu.close()


def booted_vm(backend: QemuBackend, name: str = "g1") -> str:
    template = str(default_test_guest())
    disk = backend.disk_path_for(name, template)
    backend.create_differencing_disk(template, disk)
    backend.create_vm(name, disk, 256, 1, False)
    backend.start(name)
    deadline = time.monotonic() + 180
    while not backend.heartbeat_ok(name):
        assert time.monotonic() < deadline, "the test guest did not get ready"
        time.sleep(0.1)
    return name


def state_of(backend: QemuBackend, name: str) -> HostState:
    vm = backend.get_vm(name)
    assert vm is not None
    return vm.state


def serial_text(backend: QemuBackend, name: str) -> str:
    return backend.files(name).serial.read_text(errors="replace")


def test_guest_keeps_running_across_save_and_resume(backend: QemuBackend) -> None:
    name = booted_vm(backend)
    assert "HVKUBE-ECHO one" in backend.console_exchange(
        name, "one", "HVKUBE-ECHO one", timeout_s=60
    )
    assert backend.ip_address(name) == "127.0.0.1"
    assert backend.forwarded_port(name) > 0

    with pytest.raises(InvalidVMState):
        backend.start(name)  # already running
    backend.save(name)
    state = backend.saved_state_path(name)
    assert state is not None and Path(state).stat().st_size > 1024 * 1024
    assert state_of(backend, name) is HostState.SAVED
    assert backend.ip_address(name) is None

    backend.start(name)
    assert state_of(backend, name) is HostState.RUNNING
    assert not Path(state).exists()  # consumed by the resume
    assert backend.heartbeat_ok(name)
    # The same guest answers, and it never booted again.
    assert "HVKUBE-ECHO two" in backend.console_exchange(
        name, "two", "HVKUBE-ECHO two", timeout_s=60
    )
    assert serial_text(backend, name).count("HVKUBE-READY") == 1


def test_keyboard_and_screen(backend: QemuBackend) -> None:
    name = booted_vm(backend)
    backend.send_text(name, "Typed Text!\n")
    deadline = time.monotonic() + 60
    while "HVKUBE-KEY Typed Text!" not in serial_text(backend, name):
        assert time.monotonic() < deadline, "typed line not reported by the guest"
        time.sleep(0.1)
    backend.send_key(name, "x")
    backend.send_key(name, "enter")
    while "HVKUBE-KEY x" not in serial_text(backend, name):
        assert time.monotonic() < deadline, "pressed key not reported by the guest"
        time.sleep(0.1)
    backend.click(name, 100, 100)  # the USB tablet takes it; nothing to see in a text console
    image = Image.open(io.BytesIO(backend.screenshot(name)))
    assert image.format == "PNG" and image.size == (720, 400)
    assert isinstance(backend, InputBackend)


def test_checkpoint_restores_to_saved_and_damage_is_detected(backend: QemuBackend) -> None:
    name = booted_vm(backend)
    backend.checkpoint(name, "clean")
    assert state_of(backend, name) is HostState.RUNNING
    backend.pause(name)
    assert state_of(backend, name) is HostState.PAUSED

    backend.restore_checkpoint(name, "clean")
    assert state_of(backend, name) is HostState.SAVED

    state = backend.saved_state_path(name)
    assert state is not None
    Path(state).write_bytes(b"not a migration stream" * 1000)
    with pytest.raises(SavedStateCorrupt):
        backend.start(name)
    assert state_of(backend, name) is HostState.SAVED

    backend.stop(name, force=True)  # drops the damaged state
    assert state_of(backend, name) is HostState.OFF
    backend.restore_checkpoint(name, "clean")
    backend.start(name)
    assert backend.heartbeat_ok(name)
    assert serial_text(backend, name).count("HVKUBE-READY") == 1

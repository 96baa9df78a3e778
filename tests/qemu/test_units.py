"""Pieces of the qemu backend that need no QEMU process."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.backends import make_backend
from core.backends.base import Backend, Capability, VMRef
from core.backends.qemu import QemuBackend, VMFiles, boot_files_for
from core.backends.qemu.accel import choose_accel
from core.backends.qemu.keys import chord_for, qcode_for
from core.errors import InvalidInput, Unsupported, VMNotFoundInHost
from core.models import HostState
from core.settings import Settings


def test_factory_builds_a_backend_beside_the_database(tmp_path: Path) -> None:
    backend = make_backend(Settings(db=str(tmp_path / "x.db"), backend="qemu"))
    assert isinstance(backend, QemuBackend)
    assert isinstance(backend, Backend)
    assert backend.root == tmp_path / "qemu-vms"
    assert Capability.GPU not in backend.capabilities
    assert Capability.CHECKPOINT_WITH_MEMORY in backend.capabilities


def test_keyboard_mapping() -> None:
    assert qcode_for("a") == ("a", False)
    assert qcode_for("A") == ("a", True)
    assert qcode_for("!") == ("1", True)
    assert qcode_for("<") == ("comma", True)
    assert qcode_for(">") == ("dot", True)
    assert qcode_for("\n") == ("ret", False)
    with pytest.raises(InvalidInput):
        qcode_for("é")


def test_key_names_and_chords() -> None:
    assert chord_for("enter") == ["ret"]
    assert chord_for("F5") == ["f5"]
    assert chord_for("A") == ["shift", "a"]
    assert chord_for("ctrl+alt+del") == ["ctrl", "alt", "delete"]
    assert chord_for("ctrl-alt-delete") == ["ctrl", "alt", "delete"]
    assert chord_for("win+r") == ["meta_l", "r"]
    for bad in ("", "ctrl+nothing", "0x0D"):
        with pytest.raises(InvalidInput):
            chord_for(bad)


def test_boot_files_by_convention(tmp_path: Path) -> None:
    disk = tmp_path / "win.qcow2"
    disk.touch()
    assert boot_files_for(disk) is None
    (tmp_path / "win.kernel").touch()
    files = boot_files_for(disk)
    assert files is not None and files.initrd is None and files.append == "console=ttyS0"
    (tmp_path / "win.initrd").touch()
    (tmp_path / "win.cmdline").write_text("console=ttyS0 quiet\n")
    files = boot_files_for(disk)
    assert files is not None
    assert files.initrd == str(tmp_path / "win.initrd")
    assert files.append == "console=ttyS0 quiet"


def test_accel_setting_wins_over_probe(tmp_path: Path) -> None:
    assert choose_accel("tcg", "qemu-system-x86_64", tmp_path, None).accel == "tcg"
    assert choose_accel("kvm", "qemu-system-x86_64", tmp_path, None).accel == "kvm"


def test_long_paths_put_sockets_in_a_short_directory(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 100)
    files = VMFiles(deep, "vm-001")
    assert len(str(files.qmp)) < 108
    assert files.dir == deep / "vm-001"


STORE = "0123456789abcdef0123456789abcdef"


def test_unknown_vm_and_bad_names(tmp_path: Path) -> None:
    backend = QemuBackend(tmp_path / "vms", accel="tcg")
    nope = VMRef("nope", "f" * 32)
    assert backend.get_vm(nope) is None
    assert backend.list_vms() == []
    assert backend.find_vms("nope") == []
    assert backend.find_vms("../escape") == []
    with pytest.raises(VMNotFoundInHost):
        backend.start(nope)
    with pytest.raises(VMNotFoundInHost):
        backend.start(VMRef("../escape", "f" * 32))
    with pytest.raises(InvalidInput):
        backend.files("../escape")
    with pytest.raises(Unsupported):
        backend.create_vm("g", str(tmp_path / "g.qcow2"), 512, 1, gpu=True, owner=STORE)
    with pytest.raises(InvalidInput):
        backend.create_vm("g", str(tmp_path / "g.qcow2"), 512, 1, gpu=False, owner="me")


def test_capacity_from_meminfo(tmp_path: Path) -> None:
    cap = QemuBackend(tmp_path / "vms", accel="tcg").capacity()
    assert 0 < cap.free_memory_mb <= cap.total_memory_mb
    assert cap.logical_cpus >= 1


def test_off_vm_state_from_files(tmp_path: Path) -> None:
    backend = QemuBackend(tmp_path / "vms", accel="tcg")
    files = backend.files("v1")
    files.dir.mkdir(parents=True)
    files.config.write_text('{"name": "v1", "memory_mb": 512, "argv": []}')
    [listed] = backend.find_vms("v1")
    assert listed.state is HostState.OFF
    ref = VMRef(listed.name, listed.id)
    files.state.write_bytes(b"x")
    vm = backend.get_vm(ref)
    assert vm is not None and vm.state is HostState.SAVED
    # A pidfile naming a process that is not this VM's QEMU is stale.
    files.pidfile.write_text("1\n")
    vm = backend.get_vm(ref)
    assert vm is not None and vm.state is HostState.SAVED

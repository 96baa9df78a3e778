"""The qemu backend's VM ids, ownership marks, names and files (qemu-img, no QEMU process)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from core.backends.base import VMRef
from core.backends.qemu import QemuBackend
from core.backends.qemu.marker import marker_text, new_id
from core.errors import CheckpointNotFound, FileInUse, HostObjectExists, VMNotFoundInHost
from core.models import HostState
from core.ownership import owner_mark

pytestmark = pytest.mark.skipif(
    shutil.which("qemu-img") is None, reason="qemu-img is not installed (qemu-utils)"
)

STORE = "0123456789abcdef0123456789abcdef"
OTHER_STORE = "fedcba9876543210fedcba9876543210"

Make = Callable[[str], VMRef]


@pytest.fixture
def backend(tmp_path: Path) -> QemuBackend:
    return QemuBackend(tmp_path / "vms", state_dir=tmp_path, accel="tcg")


@pytest.fixture
def template(tmp_path: Path) -> str:
    path = tmp_path / "tpl.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "1M"], check=True)
    return str(path)


@pytest.fixture
def make(backend: QemuBackend, template: str) -> Make:
    """Create an Off VM as the engine does (disk, then VM); its ref from what create_vm says."""

    def make(name: str) -> VMRef:
        disk = backend.disk_path_for(name, template)
        backend.create_differencing_disk(template, disk)
        made = backend.create_vm(name, disk, 256, 1, False, owner=STORE)
        return VMRef(made.name, made.id)

    return make


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_create_marks_the_vm_with_an_id_and_its_owner(backend: QemuBackend, make: Make) -> None:
    vm = make("web-001")
    assert len(vm.id) == 32 and int(vm.id, 16) >= 0
    marker = backend.files("web-001").marker.read_text()
    assert owner_mark(STORE) in marker.splitlines()
    assert vm.id in marker
    for found in (backend.get_vm(vm), *backend.find_vms("web-001"), *backend.list_vms()):
        assert found is not None
        assert (found.name, found.id, found.owner) == ("web-001", vm.id, STORE)
        assert found.state is HostState.OFF
    # Another VM gets another id.
    assert make("web-002").id != vm.id


def _replace_with_marker(backend: QemuBackend, name: str) -> None:
    """Someone removed our VM by hand and made another one of the same name."""
    backend.files(name).marker.write_text(marker_text(new_id(), OTHER_STORE))


def _replace_without_marker(backend: QemuBackend, name: str) -> None:
    backend.files(name).marker.unlink()


@pytest.mark.parametrize("replace", [_replace_with_marker, _replace_without_marker])
def test_a_same_named_vm_with_another_id_is_never_touched(
    backend: QemuBackend, make: Make, replace: Callable[[QemuBackend, str], None]
) -> None:
    old = make("web-001")
    replace(backend, "web-001")
    folder = backend.files("web-001").dir
    before = snapshot(folder)

    assert backend.get_vm(old) is None
    [now] = backend.find_vms("web-001")
    assert now.id != old.id
    for act in (
        lambda: backend.start(old),
        lambda: backend.stop(old, force=True),
        lambda: backend.stop(old),
        lambda: backend.save(old),
        lambda: backend.pause(old),
        lambda: backend.checkpoint(old, "clean"),
        lambda: backend.restore_checkpoint(old, "clean"),
        lambda: backend.remove_checkpoint(old, "clean"),
        lambda: backend.heartbeat_ok(old),
        lambda: backend.ip_address(old),
        lambda: backend.forwarded_port(old),
        lambda: backend.saved_state_path(old),
        lambda: backend.send_key(old, "enter"),
        lambda: backend.remove(old),
    ):
        with pytest.raises(VMNotFoundInHost):
            act()
    assert snapshot(folder) == before
    assert backend.get_vm(VMRef(now.name, now.id)) is not None


def test_a_vm_without_marker_is_foreign_with_a_stable_id(backend: QemuBackend) -> None:
    files = backend.files("handmade")
    files.dir.mkdir(parents=True)
    files.config.write_text('{"name": "handmade", "memory_mb": 512, "argv": []}')
    [vm] = backend.find_vms("HANDMADE")
    assert vm.owner is None and vm.name == "handmade"
    assert vm.id.startswith("derived-")
    assert [v.id for v in backend.list_vms()] == [vm.id]  # the same id on every read
    assert backend.get_vm(VMRef("handmade", vm.id)) is not None
    # Made again under the same name, it is another VM.
    files.config.write_text('{"name": "handmade", "memory_mb": 1024, "argv": []}')
    assert backend.get_vm(VMRef("handmade", vm.id)) is None


def test_names_ignore_case(backend: QemuBackend, make: Make, template: str) -> None:
    vm = make("web-001")
    assert [v.id for v in backend.find_vms("WEB-001")] == [vm.id]
    assert [v.id for v in backend.list_vms("WEB-")] == [vm.id]
    assert backend.list_vms("db-") == []
    # The engine's ref spelled another way still reaches the VM by its id.
    found = backend.get_vm(VMRef("Web-001", vm.id))
    assert found is not None and found.name == "web-001"

    disk = backend.disk_path_for("WEB-001", template)
    backend.create_differencing_disk(template, disk)
    with pytest.raises(HostObjectExists) as refused:
        backend.create_vm("WEB-001", disk, 256, 1, False, owner=STORE)
    assert "web-001" in str(refused.value) and "\n" not in str(refused.value)
    assert not backend.files("WEB-001").config.exists()
    assert [v.name for v in backend.list_vms()] == ["web-001"]
    with pytest.raises(HostObjectExists):
        backend.create_vm("web-001", backend.files("web-001").disk.as_posix(), 256, 1, False, STORE)


def test_unreadable_vms_are_left_out_of_listings(backend: QemuBackend, make: Make) -> None:
    good = make("web-001")
    damaged = make("web-002")
    backend.files("web-002").marker.write_text("hvkube-vm-id: not an id\n")
    garbage = backend.files("web-003")
    garbage.dir.mkdir()
    garbage.config.write_text("{not json")
    assert [v.id for v in backend.list_vms()] == [good.id]
    assert backend.find_vms("web-002") == []
    assert backend.get_vm(damaged) is None
    with pytest.raises(VMNotFoundInHost):
        backend.remove(damaged)
    assert backend.files("web-002").config.exists()


def test_remove_leaves_the_disk_and_remove_disk_deletes_it(
    backend: QemuBackend, make: Make
) -> None:
    vm = make("web-001")
    files = backend.files("web-001")
    backend.checkpoint(vm, "clean")
    assert files.checkpoints.is_dir()
    with pytest.raises(FileInUse):
        backend.remove_disk(str(files.disk))  # the VM still uses it
    assert files.disk.is_file()

    backend.remove(vm)
    assert files.disk.is_file()
    assert sorted(p.name for p in files.dir.iterdir()) == ["disk.qcow2"]
    assert backend.get_vm(vm) is None
    assert backend.list_vms() == [] and backend.find_vms("web-001") == []

    backend.remove_disk(str(files.disk))
    assert not files.dir.exists()
    backend.remove_disk(str(files.disk))  # absent: no error

    # Made again under the same name, it is another VM: the old ref does not reach it.
    again = make("web-001")
    assert again.id != vm.id
    assert backend.get_vm(vm) is None
    found = backend.get_vm(again)
    assert found is not None and found.checkpoints == []


def test_remove_disk_of_a_half_made_vm_removes_its_folder(
    backend: QemuBackend, template: str
) -> None:
    disk = backend.disk_path_for("web-001", template)
    backend.create_differencing_disk(template, disk)
    backend.remove_disk(disk)
    assert not Path(disk).parent.exists()


def test_a_missing_checkpoint_is_not_a_missing_vm(backend: QemuBackend, make: Make) -> None:
    vm = make("web-001")
    with pytest.raises(CheckpointNotFound) as missing:
        backend.restore_checkpoint(vm, "clean")
    assert not isinstance(missing.value, VMNotFoundInHost)
    backend.checkpoint(vm, "clean")
    backend.restore_checkpoint(vm, "clean")
    backend.remove_checkpoint(vm, "clean")
    with pytest.raises(CheckpointNotFound):
        backend.restore_checkpoint(vm, "clean")


def test_a_disk_is_not_made_over_an_existing_file(backend: QemuBackend, template: str) -> None:
    disk = backend.disk_path_for("web-001", template)
    backend.create_differencing_disk(template, disk)
    before = Path(disk).read_bytes()
    with pytest.raises(HostObjectExists):
        backend.create_differencing_disk(template, disk)
    assert Path(disk).read_bytes() == before

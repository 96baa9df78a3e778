"""hvkube acts only on what it made: foreign VMs, ghost VMs, names that differ in case, and a
store opened with the wrong backend. Each runs on the simulated host and on the Hyper-V
backend over the fake PowerShell host in Windows PowerShell 5.1 mode."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hyperv_helpers import engine_on, sim_host

from core import open_engine
from core.backends.base import CLEAN_CHECKPOINT, VMRef
from core.engine import Engine
from core.errors import AlreadyExists, BackendMismatch, CheckpointNotFound
from core.models import HostState, VMState
from core.settings import Settings
from core.store import Store
from tests.host_support import host_named, ref_named


@pytest.fixture(params=["sim", "hyperv"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    eng = engine_on(request.param, tmp_path, "--ps51", sessions=2)
    yield eng
    eng.close()


def test_a_foreign_vm_with_our_name_is_refused_reported_and_never_touched(
    engine: Engine, tmp_path: Path
) -> None:
    host = sim_host(tmp_path)
    theirs = host.add_foreign_vm("web-001", state="Running")
    report = engine.provision_pool("web")
    assert report.created == ["web-002"]
    assert "web-001" in report.failed["web-001"] and theirs.id in report.failed["web-001"]
    assert "hvkube did not make" in report.failed["web-001"]

    # The next run "replaces" the failed row: the foreign VM is still not touched.
    engine.provision_pool("web")
    engine.update_pool("web", warm=1)
    engine.scale_pool("web", 1)
    result = engine.reconcile(remove_orphans=True)
    assert any(theirs.id in item for item in result.foreign)
    assert result.orphans_removed == []
    still = host.get_vm(VMRef(theirs.name, theirs.id))
    assert still is not None and still.state is HostState.RUNNING
    assert still.owner is None


def test_deleting_our_vm_leaves_a_same_named_vm_of_someone_else(
    engine: Engine, tmp_path: Path
) -> None:
    engine.provision_pool("web")
    ours = engine.get_vm("web-001")
    theirs = sim_host(tmp_path).add_foreign_vm("WEB-001")
    engine.delete_vm("web-001")
    left = engine.backend.find_vms("web-001")
    assert [vm.id for vm in left] == [theirs.id]
    assert ours.host_id not in {vm.id for vm in left}


def test_a_ghost_vm_on_the_host_does_not_stop_work_on_the_others(
    engine: Engine, tmp_path: Path
) -> None:
    engine.provision_pool("web")
    sim_host(tmp_path).add_foreign_vm("ghost")
    sim_host(tmp_path).inject_fault("broken-vm", vm="ghost")
    got = engine.acquire("web")
    assert engine.get_vm(got.name).state is VMState.RUNNING
    engine.release(got.name)
    assert "ghost" not in {vm.name for vm in engine.backend.list_vms()}
    assert engine.reconcile().errors == []


def test_names_that_differ_only_in_case_are_one_name(engine: Engine) -> None:
    with pytest.raises(AlreadyExists, match="only in case"):
        engine.create_pool("WEB", "win11", count=1)
    with pytest.raises(AlreadyExists, match="only in case"):
        engine.create_template("WIN11", "C:\\templates\\other.vhdx")
    assert [p.name for p in engine.list_pools()] == ["web"]


@pytest.mark.parametrize("count", [0, 1, 2])
def test_restore_uses_the_newest_checkpoint_of_that_name(engine: Engine, count: int) -> None:
    engine.create_pool("one", "win11", count=1)
    engine.provision_pool("one")
    ref = ref_named(engine, "one-001")
    backend = engine.backend
    backend.remove_checkpoint(ref, CLEAN_CHECKPOINT)
    backend.start(ref)
    for _ in range(count):
        backend.checkpoint(ref, CLEAN_CHECKPOINT)
    assert backend.checkpoint_names(ref) == [CLEAN_CHECKPOINT] * min(count, 1)
    backend.stop(ref, force=True)
    if count == 0:
        with pytest.raises(CheckpointNotFound):
            backend.restore_checkpoint(ref, CLEAN_CHECKPOINT)
        assert host_named(engine, "one-001") is not None  # a missing checkpoint is no missing VM
        return
    backend.restore_checkpoint(ref, CLEAN_CHECKPOINT)
    assert host_named(engine, "one-001").state is HostState.SAVED  # type: ignore[union-attr]


def test_a_store_is_refused_by_another_backend_unless_switched_on_purpose(
    tmp_path: Path,
) -> None:
    db = str(tmp_path / "store.db")
    with open_engine(db=db, backend="sim", sim_scale=0) as eng:
        eng.create_template("win11", "C:\\t.vhdx")
    with pytest.raises(BackendMismatch, match="--backend sim"):
        open_engine(db=db, backend="qemu", qemu_dir=str(tmp_path / "q"))
    assert Store(db).meta("backend") == "sim"
    with open_engine(db=db, backend="qemu", qemu_dir=str(tmp_path / "q"), backend_switch=True):
        pass
    assert Store(db).meta("backend") == "qemu"


def test_wrong_backend_on_the_command_line_is_one_line_and_exit_2(tmp_path: Path) -> None:
    from tests.conftest import run_cli

    db = str(tmp_path / "cli.db")
    assert run_cli("--db", db, "--backend", "sim", "template", "list").returncode == 0
    done = run_cli("--db", db, "--backend", "qemu", "reconcile")
    assert done.returncode == 2
    assert "made with the 'sim' backend" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_settings_default_leaves_switching_off() -> None:
    assert Settings().backend_switch is False


def test_a_row_from_before_ids_were_recorded_is_left_alone(engine: Engine) -> None:
    """Rows written before schema 3 name no hypervisor id and no backend: hvkube cannot tell
    their VM from another of that name, so it never claims, resets or removes it."""
    engine.provision_pool("web")
    before = host_named(engine, "web-001")
    engine.store.update_vm("web-001", {"host_id": None, "backend": None})
    report = engine.reconcile()
    assert any("web-001" in e and "no recorded hypervisor id" in e for e in report.errors)
    assert engine.acquire("web").name == "web-002"  # never handed out
    engine.delete_vm("web-001")  # the row goes; the VM and its disk stay
    after = host_named(engine, "web-001")
    assert after is not None and before is not None and after.id == before.id

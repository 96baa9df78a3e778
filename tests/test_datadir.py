"""The data folder is the user's own and closed to others; files in it are never written
through a planted link."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from core.backends.qemu.layout import write_text
from core.controller import start_in_background
from core.datadir import check_data_dir
from core.errors import InvalidInput
from core.settings import Settings
from tests.conftest import run_cli

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX modes and owners")

NOBODY = 65534


def _listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("mode", [0o777, 0o775, 0o1777, 0o757])
def test_a_folder_others_can_write_is_refused_untouched(tmp_path: Path, mode: int) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(mode)
    done = run_cli("--db", str(shared / "hvkube.db"), "vm", "list")
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hvkube: error: data folder")
    assert f"chmod go-w {shared}" in lines[0]
    assert _listing(shared) == []  # no store, no simulated host, no -wal


def test_the_default_data_folder_is_checked_too(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    data.chmod(0o777)
    done = run_cli("pool", "list", env={"HVKUBE_DATA_DIR": str(data)})
    assert done.returncode == 2 and "can be written by other users" in done.stderr
    assert _listing(data) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="making a folder another user's needs root")
def test_a_folder_of_another_user_is_refused(tmp_path: Path) -> None:
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o700)
    os.chown(theirs, NOBODY, NOBODY)
    done = run_cli("--db", str(theirs / "hvkube.db"), "vm", "list")
    assert done.returncode == 2
    assert "not to you" in done.stderr and "--db or HVKUBE_DATA_DIR" in done.stderr
    assert _listing(theirs) == []
    # A link of one's own to that folder does not make it one's own.
    link = tmp_path / "mine"
    link.symlink_to(theirs)
    with pytest.raises(InvalidInput, match="not to you"):
        check_data_dir(link)


def test_an_own_closed_folder_and_a_new_one_are_used(tmp_path: Path) -> None:
    own = tmp_path / "own"
    own.mkdir(mode=0o700)
    check_data_dir(own)
    check_data_dir(tmp_path / "not-yet")  # made 0700 by the store
    done = run_cli("--db", str(tmp_path / "new" / "hvkube.db"), "pool", "list")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "new").stat().st_mode & 0o777 == 0o700


def test_the_controller_log_is_not_written_through_a_planted_link(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("KEEP\n")
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    (data / "controller.log").symlink_to(victim)
    settings = Settings(db=str(data / "hvkube.db"), backend="sim", sim_scale=0)
    with pytest.raises(InvalidInput, match="controller log"):
        start_in_background(settings)
    assert victim.read_text() == "KEEP\n"


def test_qemu_vm_files_are_not_written_through_a_planted_temporary(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("KEEP\n")
    folder = tmp_path / "vm"
    folder.mkdir()
    # The old temporary name was predictable: a dot, the name, the pid, the thread id.
    import threading

    planted = folder / f".vm.json.{os.getpid()}.{threading.get_ident()}.tmp"
    planted.symlink_to(victim)
    write_text(folder / "vm.json", "{}")
    assert victim.read_text() == "KEEP\n"
    assert (folder / "vm.json").read_text() == "{}"
    assert (folder / "vm.json").stat().st_mode & 0o777 == 0o600

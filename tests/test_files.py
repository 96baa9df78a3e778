"""Files hvkube writes where others can write: never through a planted link."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from core.files import write_atomic, write_text_atomic


def test_writes_whole_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = write_atomic(tmp_path / "screen.png", b"\x89PNG data")
    assert target.read_bytes() == b"\x89PNG data"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["screen.png"]


@pytest.mark.skipif(sys.platform == "win32", reason="symlinks need privileges on Windows")
def test_planted_links_are_replaced_not_followed(tmp_path: Path) -> None:
    victim = tmp_path / "authorized_keys"
    victim.write_text("ssh-ed25519 KEEP")
    out = tmp_path / "out"
    out.mkdir()
    # Links at the target and at the old fixed temporary name.
    (out / "screen.png").symlink_to(victim)
    (out / ".screen.png.tmp").symlink_to(victim)
    write_atomic(out / "screen.png", b"PNG")
    assert victim.read_text() == "ssh-ed25519 KEEP"
    assert not (out / "screen.png").is_symlink()
    assert (out / "screen.png").read_bytes() == b"PNG"


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
def test_mode_is_applied(tmp_path: Path) -> None:
    path = write_text_atomic(tmp_path / "token", "secret", mode=0o600)
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.read_text() == "secret"


def test_failed_write_leaves_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "config.toml"
    target.write_text("old")

    with pytest.raises(TypeError):
        write_atomic(target, "not bytes")  # type: ignore[arg-type]
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["config.toml"]

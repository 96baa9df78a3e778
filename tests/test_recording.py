"""Recordings: frames kept per holder, identical ones skipped, actions noted, a size cap,
retention, safe files; exports to WebP, GIF and MP4; `hvkube agent recording`."""

from __future__ import annotations

import io
import json
import os
import time
from pathlib import Path

import pytest
from PIL import Image

from core import Engine
from core.errors import InvalidInput, NotFound
from core.imaging import text_card
from core.recording.archive import Archive, check_recording_id, recording_id
from core.recording.export import export
from core.recording.recorder import Recorder, RecordingLoop, held_vms
from core.scheduler import agent_holder
from tests.conftest import run_cli


def screen(label: str) -> bytes:
    return text_card([label], size=(320, 200))


@pytest.fixture
def held(engine: Engine, pool: str) -> str:
    return engine.acquire(pool, holder="lease-abc").name


def recorder(engine: Engine, max_bytes: int = 10_000_000) -> Recorder:
    return Recorder(engine, Archive(engine.settings.state_dir() / "recordings"), max_bytes)


def test_identical_frames_are_skipped_and_actions_kept(engine: Engine, held: str) -> None:
    rec = recorder(engine)
    first = rec.capture(held, png=screen("one"))
    assert first is not None and first.frame == "000001.png"
    assert rec.capture(held, png=screen("one")) is None  # unchanged, nothing done: skipped
    typed = rec.capture(held, {"kind": "type", "text": "hi"}, png=screen("one"))
    assert typed is not None and not typed.new_frame and typed.frame == "000001.png"
    second = rec.capture(held, {"kind": "key", "keys": "enter"}, png=screen("two"))
    assert second is not None and second.new_frame and second.frame == "000003.png"

    entries = rec.archive.entries("lease-abc")
    assert [(e.seq, e.frame, (e.action or {}).get("kind")) for e in entries] == [
        (1, "000001.png", None),
        (2, "000001.png", "type"),
        (3, "000003.png", "key"),
    ]
    assert entries[0].width == 320 and entries[0].height == 200
    folder = rec.archive.folder("lease-abc")
    assert sorted(os.listdir(folder)) == [
        "000001.json",
        "000001.png",
        "000002.json",
        "000003.json",
        "000003.png",
    ]
    if os.name == "posix":
        assert folder.stat().st_mode & 0o777 == 0o700
        assert (folder / "000001.png").stat().st_mode & 0o777 == 0o600


def test_a_vm_nobody_holds_is_not_recorded(engine: Engine, pool: str) -> None:
    free = engine.list_vms(pool)[0].name
    assert recorder(engine).capture(free, png=screen("x")) is None
    assert not (engine.settings.state_dir() / "recordings").exists()


def test_another_process_continues_the_numbering(engine: Engine, held: str) -> None:
    recorder(engine).capture(held, png=screen("a"))
    later = recorder(engine)  # as in another process: nothing cached
    assert later.capture(held, png=screen("a")) is None  # same screen as the one on disk
    entry = later.capture(held, png=screen("b"))
    assert entry is not None and entry.seq == 2


def test_a_link_planted_at_the_next_name_is_not_followed(
    engine: Engine, held: str, tmp_path: Path
) -> None:
    rec = recorder(engine)
    rec.capture(held, png=screen("a"))
    victim = tmp_path / "victim"
    victim.write_text("keep")
    folder = rec.archive.folder("lease-abc")
    os.symlink(victim, folder / "000002.json")
    entry = rec.capture(held, png=screen("b"))
    assert entry is not None and entry.seq == 3
    assert victim.read_text() == "keep"


def test_the_size_cap_stops_frames_but_not_actions(engine: Engine, held: str) -> None:
    one = screen("one")
    rec = recorder(engine, max_bytes=len(one) + 500)
    assert rec.capture(held, png=one) is not None
    assert rec.capture(held, png=screen("two")) is None  # over the cap, no action: dropped
    noted = rec.capture(held, {"kind": "type", "text": "x"}, png=screen("three"))
    assert noted is not None and noted.frame is None
    assert len([n for n in os.listdir(rec.archive.folder("lease-abc")) if n.endswith(".png")]) == 1


def test_retention_removes_old_recordings_only(engine: Engine, held: str) -> None:
    rec = recorder(engine)
    rec.capture(held, png=screen("a"))
    archive = rec.archive
    archive.add("old-lease", held, screen("b"), None, (320, 200), None, 0)
    old = time.time() - 10 * 86400
    for name in os.listdir(archive.folder("old-lease")):
        os.utime(archive.folder("old-lease") / name, (old, old))
    assert archive.prune(7) == ["old-lease"]
    assert [r.id for r in archive.recordings()] == ["lease-abc"]
    assert archive.prune(0) == []


def test_ids(engine: Engine) -> None:
    assert recording_id(agent_holder(7)) == "agent-7"
    assert check_recording_id("7") == "agent-7"
    assert check_recording_id("api-0123") == "api-0123"
    for bad in ("../etc", "a/b", "", ".hidden", "x" * 200):
        with pytest.raises(InvalidInput):
            check_recording_id(bad)
    with pytest.raises(NotFound):
        Archive(engine.settings.state_dir() / "recordings").entries("nothing-here")


def three_frames(engine: Engine, held: str) -> Archive:
    rec = recorder(engine)
    rec.capture(held, png=screen("one"))
    rec.capture(held, {"kind": "type", "text": "abc", "source": "cli"}, png=screen("two"))
    rec.capture(held, {"kind": "click", "x": 1, "y": 2, "button": "left"}, png=screen("three"))
    return rec.archive


@pytest.mark.parametrize("fmt", ["gif", "webp"])
def test_export_animates_every_frame(engine: Engine, held: str, fmt: str) -> None:
    data = export(three_frames(engine, held), "lease-abc", fmt)
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == fmt.upper() and image.n_frames == 3
        seen = set()
        for index in range(image.n_frames):
            image.seek(index)
            seen.add(image.convert("RGB").tobytes())
            assert image.size[0] == 320 and image.size[1] > 200  # the screen plus its caption
        assert len(seen) == 3


def test_export_mp4(engine: Engine, held: str) -> None:
    pytest.importorskip("imageio_ffmpeg")
    data = export(three_frames(engine, held), "lease-abc", "mp4")
    assert data[4:8] == b"ftyp" and len(data) > 1000


def test_the_controller_loop_records_held_vms(engine: Engine, held: str) -> None:
    rec = recorder(engine)
    loop = RecordingLoop(rec, lambda: held_vms(engine))
    assert loop.once() == 1
    assert rec.archive.entries("lease-abc")[0].vm == held


def test_cli_lists_shows_and_exports(engine: Engine, held: str, tmp_path: Path) -> None:
    three_frames(engine, held)
    env = {"HVKUBE_DB": str(engine.settings.db_path()), "HVKUBE_BACKEND": "sim"}
    listed = run_cli("agent", "recording", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    assert [r["id"] for r in json.loads(listed.stdout)] == ["lease-abc"]
    shown = run_cli("agent", "recording", "lease-abc", env=env)
    assert "typed 'abc'" in shown.stdout and "left click at 1,2" in shown.stdout
    out = tmp_path / "s.webp"
    done = run_cli("agent", "recording", "lease-abc", "-o", str(out), env=env)
    assert done.returncode == 0, done.stderr
    assert Image.open(out).n_frames == 3

    for argv, says in (
        (["agent", "recording", "../x", "-o", str(tmp_path / "a.gif")], "not valid"),
        (["agent", "recording", "lease-abc", "-o", str(tmp_path / "a.avi")], ".webp, .gif or .mp4"),
        (["agent", "recording", "9", "-o", str(tmp_path / "b.gif")], "no recording 'agent-9'"),
        (["agent", "recording", "lease-abc", "-o", str(tmp_path / "no" / "c.gif")], "does not"),
    ):
        bad = run_cli(*argv, env=env)
        assert bad.returncode == 2 and says in bad.stderr, (argv, bad.stderr)
        assert bad.stderr.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix in {".gif", ".avi"}) == []


def test_cli_input_is_recorded_for_the_holder(tmp_path: Path) -> None:
    from core import open_engine
    from tests.conformance.backends import HYPERV

    settings = HYPERV.settings(tmp_path)
    env = HYPERV.env(settings)
    with open_engine(settings) as engine:
        engine.create_template("w", HYPERV.template_disk(tmp_path), memory_mb=512)
        engine.create_pool("p", "w", count=1, warm=1)
        engine.provision_pool("p")
        vm = engine.acquire("p", holder=agent_holder(3)).name
    assert run_cli("vm", "type", vm, "dir", env=env).returncode == 0
    assert run_cli("vm", "key", vm, "enter", env=env).returncode == 0
    shown = run_cli("agent", "recording", "3", env=env)
    assert shown.returncode == 0, shown.stderr
    assert "[cli] typed 'dir'" in shown.stdout and "[cli] pressed enter" in shown.stdout

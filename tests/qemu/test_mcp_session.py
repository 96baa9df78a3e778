"""An MCP client drives the QEMU test guest through `hvkube mcp` (stdio): acquire, look,
type a line and press Enter, see the line arrive in the guest, release; then the session's
recording is exported to a GIF (skipped without QEMU or the test guest)."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageChops

from core.backends import make_backend
from core.engine import Engine
from core.recording.archive import Archive
from core.store import Store
from tests.conformance.backends import QEMU
from tests.conftest import run_cli
from tests.host_support import ref_named
from tests.mcp_support import png_of, recordings_dir, run_session

pytest.importorskip("mcp")
pytestmark = pytest.mark.skipif(QEMU.missing() is not None, reason=str(QEMU.missing()))

LINE = "hello from mcp"


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    with tempfile.TemporaryDirectory(prefix="hvk-") as tmp:  # short: QEMU's sockets live here
        root = Path(tmp)
        monkeypatch.setenv("HVKUBE_CONFIG", str(root / "no-config.toml"))
        settings = QEMU.settings(root)
        eng = Engine(Store(settings.db_path()), make_backend(settings), settings)
        try:
            eng.create_template("guest", QEMU.template_disk(root), memory_mb=QEMU.memory_mb, cpus=1)
            eng.create_pool("g", "guest", count=1, warm=1)
            assert not eng.provision_pool("g").failed
            yield eng
        finally:
            QEMU.cleanup(eng, root)
            eng.close()


def serial_after(engine: Engine, vm: str, text: str, timeout_s: float) -> str:
    serial = engine.backend.files_of(ref_named(engine, vm)).serial  # type: ignore[attr-defined]
    deadline = time.monotonic() + timeout_s
    while True:
        seen = serial.read_text(errors="replace")
        if text in seen or time.monotonic() > deadline:
            return seen
        time.sleep(0.2)


def test_an_mcp_client_types_into_the_guest_and_the_session_is_recorded(
    engine: Engine, tmp_path: Path
) -> None:
    env = {"HVKUBE_CONFIG": os.environ["HVKUBE_CONFIG"], **QEMU.env(engine.settings)}

    async def body(s: Any) -> dict[str, Any]:
        got = await s.call_tool("acquire_desktop", {"pool": "g", "wait_s": 60})
        assert not got.is_error, got
        vm = got.structured_content["vm"]
        before = await s.call_tool("screenshot", {"vm": vm})
        typed = await s.call_tool("type_text", {"vm": vm, "text": LINE})
        pressed = await s.call_tool("press_keys", {"vm": vm, "keys": "enter"})
        serial = serial_after(engine, vm, f"HVKUBE-KEY {LINE}", 60)
        after = await s.call_tool("screenshot", {"vm": vm})
        bad = await s.call_tool("press_keys", {"vm": vm, "keys": "ctrl+nosuchkey"})
        released = await s.call_tool("release_desktop", {"vm": vm})
        return {
            "got": got.structured_content,
            "before": before,
            "after": after,
            "errors": [typed.is_error, pressed.is_error, released.is_error],
            "bad": bad,
            "serial": serial,
        }

    out = run_session(env, body)
    assert out["errors"] == [False, False, False]
    assert f"HVKUBE-KEY {LINE}" in out["serial"]  # the guest read the typed line
    before, after = png_of(out["before"]), png_of(out["after"])
    assert before.size == after.size == QEMU.screen_size
    assert out["after"].structured_content["width"] == QEMU.screen_size[0]
    assert ImageChops.difference(before.convert("RGB"), after.convert("RGB")).getbbox()
    assert out["bad"].is_error and out["bad"].structured_content["error"] == "invalid_input"
    assert engine.get_vm(out["got"]["vm"]).holder is None

    # The recording of the session, exported as a GIF by the CLI.
    lease = out["got"]["lease"]
    entries = Archive(recordings_dir(engine.settings.db_path())).entries(lease)
    typed = [e.action for e in entries if e.action and e.action["kind"] == "type"]
    assert typed and typed[0]["text"] == LINE
    gif = tmp_path / "session.gif"
    done = run_cli("agent", "recording", lease, "-o", str(gif), env=env)
    assert done.returncode == 0, done.stderr
    shown = run_cli("agent", "recording", lease, env=env)
    assert f"typed '{LINE}'" in shown.stdout and "pressed enter" in shown.stdout
    with Image.open(gif) as image:
        frames = []
        for index in range(image.n_frames):
            image.seek(index)
            frames.append(image.convert("RGB").tobytes())
    assert len(set(frames)) > 1

"""`hvkube mcp` over stdio with the real MCP client: on the Hyper-V backend over the fake
PowerShell host (keyboard and mouse logged by the host) and on the simulated host (no input:
no input tools)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from core import open_engine
from core.recording.archive import Archive
from core.settings import Settings
from tests.conformance.backends import HYPERV, SIM
from tests.fakes import fakeps
from tests.mcp_support import png_of, recordings_dir, run_session

pytest.importorskip("mcp")


def make_store(case: Any, root: Path, count: int = 2) -> tuple[Settings, dict[str, str]]:
    settings = case.settings(root)
    with open_engine(settings) as engine:
        engine.create_template("w", case.template_disk(root), memory_mb=512)
        engine.create_pool("p", "w", count=count, warm=count)
        assert not engine.provision_pool("p").failed
    return settings, case.env(settings)


def error_of(result: Any) -> dict[str, Any]:
    assert result.is_error, result
    assert result.content[0].text == result.structured_content["message"]
    return dict(result.structured_content)


def test_a_session_drives_only_its_desktop_and_bad_input_sends_nothing(tmp_path: Path) -> None:
    settings, env = make_store(HYPERV, tmp_path)
    with open_engine(settings) as engine:
        other = engine.acquire("p", holder="someone-else").name
    host_dir = tmp_path / "host"

    async def body(s: Any) -> dict[str, Any]:
        tools = {t.name for t in (await s.list_tools()).tools}
        got = await s.call_tool("acquire_desktop", {"pool": "p"})
        assert not got.is_error, got
        vm = got.structured_content["vm"]
        shot = await s.call_tool("screenshot", {"vm": vm})
        bad = {
            "not held": await s.call_tool("type_text", {"vm": other, "text": "x"}),
            "not held click": await s.call_tool("click", {"vm": other, "x": 1, "y": 1}),
            "outside": await s.call_tool("click", {"vm": vm, "x": 640, "y": 10}),
            "outside move": await s.call_tool("move_mouse", {"vm": vm, "x": 5, "y": 400}),
            "unknown key": await s.call_tool("press_keys", {"vm": vm, "keys": "enter warp"}),
            "untypable": await s.call_tool("type_text", {"vm": vm, "text": "naïve"}),
            "no vm": await s.call_tool("screenshot", {"vm": "p-404"}),
        }
        logged_after_bad = list(fakeps.read_input_log(host_dir))
        typed = await s.call_tool("type_text", {"vm": vm, "text": "hello"})
        pressed = await s.call_tool("press_keys", {"vm": vm, "keys": "enter"})
        clicked = await s.call_tool("click", {"vm": vm, "x": 639, "y": 399, "double": True})
        released = await s.call_tool("release_desktop", {"vm": vm, "reset": True})
        pools = await s.read_resource("hvkube://pools")
        return {
            "tools": tools,
            "got": got.structured_content,
            "shot": shot,
            "bad": {k: error_of(v) for k, v in bad.items()},
            "logged_after_bad": logged_after_bad,
            "ok": [typed.is_error, pressed.is_error, clicked.is_error, released.is_error],
            "pools": json.loads(pools.contents[0].text),
        }

    out = run_session(env, body)
    assert out["tools"] >= {
        "acquire_desktop",
        "release_desktop",
        "screenshot",
        "wait_for_screen_change",
        "click",
        "move_mouse",
        "type_text",
        "press_keys",
    }
    vm = out["got"]["vm"]
    assert vm != other and out["got"]["lease"].startswith("mcp-")
    image = png_of(out["shot"])
    assert image.format == "PNG" and image.size == (640, 400)
    assert out["shot"].structured_content == {"vm": vm, "width": 640, "height": 400}

    bad = out["bad"]
    assert bad["not held"]["error"] == "not_held" and bad["not held"]["exit_code"] == 2
    assert bad["not held click"]["error"] == "not_held"
    assert (
        "outside the screen" in bad["outside"]["message"] and "640x400" in bad["outside"]["message"]
    )
    assert bad["outside move"]["error"] == "invalid_input"
    assert (
        bad["unknown key"]["error"] == "invalid_input" and "'warp'" in bad["unknown key"]["message"]
    )
    assert bad["untypable"]["error"] == "invalid_input" and "ï" in bad["untypable"]["message"]
    assert bad["no vm"]["error"] == "not_found"
    # Nothing reached the host for any of them (not even the valid 'enter' before 'warp').
    assert out["logged_after_bad"] == []
    assert out["ok"] == [False, False, False, False]
    log = fakeps.read_input_log(host_dir)
    assert [e["op"] for e in log] == ["type_text", "type_key", "click", "click"]
    assert log[0]["text"] == "hello" and log[2]["x"] == 639 and log[2]["y"] == 399
    assert [p["name"] for p in out["pools"]] == ["p"]

    with open_engine(settings) as engine:
        assert engine.get_vm(vm).holder is None  # released
        assert engine.get_vm(other).holder == "someone-else"  # never touched
    # The session's recording: the screenshot, then each action with what it did.
    entries = Archive(recordings_dir(Path(settings.db))).entries(out["got"]["lease"])
    actions = [e.action for e in entries if e.action]
    assert [a["kind"] for a in actions] == ["type", "key", "click"]
    assert actions[0]["text"] == "hello" and actions[0]["source"] == "mcp"
    assert actions[2]["double"] is True


def test_without_input_the_input_tools_are_not_offered(tmp_path: Path) -> None:
    settings, env = make_store(SIM, tmp_path, count=1)

    async def body(s: Any) -> tuple[set[str], Any, Any]:
        tools = {t.name for t in (await s.list_tools()).tools}
        got = await s.call_tool("acquire_desktop", {"pool": "p"})
        shot = await s.call_tool("screenshot", {"vm": got.structured_content["vm"]})
        return tools, got, shot

    tools, got, shot = run_session(env, body)
    assert tools == {"acquire_desktop", "release_desktop", "screenshot", "wait_for_screen_change"}
    assert png_of(shot).size == (640, 400)
    # The client went away holding the VM: the server gave it back by the pool's policy.
    with open_engine(settings) as engine:
        assert engine.get_vm(got.structured_content["vm"]).holder is None


def test_acquire_errors_are_the_clis(tmp_path: Path) -> None:
    _, env = make_store(SIM, tmp_path, count=1)

    async def body(s: Any) -> list[Any]:
        return [
            await s.call_tool("acquire_desktop", {"pool": "nope"}),
            await s.call_tool("acquire_desktop", {"pool": "p", "wait_s": -1}),
            await s.call_tool("acquire_desktop", {"pool": "p"}),
            await s.call_tool("acquire_desktop", {"pool": "p"}),
        ]

    missing, negative, first, second = run_session(env, body)
    assert error_of(missing)["error"] == "not_found"
    assert error_of(negative)["exit_code"] == 2
    assert not first.is_error
    assert error_of(second)["error"] == "no_vm_available"
    assert "no free VM in pool 'p'" in second.structured_content["message"]

"""Data is never code: hostile names are refused by validation, and any value that reaches
the dispatcher travels as a JSON string inside a frame, read by a fixed script."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import pytest
from hyperv_helpers import fake_backend

from core.backends.base import VMRef
from core.backends.hyperv.transport import DISPATCHER, MARK_REQUEST
from core.engine import Engine
from core.errors import BackendError, InvalidInput, VMNotFoundInHost
from core.settings import Settings
from core.store import Store

HOSTILE = [
    "x'; Remove-VM -Name * -Force; '",
    "$(calc)",
    "a`$(calc)",
    "agent-*",
    "x\u2019; Stop-Computer; \u2018",
    'x"; iex "calc',
    "a\nRemove-VM *",
    "@{Name='*'}",
]


def test_validation_refuses_hostile_names_and_nothing_reaches_the_host(tmp_path: Path) -> None:
    record = tmp_path / "requests.log"
    backend = fake_backend(tmp_path, "--record", str(record))
    engine = Engine(Store(tmp_path / "hv.db"), backend, Settings(db=str(tmp_path / "hv.db")))
    try:
        engine.create_template("tpl", "C:\\t.vhdx")
        for name in HOSTILE:
            with pytest.raises(InvalidInput):
                engine.create_template(name, "C:\\t.vhdx")
            with pytest.raises(InvalidInput):
                engine.create_pool(name, "tpl", 1)
            with pytest.raises(InvalidInput):
                engine.resume_vm(name)
        sent = record.read_text() if record.exists() else ""
        assert MARK_REQUEST not in sent
    finally:
        engine.close()


def test_a_hostile_value_reaching_the_dispatcher_is_only_json_data(tmp_path: Path) -> None:
    """Bypass validation: call the backend directly and read what went down the pipe."""
    record = tmp_path / "requests.log"
    backend = fake_backend(tmp_path, "--record", str(record))
    expected: list[tuple[str, dict[str, str]]] = []
    try:
        for name in HOSTILE:
            # Lookup by name: exact (ignoring case), never a wildcard, never code.
            if any(c in name for c in "*?[]`"):
                with pytest.raises(InvalidInput, match="wildcard"):
                    backend.find_vms(name)  # refused before anything is sent
            else:
                assert backend.find_vms(name) == []
                expected.append(("vm_find", {"Name": name}))
            # An operation addresses the VM by id: the name never goes down the pipe.
            vm_id = str(uuid.uuid4())
            with pytest.raises(VMNotFoundInHost) as info:
                backend.start(VMRef(name, vm_id))
            assert info.value.vm == name
            expected.append(("vm_start", {"Id": vm_id}))
            # The hostile value as the id itself: still only a JSON string, and refused.
            with pytest.raises(BackendError):
                backend.start(VMRef("x", name))
            expected.append(("vm_start", {"Id": name}))
    finally:
        backend.close()
    lines = [line for line in record.read_text().splitlines() if line]
    assert len(lines) == len(expected)
    for line, (op, data) in zip(lines, expected, strict=True):
        assert line.isascii()  # non-ASCII (e.g. U+2019) is \u-escaped inside the JSON string
        marker, _, payload = line.partition(" ")
        assert marker == MARK_REQUEST
        frame = json.loads(payload)
        assert set(frame) == {"id", "op", "data"}
        assert re.fullmatch(r"[0-9a-f]{16}", frame["id"])
        assert frame["op"] == op
        assert frame["data"] == data  # the value, whole, as a JSON string value
        # The payload is exactly the JSON encoding: nothing outside the string literal.
        assert payload == json.dumps(frame, ensure_ascii=True, separators=(",", ":"))
        assert "\n" not in payload


def test_the_dispatcher_never_evaluates_request_data() -> None:
    text = DISPATCHER.read_text(encoding="utf-8")
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    for forbidden in (
        r"Invoke-Expression",
        r"\biex\b",
        r"\[ScriptBlock\]::Create",
        r"NewScriptBlock",
        r"Add-Type",
        r"InvokeScript",
        r"Invoke-Command",
        r"Start-Process",
        r"\.Invoke\(",
        r"-EncodedCommand",
    ):
        assert not re.search(forbidden, code, re.I), forbidden
    # The only dynamic invocation is of an allow-list entry, by a key that was checked.
    invocations = re.findall(r"&\s*\$\w+(?:\[[^\]]*\])?", code)
    assert invocations == ["& $Ops[$op]"]
    assert "if (-not $Ops.ContainsKey($op))" in code
    # Request data is only splatted into the operation's declared parameters.
    assert "& $Ops[$op] @params" in code

"""The dispatcher script, read as text: a fixed allow-list that covers everything Python calls."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest

import core.backends.hyperv as hyperv
from core.backends.hyperv.transport import DISPATCHER
from core.errors import InvalidInput
from tests.fakes.fakeps import dispatcher_ops, matching_brace

TEXT = DISPATCHER.read_text(encoding="utf-8")
CODE = "\n".join(line for line in TEXT.splitlines() if not line.lstrip().startswith("#"))
# Backtick line continuations joined, so that one cmdlet call is one line.
LINES = re.sub(r"`\n\s*", " ", CODE)
OPS = dispatcher_ops(TEXT)
SOURCE = inspect.getsource(hyperv)

# The backend's plumbing: `call(op, data)`, and `_vm_op` / `_read_op(op, vm, **data)`, which
# send the VM's hypervisor id as `Id`.
VM_SENDERS = {"_vm_op", "_read_op"}
PLUMBING = {"call", *VM_SENDERS}


def op_blocks() -> dict[str, str]:
    """Each allow-list entry's script block text (comment lines removed, continuations joined)."""
    table = re.search(r"^\$Ops\s*=\s*@\{", CODE, re.M)
    assert table is not None
    body = CODE[table.end() : matching_brace(CODE, table.end() - 1) - 1]
    blocks: dict[str, str] = {}
    for entry in re.finditer(r"^\s*'([a-z0-9_]+)'\s*=\s*\{", body, re.M):
        end = matching_brace(body, entry.end() - 1)
        blocks[entry.group(1)] = re.sub(r"`\n\s*", " ", body[entry.end() : end - 1])
    assert set(blocks) == set(OPS)
    return blocks


def declared_types(op: str) -> dict[str, str]:
    """The typed parameters of one operation: name -> type."""
    block = op_blocks()[op]
    declared = re.match(r"\s*param\((.*?)\)\s*\n", block, re.S)
    if declared is None:
        return {}
    return {
        name: kind
        for kind, name in re.findall(r"\[([A-Za-z.]+)\]\s*\$([A-Za-z]+)", declared.group(1))
    }


def literal_ops(node: ast.expr) -> list[str]:
    """The operation names an argument can be: a literal, or either literal of `a if c else b`."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.IfExp):
        both = literal_ops(node.body), literal_ops(node.orelse)
        return both[0] + both[1] if all(both) else []
    return []


def python_calls() -> dict[str, set[str]]:
    """Every (operation, parameter names) the Python backend sends, read from its syntax tree."""
    tree = ast.parse(SOURCE)
    calls: dict[str, set[str]] = {}
    for function in ast.walk(tree):
        if not isinstance(function, ast.FunctionDef):
            continue
        # `data = {...}` assignments in this function, for `call("vm_new", data, ...)`.
        dicts = {
            target.id: node.value
            for node in ast.walk(function)
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict)
            for target in node.targets
            if isinstance(target, ast.Name)
        }
        for node in ast.walk(function):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            sender = node.func.attr
            if sender not in {"call", *VM_SENDERS} or not node.args:
                continue
            ops = literal_ops(node.args[0])
            if not ops:
                # Only the plumbing itself passes an operation it was given.
                assert function.name in PLUMBING, f"{function.name}: {ast.unparse(node)}"
                continue
            params: set[str] = set()
            if sender in VM_SENDERS:
                params |= {"Id"} | {k.arg for k in node.keywords if k.arg is not None}
                assert all(k.arg is not None for k in node.keywords), ast.unparse(node)
            elif len(node.args) > 1:
                data: ast.expr = node.args[1]
                if isinstance(data, ast.Name):
                    assert data.id in dicts, f"{ops}: data {data.id} is not a dict literal"
                    data = dicts[data.id]
                if not (isinstance(data, ast.Constant) and data.value is None):
                    assert isinstance(data, ast.Dict), ast.unparse(node)
                    for key in data.keys:
                        assert isinstance(key, ast.Constant), ast.unparse(node)
                        assert isinstance(key.value, str), ast.unparse(node)
                        params.add(key.value)
            for op in ops:
                calls.setdefault(op, set()).update(params)
    return calls


def test_every_operation_python_calls_is_in_the_allow_list_with_its_parameters() -> None:
    calls = python_calls()
    assert len(calls) >= 30
    for op, params in calls.items():
        assert op in OPS, f"{op} is not in the dispatcher's allow-list"
        assert params <= set(OPS[op]), f"{op}: {params - set(OPS[op])} not declared"
    # The reader above really sees the parameters, not just the operation names.
    assert calls["vm_configure"] == {"Id", "Notes", "Cpus", "StopAction"}
    assert calls["vm_thumbnail"] == {"Id", "Width", "Height"}
    assert calls["checkpoint_restore"] == {"CheckpointId"}
    assert calls["vm_new"] == {"Name", "DiskPath", "MemoryBytes", "Path"}
    assert calls["vm_new_on_switch"] == {"Name", "DiskPath", "MemoryBytes", "Path", "SwitchName"}


def test_the_backend_protocol_is_covered() -> None:
    from core.backends.base import Backend

    for method in [m for m in vars(Backend) if not m.startswith("_")]:
        if method in {"name", "simulated", "capabilities"}:
            continue
        assert callable(getattr(hyperv.HyperVBackend, method, None)), method


def test_the_allow_list_is_one_fixed_literal() -> None:
    assert len(re.findall(r"^\$Ops\s*=\s*@\{", CODE, re.M)) == 1
    assert not re.search(r"\$Ops\s*\[[^\]]*\]\s*=|\$Ops\.(Add|Remove|Set_Item|Clear)\b", CODE)
    assert not re.search(r"\$Ops\s*\+=", CODE)
    # Every parameter of every operation is typed, so JSON data binds as values, and the
    # allow-list reader (the fake host's, which refuses undeclared parameters) sees them all.
    for op, params in OPS.items():
        block = re.search(rf"'{op}' = \{{\s*param\((.*?)\)\s*\n", CODE, re.S)
        if block:
            pieces = [p.strip() for p in block.group(1).split(",")]
            typed = [
                re.fullmatch(r"\[[A-Za-z.]+\]\s*\$([A-Za-z_]\w*)(\s*=\s*\S+)?", p) for p in pieces
            ]
            assert all(typed), f"{op}: untyped parameter in {pieces}"
            names = [m.group(1) for m in typed if m]
            assert names == params, f"{op}: the script declares {names}, the reader sees {params}"


def test_vms_and_checkpoints_are_addressed_by_guid() -> None:
    """Every VM Python names by id reaches the script as a [guid], and checkpoints likewise."""
    calls = python_calls()
    by_id = [op for op, params in calls.items() if "Id" in params]
    assert len(by_id) >= 20
    for op in by_id:
        assert declared_types(op).get("Id") == "guid", f"{op}: $Id is not a [guid]"
    for op in ("checkpoint_restore", "checkpoint_remove"):
        assert declared_types(op) == {"CheckpointId": "guid"}, op
        assert re.search(r"Hyper-V\\Get-VMSnapshot -Id \$CheckpointId\b", op_blocks()[op]), op


HYPERV_CMDLETS = (
    "Get-VM",
    "New-VM",
    "Set-VM",
    "Start-VM",
    "Stop-VM",
    "Save-VM",
    "Suspend-VM",
    "Resume-VM",
    "Remove-VM",
    "Checkpoint-VM",
    "Get-VMSnapshot",
    "Restore-VMSnapshot",
    "Remove-VMSnapshot",
    "Get-VMNetworkAdapter",
    "Get-VMIntegrationService",
    "Get-VMHost",
    "Get-VMHardDiskDrive",
    "New-VHD",
    "Add-VMGpuPartitionAdapter",
)
# Cmdlets that act on one VM: given it as `-VM`, never by name.
VM_CMDLETS = (
    "Set-VM",
    "Start-VM",
    "Stop-VM",
    "Save-VM",
    "Suspend-VM",
    "Resume-VM",
    "Remove-VM",
    "Checkpoint-VM",
    "Get-VMNetworkAdapter",
    "Get-VMIntegrationService",
    "Add-VMGpuPartitionAdapter",
)


def test_hyperv_cmdlets_are_module_qualified_and_never_take_wildcard_names() -> None:
    for cmdlet in HYPERV_CMDLETS:
        for match in re.finditer(rf"(\S*?){re.escape(cmdlet)}\b(?!-)", CODE):
            assert match.group(1).endswith("Hyper-V\\"), f"{cmdlet} not module-qualified"
    blocks = op_blocks()

    # Get-VM: by -Id (Get-HvVM), by exact -Name in vm_find only, bare only in vm_list.
    get_vm = re.findall(r"Hyper-V\\Get-VM\b(?!-)([^\n]*)", LINES)
    assert len(get_vm) == 3, get_vm
    by_id = [args for args in get_vm if re.match(r" -Id \$Id$", args)]
    assert len(by_id) == 1, get_vm
    helper = re.search(r"function Get-HvVM \{\s*param\(\[guid\]\$Id\)\s*\n(.*?)\n\}", CODE, re.S)
    assert helper is not None and "Hyper-V\\Get-VM -Id $Id" in helper.group(1)
    for op, block in blocks.items():
        calls = re.findall(r"Hyper-V\\Get-VM\b(?!-)([^\n]*)", block)
        if op == "vm_list":
            assert len(calls) == 1 and not re.search(r"-(Name|VMName|Id)\b", calls[0]), calls
        elif op == "vm_find":
            assert len(calls) == 1 and calls[0].startswith(" -Name $Name "), calls
            assert declared_types(op) == {"Name": "string"}
        else:
            assert calls == [], f"{op} calls Get-VM itself instead of Get-HvVM -Id"
    assert not re.search(r"Hyper-V\\Get-VM\s+-VMName", CODE)

    # Every other cmdlet gets its VM as an object looked up by id, never by name.
    for op, block in blocks.items():
        vm_vars = re.findall(r"\$vm = ([^\n]*)", block)
        for assigned in vm_vars:
            assert assigned == "Get-HvVM -Id $Id" or (
                op in {"vm_new", "vm_new_on_switch"} and assigned.startswith("Hyper-V\\New-VM ")
            ), f"{op}: $vm = {assigned}"
        for cmdlet in VM_CMDLETS:
            for args in re.findall(rf"Hyper-V\\{cmdlet}\b(?!-)([^\n]*)", block):
                assert re.match(r" -VM (\(Get-HvVM -Id \$Id\)|\$vm)(\s|\)|$)", args), (
                    f"{op}: {cmdlet}{args}"
                )
                assert not re.search(r" -(Name|VMName)\b", args), f"{op}: {cmdlet}{args}"
    # Checkpoints: listed from the VM object, picked by Python, then addressed by id.
    assert not re.search(r"Get-VMSnapshot[^\n|]*-Name", CODE)
    for args in re.findall(r"Hyper-V\\Get-VMSnapshot\b([^\n]*)", CODE):
        assert re.match(r" (-VM \(Get-HvVM -Id \$Id\)|-Id \$CheckpointId)\)?", args), args
    for cmdlet in ("Restore-VMSnapshot", "Remove-VMSnapshot"):
        for args in re.findall(rf"Hyper-V\\{cmdlet}\b([^\n]*)", CODE):
            assert args.startswith(" -VMSnapshot (Hyper-V\\Get-VMSnapshot -Id $CheckpointId)"), args


@pytest.mark.parametrize("name", ["web-*", "web-00?", "web-[01]", "web]", "a`b"])
def test_a_name_with_a_wildcard_character_never_reaches_get_vm_name(name: str) -> None:
    # `Get-VM -Name` takes wildcards; the backend refuses such a name before any request.
    backend = hyperv.HyperVBackend("powershell.exe")

    def no_call(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"sent {args!r}")

    backend.call = no_call  # type: ignore[method-assign]
    with pytest.raises(InvalidInput):
        backend.find_vms(name)


def test_session_settings_and_encoding() -> None:
    assert "$ErrorActionPreference = 'Stop'" in CODE
    assert "$ProgressPreference = 'SilentlyContinue'" in CODE
    assert "New-Object System.Text.UTF8Encoding $false" in CODE  # UTF-8 without BOM
    assert "[Console]::OutputEncoding = $Utf8" in CODE
    assert "[Console]::InputEncoding = $Utf8" in CODE
    assert CODE.count("Import-Module Hyper-V") == 1
    assert "-Depth 6 -Compress" in CODE


def test_documented_hyperv_settings() -> None:
    # docs/hyperv.md: generation 2, automatic checkpoints off, checkpoint type Standard,
    # automatic stop action Save (TurnOff with a GPU partition), enhanced session over HvSocket.
    new_vm = re.search(r"Hyper-V\\New-VM ([^\n]*)", LINES)
    assert new_vm is not None and "-Generation 2 " in new_vm.group(1)
    configure = re.findall(r"Hyper-V\\Set-VM ([^\n]*)", op_blocks()["vm_configure"])
    assert len(configure) == 1
    for setting in (
        "-Notes $Notes",
        "-StaticMemory",
        "-AutomaticCheckpointsEnabled $false",
        "-CheckpointType Standard",
        "-AutomaticStopAction $StopAction",
    ):
        assert setting in configure[0], setting
    assert "-EnhancedSessionTransportType HvSocket" in op_blocks()["vm_enhanced_session"]
    # The stop action is chosen in Python: Save, or TurnOff for a VM with a GPU partition.
    assert 'stop_action = "TurnOff" if gpu else "Save"' in SOURCE
    docs = (Path(__file__).parents[1] / "docs" / "hyperv.md").read_text(encoding="utf-8")
    flat = re.sub(r"\s+", " ", docs)
    assert "automatic stop action Save" in flat
    assert "`--gpu` gets `Add-VMGpuPartitionAdapter` and automatic stop action TurnOff" in flat

    assert re.search(r"Restore-VMSnapshot [^\n]*-Confirm:\$false", CODE)
    # The heartbeat service is matched by its ID (its name is localised), in Python now: the
    # script returns every integration service with its Id.
    assert 'HEARTBEAT_SERVICE_ID = "84EAAE65-2F2E-45F5-9BB5-0E857DC8EB47"' in SOURCE
    assert "Id = [string]$_.Id" in op_blocks()["vm_heartbeat"]
    # KVP fallback: the script returns the intrinsic items, Python reads NetworkAddressIPv4.
    assert "GuestIntrinsicExchangeItems" in op_blocks()["vm_kvp"]
    assert 'kvp_value(items, "NetworkAddressIPv4")' in SOURCE
    for wmi in (
        "GetVirtualSystemThumbnailImage",
        "TypeText",
        "TypeKey",
        "TypeCtrlAltDel",
        "SetAbsolutePosition",
        "ClickButton",
        "CurrentHorizontalResolution",
    ):
        assert wmi in CODE, wmi
    # WMI results come back as data, waited for in Python.
    assert "ReturnValue = [int]$Result.ReturnValue" in CODE
    assert "Start-Sleep" not in CODE

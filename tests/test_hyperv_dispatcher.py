"""The dispatcher script, read as text: a fixed allow-list that covers everything Python calls."""

from __future__ import annotations

import inspect
import re

import core.backends.hyperv as hyperv
from core.backends.fakeps import dispatcher_ops
from core.backends.hyperv.transport import DISPATCHER

TEXT = DISPATCHER.read_text(encoding="utf-8")
CODE = "\n".join(line for line in TEXT.splitlines() if not line.lstrip().startswith("#"))
OPS = dispatcher_ops(TEXT)


def python_calls() -> dict[str, set[str]]:
    """Every (operation, parameter names) the Python backend sends, read from its source."""
    source = inspect.getsource(hyperv)
    calls: dict[str, set[str]] = {}
    for match in re.finditer(r'(?:call|_vm_op)\(\s*"([a-z_0-9]+)"', source):
        calls.setdefault(match.group(1), set())
    for match in re.finditer(r'_vm_op\(\s*"([a-z_0-9]+)",\s*name((?:,\s*\w+=[^,)]+)*)\)', source):
        calls[match.group(1)] |= {"Name", *re.findall(r"(\w+)=", match.group(2))}
    for match in re.finditer(r'call\(\s*"([a-z_0-9]+)",\s*\{([^}]*)\}', source):
        calls[match.group(1)] |= set(re.findall(r'"(\w+)":', match.group(2)))
    data_keys = re.search(r"data = \{(.*?)\n        \}", source, re.S)
    assert data_keys is not None
    calls["vm_new"] |= set(re.findall(r'"(\w+)":', data_keys.group(1)))
    return calls


def test_every_operation_python_calls_is_in_the_allow_list_with_its_parameters() -> None:
    calls = python_calls()
    assert len(calls) >= 20
    for op, params in calls.items():
        assert op in OPS, f"{op} is not in the dispatcher's allow-list"
        assert params <= set(OPS[op]), f"{op}: {params - set(OPS[op])} not declared"


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
    # Every parameter of every operation is typed, so JSON data binds as values.
    for op, params in OPS.items():
        block = re.search(rf"'{op}' = \{{\s*param\((.*?)\)\s*\n", CODE, re.S)
        if block:
            declared = re.findall(r"\$([A-Za-z]+)\b(?!\s*\))", block.group(1))
            assert set(params) >= {p for p in declared if p not in {"true", "false"}}, op


def test_session_settings_and_encoding() -> None:
    assert "$ErrorActionPreference = 'Stop'" in CODE
    assert "$ProgressPreference = 'SilentlyContinue'" in CODE
    assert "New-Object System.Text.UTF8Encoding $false" in CODE  # UTF-8 without BOM
    assert "[Console]::OutputEncoding = $Utf8" in CODE
    assert "[Console]::InputEncoding = $Utf8" in CODE
    assert CODE.count("Import-Module Hyper-V") == 1
    assert "-Depth 6 -Compress" in CODE


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


def test_hyperv_cmdlets_are_module_qualified_and_never_take_wildcard_names() -> None:
    for cmdlet in HYPERV_CMDLETS:
        for match in re.finditer(rf"(\S*?){re.escape(cmdlet)}\b(?!-)", CODE):
            assert match.group(1).endswith("Hyper-V\\"), f"{cmdlet} not module-qualified"
    assert not re.search(r"Get-VM\s+-Name", CODE)
    assert not re.search(r"Get-VMSnapshot[^\n|]*-Name", CODE)


def test_documented_hyperv_settings() -> None:
    assert "Generation = 2" in CODE
    assert "AutomaticCheckpointsEnabled = $false" in CODE
    assert "CheckpointType              = 'Standard'" in CODE
    assert "AutomaticStopAction         = 'Save'" in CODE
    assert re.search(r"Restore-VMSnapshot [^\n]*-Confirm:\$false", CODE)
    assert "84EAAE65-2F2E-45F5-9BB5-0E857DC8EB47" in CODE  # heartbeat matched by ID
    assert "NetworkAddressIPv4" in CODE  # KVP fallback
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

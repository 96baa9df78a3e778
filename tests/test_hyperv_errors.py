"""Error records map to distinct core errors by id, category, type and HRESULT, not by text."""

from __future__ import annotations

from typing import Any

import pytest

from core.backends.hyperv.errors import ErrorRecord, classify, to_error
from core.errors import (
    BackendError,
    FileInUse,
    InvalidVMState,
    OperationTimeout,
    OutOfMemory,
    PermissionDenied,
    SavedStateCorrupt,
    Unsupported,
    VMNotFoundInHost,
)

VEX = "Microsoft.HyperV.PowerShell.VirtualizationException"

CASES: list[tuple[str, dict[str, Any], type[BackendError]]] = [
    (
        "vm_get",
        {
            "message": 'Hyper-V was unable to find a virtual machine with name "N1".',
            "fqid": "InvalidParameter,Microsoft.HyperV.PowerShell.Commands.GetVM",
            "category": "InvalidArgument",
            "type": VEX,
        },
        VMNotFoundInHost,
    ),
    (
        "vm_remove",
        {
            "message": "Hyper-V was unable to find a virtual machine with name 'x'.",
            "fqid": "ObjectNotFound,Microsoft.HyperV.PowerShell.Commands.RemoveVM",
            "category": "ObjectNotFound",
            "type": VEX,
        },
        VMNotFoundInHost,
    ),
    (
        "vm_start",
        {"message": "no VM", "fqid": "HvkubeVMNotFound,Stop-Hv", "category": "ObjectNotFound"},
        VMNotFoundInHost,
    ),
    (
        "vm_save",
        {
            "message": "The operation cannot be performed while the object is in its state.",
            "fqid": "InvalidState,Microsoft.HyperV.PowerShell.Commands.SaveVM",
            "category": "InvalidOperation",
            "type": VEX,
        },
        InvalidVMState,
    ),
    (
        "vm_start",
        {
            "message": "You do not have the required permission to complete this task.",
            "fqid": "AccessDenied,Microsoft.HyperV.PowerShell.Commands.StartVM",
            "category": "PermissionDenied",
            "type": VEX,
        },
        PermissionDenied,
    ),
    (
        "vm_start",
        {
            "message": "'a' could not initialize memory: Ran out of memory (0x8007000E).",
            "fqid": "OperationFailed,Microsoft.HyperV.PowerShell.Commands.StartVM",
            "category": "NotSpecified",
            "type": VEX,
        },
        OutOfMemory,
    ),
    (
        "disk_new_diff",
        {
            "message": "The process cannot access the file because it is being used.",
            "fqid": "OperationFailed,Microsoft.Vhd.PowerShell.Cmdlets.NewVhd",
            "category": "ResourceBusy",
            "type": "System.IO.IOException",
            "hresults": ["0x80070020"],
        },
        FileInUse,
    ),
    (
        "vm_start",
        {
            "message": "'a' could not restore its saved state (0x80070570).",
            "fqid": "OperationFailed,Microsoft.HyperV.PowerShell.Commands.StartVM",
            "category": "NotSpecified",
            "type": VEX,
        },
        SavedStateCorrupt,
    ),
    (
        "vm_type_key",
        {"message": "TypeKey failed", "fqid": "HvkubeWmi32775,Wait-HvJob", "wmiCode": 32775},
        InvalidVMState,
    ),
    (
        "vm_type_key",
        {"message": "TypeKey failed", "fqid": "HvkubeWmi32769,Wait-HvJob"},
        PermissionDenied,
    ),
    (
        "vm_screenshot",
        {"message": "took too long", "fqid": "HvkubeTimeout,Wait-HvJob"},
        OperationTimeout,
    ),
    (
        "vm_list",
        {
            "message": "The term 'Get-VM' is not recognized as the name of a cmdlet",
            "fqid": "CommandNotFoundException",
            "category": "ObjectNotFound",
            "type": "System.Management.Automation.CommandNotFoundException",
        },
        Unsupported,
    ),
    # A resource shortage on a localised host with no specific id: generic, never a guess.
    (
        "vm_start",
        {
            "message": "Échec de l'opération. Ressources système insuffisantes (0x800705AA).",
            "fqid": "OperationFailed,Microsoft.HyperV.PowerShell.Commands.StartVM",
            "category": "NotSpecified",
            "type": VEX,
        },
        BackendError,
    ),
    (
        "vm_new",
        {
            "message": "Sequence contains more than one element",
            "fqid": "InvalidOperation,Microsoft.HyperV.PowerShell.Commands.NewVM",
            "category": "InvalidOperation",
        },
        BackendError,
    ),
]


@pytest.mark.parametrize(("op", "data", "expected"), CASES)
def test_classification(op: str, data: dict[str, Any], expected: type[BackendError]) -> None:
    assert classify(ErrorRecord.from_json(data), op) is expected


def test_a_corrupt_file_outside_a_resume_is_not_a_corrupt_saved_state() -> None:
    record = ErrorRecord.from_json({"message": "x (0x80070570)", "fqid": "OperationFailed,X"})
    assert classify(record, "disk_new_diff") is BackendError


def test_classification_ignores_the_language_of_the_message() -> None:
    for message in ("Access denied.", "Accès refusé.", "Odmowa dostępu.", "拒绝访问。"):
        record = ErrorRecord.from_json(
            {"message": message, "fqid": "AccessDenied,X", "category": "PermissionDenied"}
        )
        assert classify(record, "vm_start") is PermissionDenied


def test_permission_error_keeps_the_message_and_says_what_to_do() -> None:
    record = ErrorRecord.from_json(
        {"message": "Accès refusé.", "fqid": "AccessDenied,X", "category": "PermissionDenied"}
    )
    exc = to_error(record, "vm_start", "p-001")
    assert isinstance(exc, PermissionDenied)
    assert "Accès refusé." in exc.message
    assert "Hyper-V Administrators" in exc.message and "elevated" in exc.message
    assert exc.vm == "p-001" and exc.operation == "vm_start"
    assert exc.raw is not None and "AccessDenied" in exc.raw


def test_missing_module_says_how_to_install_it() -> None:
    record = ErrorRecord.from_json(
        {"message": "The term 'Get-VM' is not recognized", "fqid": "CommandNotFoundException"}
    )
    exc = to_error(record, "vm_list", None)
    assert isinstance(exc, Unsupported)
    assert "Microsoft-Hyper-V-Management-PowerShell" in exc.message


def test_unknown_records_keep_everything_raw() -> None:
    record = ErrorRecord.from_json({"message": "boom", "fqid": "Weird,Thing"})
    exc = to_error(record, "vm_save", "a")
    assert type(exc) is BackendError
    assert exc.message == "boom"
    assert exc.raw is not None and "Weird,Thing" in exc.raw


def test_malformed_error_payloads_still_give_an_error() -> None:
    assert ErrorRecord.from_json("text only").message == "text only"
    assert ErrorRecord.from_json({}).message
    record = ErrorRecord.from_json({"message": "m", "hresults": ["zz", True, -2147024891]})
    assert record.hresults == [0x80070005]

"""Map PowerShell error records to hvkube's errors.

A record is classified by what does not depend on the host's language: the
FullyQualifiedErrorId (error id, then the cmdlet's class), the category, the
exception type and HRESULTs (from the exception chain, or `0x8XXXXXXX` in the
text). The message is localised and is only kept to show it. When nothing
specific matches, the result is a generic BackendError that keeps the raw
record: never a wrong specific error.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

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

PERMISSION_HINT = (
    "run hvkube from an elevated shell (Run as administrator), or add the user to the "
    "local 'Hyper-V Administrators' group and sign in again"
)
MODULE_HINT = (
    "the Hyper-V PowerShell module is missing; install it with "
    "'Enable-WindowsOptionalFeature -Online -FeatureName Microsoft-Hyper-V-Management-PowerShell'"
    " (or 'Install-WindowsFeature Hyper-V-PowerShell' on Windows Server)"
)

E_ACCESSDENIED = 0x80070005
E_OUTOFMEMORY = 0x8007000E
ERROR_NOT_ENOUGH_MEMORY = 0x80070008
ERROR_SHARING_VIOLATION = 0x80070020
ERROR_LOCK_VIOLATION = 0x80070021
ERROR_FILE_CORRUPT = 0x80070570
ERROR_INVALID_DATA = 0x8007000D

# Msvm_* method return values (root\virtualization\v2).
WMI_ACCESS_DENIED = 32769
WMI_NOT_SUPPORTED = 32770
WMI_TIMEOUT = 32772
WMI_INVALID_STATE = 32775
WMI_FILE_IN_USE = 32779

# Operations that resume a VM from a saved state: a corrupt-file HRESULT there
# means the saved state cannot be used.
RESUME_OPS = frozenset({"vm_start"})

_HRESULT_RE = re.compile(r"0x(8[0-9A-Fa-f]{7}|C[0-9A-Fa-f]{7})\b")


@dataclass
class ErrorRecord:
    """The parts of a PowerShell ErrorRecord the dispatcher sends back."""

    message: str
    fqid: str = ""
    category: str = ""
    exception_type: str = ""
    hresults: list[int] = field(default_factory=list)
    target: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Any) -> ErrorRecord:
        if not isinstance(data, dict):
            return cls(message=str(data)[:2000])
        hresults: list[int] = []
        for value in data.get("hresults") or []:
            number = _hresult(value)
            if number is not None:
                hresults.append(number)
        message = str(data.get("message") or "PowerShell reported an error without a message")
        for match in _HRESULT_RE.finditer(message):
            hresults.append(int(match.group(1), 16))
        known = {"message", "fqid", "category", "type", "hresults", "target"}
        return cls(
            message=message,
            fqid=str(data.get("fqid") or ""),
            category=str(data.get("category") or ""),
            exception_type=str(data.get("type") or ""),
            hresults=hresults,
            target=str(data.get("target") or ""),
            extra={k: v for k, v in data.items() if k not in known},
        )

    @property
    def error_id(self) -> str:
        """The id before the first comma of the FullyQualifiedErrorId."""
        return self.fqid.split(",", 1)[0].strip()

    @property
    def wmi_code(self) -> int | None:
        value = self.extra.get("wmiCode")
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        match = re.fullmatch(r"HvkubeWmi(\d+)", self.error_id)
        return int(match.group(1)) if match else None

    def raw(self) -> str:
        return json.dumps(
            {
                "message": self.message,
                "fqid": self.fqid,
                "category": self.category,
                "type": self.exception_type,
                "hresults": [f"0x{h:08X}" for h in self.hresults],
                **self.extra,
            },
            ensure_ascii=False,
        )


def _hresult(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value & 0xFFFFFFFF
    if isinstance(value, str):
        text = value.strip().lower()
        try:
            return int(text, 16) if text.startswith("0x") else int(text) & 0xFFFFFFFF
        except ValueError:
            return None
    return None


def classify(record: ErrorRecord, op: str) -> type[BackendError]:
    """The hvkube error class for a record raised by dispatcher operation `op`."""
    eid = record.error_id
    category = record.category
    etype = record.exception_type.rsplit(".", 1)[-1]
    hresults = set(record.hresults)
    wmi = record.wmi_code

    if (
        category == "PermissionDenied"
        or eid in {"AccessDenied", "UnauthorizedAccess", "HvkubeAccessDenied"}
        or etype in {"UnauthorizedAccessException", "SecurityException"}
        or E_ACCESSDENIED in hresults
        or wmi == WMI_ACCESS_DENIED
    ):
        return PermissionDenied
    if eid == "CommandNotFoundException" or etype == "CommandNotFoundException":
        return Unsupported
    if eid in {"HvkubeVMNotFound", "HvkubeCheckpointNotFound"}:
        return VMNotFoundInHost
    if eid in {"HvkubeTimeout"} or wmi == WMI_TIMEOUT:
        return OperationTimeout
    if eid in {"HvkubeUnsupported", "NotSupported"} or wmi == WMI_NOT_SUPPORTED:
        return Unsupported
    if op in RESUME_OPS and hresults & {ERROR_FILE_CORRUPT, ERROR_INVALID_DATA}:
        return SavedStateCorrupt
    if (
        E_OUTOFMEMORY in hresults
        or ERROR_NOT_ENOUGH_MEMORY in hresults
        or etype in {"OutOfMemoryException", "InsufficientMemoryException"}
    ):
        return OutOfMemory
    if (
        hresults & {ERROR_SHARING_VIOLATION, ERROR_LOCK_VIOLATION}
        or eid in {"FileInUse", "HvkubeFileInUse"}
        or wmi == WMI_FILE_IN_USE
    ):
        return FileInUse
    if eid in {"InvalidState", "HvkubeInvalidState"} or wmi == WMI_INVALID_STATE:
        return InvalidVMState
    if category == "ObjectNotFound" or eid == "ObjectNotFound":
        return VMNotFoundInHost
    # Get-VM -Name with a name that does not exist: InvalidArgument / InvalidParameter.
    if eid == "InvalidParameter" and record.fqid.endswith("Commands.GetVM"):
        return VMNotFoundInHost
    return BackendError


def to_error(record: ErrorRecord, op: str, vm: str | None) -> BackendError:
    """The exception to raise, with the original message kept and a hint where one helps."""
    cls = classify(record, op)
    message = record.message.strip()
    if cls is PermissionDenied:
        message = f"{message} ({PERMISSION_HINT})"
    elif cls is Unsupported and record.error_id == "CommandNotFoundException":
        message = f"{message} ({MODULE_HINT})"
    return cls(message, vm=vm, operation=op, raw=record.raw())

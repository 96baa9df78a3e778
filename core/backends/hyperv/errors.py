"""Map PowerShell error records to hvkube's errors.

A record is classified by what does not depend on the host's language: the
FullyQualifiedErrorId (error id, then the cmdlet's class), the category, the
exception type and HRESULTs (from the exception chain, or `0x8XXXXXXX` in the
text). The message is localised and is only kept to show it. When nothing
specific matches, the result is a generic BackendError that keeps the raw
record: never a wrong specific error.

Order of evidence: the dispatcher's own ids (it checked the condition itself),
then HRESULTs (language-independent; the first one that means something
decides), then WMI return values, then the cmdlet's error id, category and
exception type.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from core.backends.hyperv.parsing import VM_STATE_NAMES, enum_name
from core.errors import (
    BackendError,
    CheckpointNotFound,
    FileInUse,
    HostObjectExists,
    InvalidVMState,
    OperationTimeout,
    OutOfMemory,
    PermissionDenied,
    SavedStateCorrupt,
    Unsupported,
    VMBroken,
    VMNotFoundInHost,
)
from core.reported import MAX_NAME_CHARS, bounded

PERMISSION_HINT = (
    "run hvkube from an elevated shell (Run as administrator), or add the user to the "
    "local 'Hyper-V Administrators' group and sign in again"
)
MODULE_HINT = (
    "the Hyper-V PowerShell module is missing; install it with "
    "'Enable-WindowsOptionalFeature -Online -FeatureName Microsoft-Hyper-V-Management-PowerShell'"
    " (or 'Install-WindowsFeature Hyper-V-PowerShell' on Windows Server)"
)

MEMORY_HINT = (
    "the Hyper-V host lacks the free memory or system resources for this; free memory on the "
    "host (stop or save other VMs), or lower the pool's size or its VMs' memory"
)
BROKEN_VM_HINT = (
    "the VM itself cannot start (its firmware or configuration data is invalid), not its saved "
    "state: restoring a checkpoint will not help; rebuild the VM from its template"
)

E_ACCESSDENIED = 0x80070005
E_OUTOFMEMORY = 0x8007000E
ERROR_NOT_ENOUGH_MEMORY = 0x80070008
ERROR_NO_SYSTEM_RESOURCES = 0x800705AA
ERROR_FILE_EXISTS = 0x80070050
ERROR_ALREADY_EXISTS = 0x800700B7
ERROR_SHARING_VIOLATION = 0x80070020
ERROR_LOCK_VIOLATION = 0x80070021
ERROR_FILE_CORRUPT = 0x80070570
ERROR_INVALID_DATA = 0x8007000D

# HRESULTs that say nothing about the failure: a .NET exception's own default HResult
# (VirtualizationException, the dispatcher's InvalidOperationException), E_FAIL.
UNSPECIFIC_HRESULTS = frozenset({0x80131500, 0x80131509, 0x80004005})
# Error ids, categories and exception types that say nothing either.
UNSPECIFIC_IDS = frozenset({"", "Unspecified", "OperationFailed"})
UNSPECIFIC_CATEGORIES = frozenset({"", "NotSpecified"})
UNSPECIFIC_TYPES = frozenset({"", "VirtualizationException", "Exception", "COMException"})

# Msvm_* method and job return values (root\virtualization\v2).
WMI_JOB_STARTED = 4096
WMI_FAILED = 32768
WMI_ACCESS_DENIED = 32769
WMI_NOT_SUPPORTED = 32770
WMI_TIMEOUT = 32772
WMI_INVALID_STATE = 32775
WMI_OUT_OF_MEMORY = 32778
WMI_FILE_NOT_FOUND = 32779

_WMI_CLASSES: dict[int, type[BackendError]] = {
    WMI_ACCESS_DENIED: PermissionDenied,
    WMI_NOT_SUPPORTED: Unsupported,
    WMI_TIMEOUT: OperationTimeout,
    WMI_INVALID_STATE: InvalidVMState,
    WMI_OUT_OF_MEMORY: OutOfMemory,
}
# What a WMI return value that maps to no specific class means, for the message.
_WMI_MEANING = {
    WMI_JOB_STARTED: "a Hyper-V job failed",
    WMI_FAILED: "WMI return value 32768: the operation failed",
    WMI_FILE_NOT_FOUND: "WMI return value 32779: a file Hyper-V needs was not found",
}

# The dispatcher's own error ids: it checked the condition itself.
_OWN_IDS: dict[str, type[BackendError]] = {
    "HvkubeVMNotFound": VMNotFoundInHost,
    "HvkubeCheckpointNotFound": CheckpointNotFound,
    "HvkubeAlreadyExists": HostObjectExists,
    "HvkubeTimeout": OperationTimeout,
    "HvkubeUnsupported": Unsupported,
    "HvkubeAccessDenied": PermissionDenied,
    "HvkubeFileInUse": FileInUse,
    "HvkubeInvalidState": InvalidVMState,
}

# Operations that resume a VM from a saved state: a corrupt-file HRESULT there
# means the saved state cannot be used.
RESUME_OPS = frozenset({"vm_start"})
# VM states that have a saved state to resume from.
SAVED_STATES = frozenset({"Saved", "FastSaved"})
# The cmdlets of the Hyper-V module: a missing object there is a VM, or a checkpoint.
HYPERV_COMMANDS = "Microsoft.HyperV.PowerShell.Commands."

_HRESULT_RE = re.compile(r"0x(8[0-9A-Fa-f]{7}|C[0-9A-Fa-f]{7})\b")


@dataclass(frozen=True)
class SessionRights:
    """What a session learnt of its rights when it started (None: not said)."""

    elevated: bool | None = None
    hyperv_admin: bool | None = None  # member of Hyper-V Administrators (S-1-5-32-578)

    @property
    def lacking(self) -> bool:
        """Known to be neither elevated nor a Hyper-V administrator."""
        return self.elevated is False and self.hyperv_admin is False


@dataclass
class ErrorRecord:
    """The parts of a PowerShell ErrorRecord the dispatcher sends back.

    `rights` is not part of the record: it is what the session the record came from knew
    of its rights, set by that session, so that mapping it needs no other argument.
    """

    message: str
    fqid: str = ""
    category: str = ""
    exception_type: str = ""
    hresults: list[int] = field(default_factory=list)
    target: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    rights: SessionRights | None = None

    @classmethod
    def from_json(cls, data: Any) -> ErrorRecord:
        if not isinstance(data, dict):
            return cls(message=str(data)[:2000])
        hresults: list[int] = []
        for value in data.get("hresults") or []:
            number = _hresult(value)
            if number is not None:
                hresults.append(number)
        # Error texts can carry what a guest or another user named (a VM, a file): bounded.
        message = bounded(data.get("message") or "PowerShell reported an error without a message")
        for match in _HRESULT_RE.finditer(message):
            hresults.append(int(match.group(1), 16))
        known = {"message", "fqid", "category", "type", "hresults", "target"}
        return cls(
            message=message,
            fqid=bounded(data.get("fqid") or "", MAX_NAME_CHARS),
            category=bounded(data.get("category") or "", MAX_NAME_CHARS),
            exception_type=bounded(data.get("type") or "", MAX_NAME_CHARS),
            hresults=hresults[:16],
            target=bounded(data.get("target") or "", MAX_NAME_CHARS),
            extra={k: v for k, v in data.items() if k not in known},
        )

    @property
    def error_id(self) -> str:
        """The id before the first comma of the FullyQualifiedErrorId."""
        return self.fqid.split(",", 1)[0].strip()

    @property
    def cmdlet(self) -> str:
        """The cmdlet's class after the first comma of the FullyQualifiedErrorId, if any."""
        return self.fqid.split(",", 1)[1].strip() if "," in self.fqid else ""

    @property
    def vm_state(self) -> str | None:
        """The VM's state before the call (`vmState`), by name; None when not sent."""
        value = self.extra.get("vmState")
        if value is None or value == "":
            return None
        return enum_name(value, VM_STATE_NAMES)

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


def _by_hresult(record: ErrorRecord, op: str) -> type[BackendError] | None:
    """The class the first meaningful HRESULT gives (chain outermost first, then the text)."""
    for hresult in record.hresults:
        if hresult in {E_OUTOFMEMORY, ERROR_NOT_ENOUGH_MEMORY, ERROR_NO_SYSTEM_RESOURCES}:
            return OutOfMemory
        if hresult == E_ACCESSDENIED:
            return PermissionDenied
        if hresult in {ERROR_FILE_EXISTS, ERROR_ALREADY_EXISTS}:
            return HostObjectExists
        if hresult in {ERROR_SHARING_VIOLATION, ERROR_LOCK_VIOLATION}:
            return FileInUse
        if op in RESUME_OPS and hresult == ERROR_FILE_CORRUPT:
            return SavedStateCorrupt
        if op in RESUME_OPS and hresult == ERROR_INVALID_DATA:
            # Invalid data from the firmware: the saved state only when there was one.
            state = record.vm_state
            if state is None:
                continue  # not known: this HRESULT alone says nothing specific
            return SavedStateCorrupt if state in SAVED_STATES else VMBroken
    return None


def _not_found(record: ErrorRecord) -> type[BackendError]:
    """A cmdlet's ObjectNotFound: about a checkpoint, a VM, or (other modules) a file."""
    cmdlet = record.cmdlet
    if not cmdlet.startswith(HYPERV_COMMANDS):
        return BackendError  # Get-VHD, New-VHD, Remove-Item...: a file, not a VM
    name = cmdlet[len(HYPERV_COMMANDS) :]
    if "Snapshot" in name or name.endswith("Checkpoint"):  # not CheckpointVM: that is a VM
        return CheckpointNotFound
    return VMNotFoundInHost


def _says_nothing(record: ErrorRecord) -> bool:
    """No id, category, exception type, HRESULT or WMI code that means something."""
    return (
        record.error_id in UNSPECIFIC_IDS
        and record.category in UNSPECIFIC_CATEGORIES
        and record.exception_type.rsplit(".", 1)[-1] in UNSPECIFIC_TYPES
        and record.wmi_code is None
        and all(h in UNSPECIFIC_HRESULTS for h in record.hresults)
    )


def classify(
    record: ErrorRecord, op: str, rights: SessionRights | None = None
) -> type[BackendError]:
    """The hvkube error class for a record raised by dispatcher operation `op`.

    `rights` (default: the record's own) only matter for a record that says nothing
    specific: from a session known to lack rights, that is a permission error (a
    parameterless Get-VM without rights fails that way, with only a localised message).
    """
    rights = rights if rights is not None else record.rights
    eid = record.error_id
    category = record.category
    etype = record.exception_type.rsplit(".", 1)[-1]

    if eid == "CommandNotFoundException" or etype == "CommandNotFoundException":
        return Unsupported
    if eid in _OWN_IDS:
        return _OWN_IDS[eid]
    by_hresult = _by_hresult(record, op)
    if by_hresult is not None:
        return by_hresult
    wmi = record.wmi_code
    if wmi is not None:
        return _WMI_CLASSES.get(wmi, BackendError)
    if eid == "OutOfMemory" or etype in {"OutOfMemoryException", "InsufficientMemoryException"}:
        return OutOfMemory
    if (
        category == "PermissionDenied"
        or eid in {"AccessDenied", "UnauthorizedAccess"}
        or etype in {"UnauthorizedAccessException", "SecurityException"}
    ):
        return PermissionDenied
    if eid == "NotSupported":
        return Unsupported
    if eid == "FileInUse":
        return FileInUse
    if eid == "InvalidState":
        return InvalidVMState
    if category == "ResourceExists":
        return HostObjectExists
    if category == "ObjectNotFound" or eid == "ObjectNotFound":
        return _not_found(record)
    # Get-VM -Id (or -Name) of a VM that does not exist: InvalidArgument / InvalidParameter.
    if eid == "InvalidParameter" and record.cmdlet == HYPERV_COMMANDS + "GetVM":
        return VMNotFoundInHost
    if rights is not None and rights.lacking and _says_nothing(record):
        return PermissionDenied
    return BackendError


def to_error(
    record: ErrorRecord, op: str, vm: str | None, rights: SessionRights | None = None
) -> BackendError:
    """The exception to raise, with the original message kept and a hint where one helps."""
    rights = rights if rights is not None else record.rights
    cls = classify(record, op, rights)
    message = record.message.strip()
    hint = None
    if cls is PermissionDenied and rights is not None and rights.lacking:
        hint = (
            "this session is not elevated and its user is not in 'Hyper-V Administrators': "
            + PERMISSION_HINT
        )
    elif cls is PermissionDenied:
        hint = PERMISSION_HINT
    elif cls is Unsupported and record.error_id == "CommandNotFoundException":
        hint = MODULE_HINT
    elif cls is OutOfMemory:
        hint = MEMORY_HINT
    elif cls is VMBroken:
        hint = BROKEN_VM_HINT
    elif cls is BackendError and record.wmi_code is not None:
        hint = _WMI_MEANING.get(record.wmi_code)
    if hint:
        message = f"{message} ({hint})"
    return cls(message, vm=vm, operation=op, raw=record.raw())

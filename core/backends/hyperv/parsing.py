"""Reading what the dispatcher (or Windows PowerShell 5.1 in general) sends back.

The dispatcher stringifies enums and dates itself, but the parsing here
tolerates the shapes Windows PowerShell 5.1 produces when that is forgotten
or a cmdlet changes: enums as integers, `\\/Date(ms)\\/` dates, a single object
where a list was expected, `null` for an empty list.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from core.errors import BackendError
from core.models import HostState, HostVM
from core.ownership import owner_of
from core.reported import MAX_NAME_CHARS, bounded, usable_ipv4

# Microsoft.HyperV.PowerShell.VMState values that are the same on every Windows
# build since 2016. Values above 32781 differ between versions and are kept raw.
VM_STATE_NAMES: dict[int, str] = {
    1: "Other",
    2: "Running",
    3: "Off",
    4: "Stopping",
    6: "Saved",
    9: "Paused",
    10: "Starting",
    11: "Reset",
    32773: "Saving",
    32776: "Pausing",
    32777: "Resuming",
    32779: "FastSaved",
    32780: "FastSaving",
    32781: "ForceShutdown",
}

# Microsoft.HyperV.PowerShell.VMHeartbeatStatus.
HEARTBEAT_NAMES: dict[int, str] = {
    0: "Unknown",
    1: "Disabled",
    2: "NoContact",
    3: "Error",
    4: "LostCommunication",
    5: "OkApplicationsUnknown",
    6: "OkApplicationsHealthy",
    7: "OkApplicationsCritical",
    8: "Paused",
}

_MS_DATE = re.compile(r"^\\?/Date\((-?\d+)([+-]\d{4})?\)\\?/$")


def as_list(value: Any) -> list[Any]:
    """A JSON value that should be a list: `null` is empty, a bare object is one item."""
    if value is None:
        return []
    if isinstance(value, list):
        return value
    if isinstance(value, dict) and set(value) == {"value", "Count"}:
        # Windows PowerShell 5.1 serialises some arrays as {"value": [...], "Count": n}.
        return as_list(value["value"])
    return [value]


def enum_name(value: Any, names: dict[int, str]) -> str:
    """An enum as its name: names pass through, known integers are translated.

    An integer that is not in the table is returned as its decimal text, so the
    caller maps it to an unknown state and keeps the raw value.
    """
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return names.get(value, str(value))
    if isinstance(value, str):
        text = value.strip()
        if text.lstrip("-").isdigit():
            return names.get(int(text), text)
        return text
    if isinstance(value, dict):
        # ConvertTo-Json of an enum wrapped in a PSObject: {"value": 2, "Value": "Running"}.
        for key in ("Value", "value", "Name", "name"):
            if key in value:
                return enum_name(value[key], names)
    return str(value)


def parse_date(value: Any) -> datetime | None:
    """Both date forms: Windows PowerShell 5.1's `/Date(ms)/` and ISO 8601 (PowerShell 7)."""
    if value is None or value == "":
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value / 1000.0, tz=UTC)
    if not isinstance(value, str):
        raise ValueError(f"not a date: {value!r}")
    text = value.strip()
    match = _MS_DATE.match(text)
    if match:
        stamp = datetime.fromtimestamp(int(match.group(1)) / 1000.0, tz=UTC)
        return stamp  # the offset suffix only says how to display it; the instant is UTC ms
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    # .NET writes 7 fractional digits; Python accepts at most 6.
    text = re.sub(r"(\.\d{6})\d+", r"\1", text)
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def parse_seconds(value: Any) -> float:
    """A duration: seconds as a number, a .NET TimeSpan object, or `hh:mm:ss` text."""
    if value is None or value == "":
        return 0.0
    if isinstance(value, bool):
        return 0.0
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, dict):
        if "TotalSeconds" in value:
            return float(value["TotalSeconds"])
        if "Ticks" in value:
            return float(value["Ticks"]) / 10_000_000
        return 0.0
    text = str(value).strip()
    match = re.fullmatch(r"(?:(\d+)\.)?(\d+):(\d\d):(\d\d)(?:\.(\d+))?", text)
    if match:
        days, hours, minutes, seconds, frac = match.groups()
        delta = timedelta(
            days=int(days or 0),
            hours=int(hours),
            minutes=int(minutes),
            seconds=int(seconds),
            microseconds=int((frac or "0")[:6].ljust(6, "0")),
        )
        return delta.total_seconds()
    return float(text)


def parse_int(value: Any, default: int = 0) -> int:
    if value is None or isinstance(value, bool):
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def parse_vm(item: dict[str, Any]) -> HostVM:
    """One VM record from the dispatcher's `vm_list` / `vm_get`. A record that is not one
    is the host's failure (BackendError), never a ValueError that escapes a step."""
    try:
        return _parse_vm(item)
    except (ValueError, TypeError, OverflowError) as exc:
        raise BackendError(f"the host reported {bounded(exc, 300)}") from None


def _parse_vm(item: dict[str, Any]) -> HostVM:
    if not isinstance(item, dict) or not isinstance(item.get("Name"), str):
        raise ValueError(bounded(f"not a VM record: {item!r}", 300))
    if not isinstance(item.get("Id"), str) or not item["Id"]:
        raise ValueError(bounded(f"a VM record without an Id: {item!r}", 300))
    raw_state = bounded(enum_name(item.get("State"), VM_STATE_NAMES), 64)
    memory_bytes = parse_int(item.get("MemoryAssigned")) or parse_int(item.get("MemoryStartup"))
    checkpoints = [
        bounded(c, MAX_NAME_CHARS) for c in as_list(item.get("Checkpoints")) if c is not None
    ]
    notes = item.get("Notes")
    return HostVM(
        name=bounded(item["Name"], MAX_NAME_CHARS),
        id=bounded(item["Id"], 64).lower(),
        owner=owner_of(notes if isinstance(notes, str) else None),
        state=HostState.from_name(raw_state),
        raw_state=raw_state,
        memory_mb=memory_bytes // (1024 * 1024),
        uptime_s=parse_seconds(item.get("UptimeSeconds", item.get("Uptime"))),
        checkpoints=sorted(checkpoints),
    )


@dataclass(frozen=True)
class Checkpoint:
    id: str
    name: str
    created: datetime | None


def parse_checkpoints(value: Any) -> list[Checkpoint]:
    """The `Items` of `checkpoint_list`, oldest first."""
    found = []
    for item in as_list(value):
        if not isinstance(item, dict) or not isinstance(item.get("Id"), str):
            raise BackendError(bounded(f"the host reported not a checkpoint record: {item!r}", 300))
        try:
            created = parse_date(item.get("CreationTime"))
        except (ValueError, OverflowError, OSError):
            created = None  # an unreadable date sorts first, as an unknown one does
        found.append(
            Checkpoint(
                id=bounded(item["Id"], 64),
                name=bounded(item.get("Name") or "", MAX_NAME_CHARS),
                created=created,
            )
        )
    oldest = datetime.min.replace(tzinfo=UTC)
    return sorted(found, key=lambda c: c.created or oldest)


def pick_ipv4(addresses: Any) -> str | None:
    """The first usable IPv4 address of a list that may mix IPv4 and IPv6 (link-local)."""
    for raw in as_list(addresses)[:64]:  # a guest may report any number of addresses
        found = usable_ipv4(raw)
        if found is not None:
            return found
    return None

"""Time in the store: rows hold naive UTC; everything else handles aware UTC datetimes.
These are the only conversions between the two."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def utcnow() -> datetime:
    """Now, as the store writes it: naive UTC."""
    return datetime.now(UTC).replace(tzinfo=None)


def as_utc(value: datetime | str | None) -> datetime | None:
    """A stored time (naive UTC, or its text) as an aware UTC datetime."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def as_stored(value: datetime | str) -> datetime:
    """Any time as the store compares it: naive UTC."""
    aware = as_utc(value)
    assert aware is not None
    return aware.astimezone(UTC).replace(tzinfo=None)


def db_value(value: Any) -> Any:
    """A statement parameter as the store keeps it: datetimes as naive UTC text."""
    if isinstance(value, datetime):
        return str(as_stored(value))
    return value

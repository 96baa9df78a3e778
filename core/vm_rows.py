"""A VM as `hvkube vm list` reads it: a plain row of the store's views (core.store.views)
with the VM model's fields, in its order, and the same JSON as the model's, without building
pydantic models (importing pydantic alone costs more CPU than starting Python does).
tests/test_cli_startup.py holds the two to the same fields and the same JSON."""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

from core.utc import as_utc


class VMRow(NamedTuple):
    name: str
    template: str
    pool: str | None
    state: str
    disk_path: str | None
    saved_state_path: str | None
    ip: str | None
    rdp_port: int
    memory_mb: int
    created_at: datetime | None
    last_resumed_at: datetime | None
    last_resume_ms: float | None
    agent_id: int | None
    holder: str | None
    error: str | None
    raw_state: str | None
    backend: str | None
    host: str | None
    host_id: str | None

    @classmethod
    def of(cls, row: tuple[Any, ...]) -> VMRow:
        """A row read with the columns COLUMNS, its times as aware UTC. (The numbers come
        back as the model has them: the columns' types make last_resume_ms a float.)"""
        vm = cls._make(row)
        return vm._replace(
            created_at=as_utc(vm.created_at), last_resumed_at=as_utc(vm.last_resumed_at)
        )

    def as_json(self) -> dict[str, Any]:
        """As the VM model's JSON: times in ISO 8601 with a Z."""
        return {
            key: json_time(value) if isinstance(value, datetime) else value
            for key, value in self._asdict().items()
        }


# The vm table's columns that make a VMRow, in its order.
COLUMNS: tuple[str, ...] = VMRow._fields


def json_time(value: datetime) -> str:
    """An aware UTC time as the models' JSON writes it: 2026-01-02T03:04:05.678901Z."""
    return value.isoformat().replace("+00:00", "Z")

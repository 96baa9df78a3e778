"""Hosts of a fleet: every statement about the host table, and the per-host counts of VMs.

A host's controller heartbeats by moving `expires_at` (its last heartbeat plus its lease)
forward; a host whose `expires_at` has passed is taken down by one conditional UPDATE, so of
several controllers that see it expire, one does the work.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from core.utc import utcnow

if TYPE_CHECKING:
    from core.store import Store

HOST_FIELDS = (
    "name",
    "draining",
    "down",
    "down_since",
    "heartbeat_at",
    "expires_at",
    "lease_s",
    "total_memory_mb",
    "free_memory_mb",
    "backend",
)


class Hosts:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.t = store.t

    def ensure(self, name: str, backend: str | None = None) -> None:
        """Register `name` (nothing changes when it is already known)."""
        self.t.Host.insert(name=name, backend=backend).on_conflict_ignore().execute()

    def exists(self, name: str) -> bool:
        return (
            self.store.fetch_one('SELECT "name" FROM "host" WHERE "name" = ?', (name,)) is not None
        )

    def names(self) -> list[str]:
        return [
            str(n) for (n,) in self.store.fetch_all('SELECT "name" FROM "host" ORDER BY "name"', ())
        ]

    def rows(self) -> list[dict[str, Any]]:
        """Every host as a dict of HOST_FIELDS, by name."""
        columns = ", ".join(f'"{f}"' for f in HOST_FIELDS)
        rows = self.store.fetch_all(f'SELECT {columns} FROM "host" ORDER BY "name"', ())
        return [dict(zip(HOST_FIELDS, row, strict=True)) for row in rows]

    def vm_counts(self) -> list[tuple[str, str, int]]:
        """(host, state, count) of every host's VMs."""
        rows = self.store.fetch_all(
            'SELECT "host", "state", COUNT(*) FROM "vm" GROUP BY "host", "state"', ()
        )
        return [(str(h), str(s), int(n)) for h, s, n in rows]

    def pool_counts(self, pool: str) -> dict[str, int]:
        """How many VMs of `pool` each host has."""
        rows = self.store.fetch_all(
            'SELECT "host", COUNT(*) FROM "vm" WHERE "pool" = ? GROUP BY "host"', (pool,)
        )
        return {str(h): int(n) for h, n in rows}

    def heartbeat(
        self,
        name: str,
        lease_s: float,
        total_mb: int | None,
        free_mb: int | None,
        backend: str | None,
    ) -> bool:
        """The host's controller is alive: up until now + `lease_s`. True when the host had
        been taken down meanwhile (its VMs are unknown until it reconciles them)."""
        now = utcnow()
        host = self.t.Host
        host.insert(name=name, backend=backend).on_conflict_ignore().execute()
        was_down = host.update(down=False).where((host.name == name) & host.down).execute()
        self.t.Host.update(
            heartbeat_at=now,
            expires_at=now + timedelta(seconds=lease_s),
            lease_s=lease_s,
            total_memory_mb=total_mb,
            free_memory_mb=free_mb,
            backend=backend,
            down=False,
            down_since=None,
        ).where(self.t.Host.name == name).execute()
        return int(was_down) == 1

    def stopped(self, name: str) -> None:
        """Its controller stopped cleanly: no heartbeat is expected (the VMs are fine)."""
        self.t.Host.update(expires_at=None).where(self.t.Host.name == name).execute()

    def expired(self, now: datetime) -> list[str]:
        """Hosts whose heartbeat stopped for longer than their lease, not yet taken down."""
        host = self.t.Host
        return [
            str(n)
            for (n,) in host.select(host.name)
            .where((host.down == False) & host.expires_at.is_null(False) & (host.expires_at < now))  # noqa: E712
            .tuples()
        ]

    def take_down(self, name: str, now: datetime) -> bool:
        """Mark `name` down, only if it is still up and its heartbeat still expired."""
        host = self.t.Host
        changed = (
            host.update(down=True, down_since=now)
            .where(
                (host.name == name)
                & (host.down == False)  # noqa: E712
                & host.expires_at.is_null(False)
                & (host.expires_at < now)
            )
            .execute()
        )
        return int(changed) == 1

    def set_draining(self, name: str, draining: bool) -> None:
        self.t.Host.update(draining=draining).where(self.t.Host.name == name).execute()

    def delete(self, name: str) -> None:
        self.t.Host.delete().where(self.t.Host.name == name).execute()

    def forget_vms(self, name: str) -> list[tuple[str, str | None]]:
        """Drop the rows of every VM of host `name` (rows only: nothing on a hypervisor):
        (name, pool) of each, by name."""
        rows = self.store.fetch_all(
            'DELETE FROM "vm" WHERE "host" = ? RETURNING "name", "pool"', (name,)
        )
        return sorted((str(vm), pool) for vm, pool in rows)

    def vm_count(self, name: str) -> int:
        row = self.store.fetch_one('SELECT COUNT(*) AS "n" FROM "vm" WHERE "host" = ?', (name,))
        return 0 if row is None else int(row["n"])

    def held_on(self, name: str, pool: str | None = None) -> int:
        """VMs held on host `name` (of `pool`, when given)."""
        text = 'SELECT COUNT(*) AS "n" FROM "vm" WHERE "host" = ? AND "holder" IS NOT NULL'
        params: tuple[Any, ...] = (name,)
        if pool is not None:
            text += ' AND "pool" = ?'
            params = (name, pool)
        row = self.store.fetch_one(text, params)
        return 0 if row is None else int(row["n"])

    def agents_on(self, name: str, statuses: tuple[str, ...]) -> list[tuple[int, str, str]]:
        """(id, status, on_host_down) of the agents in `statuses` that run on, or hold, a VM
        of host `name`."""
        marks = ", ".join("?" for _ in statuses)
        rows = self.store.fetch_all(
            f'SELECT "id", "status", "on_host_down" FROM "agent" WHERE "status" IN ({marks}) '
            'AND ("host" = ? OR "vm" IN (SELECT "name" FROM "vm" WHERE "host" = ?) '
            'OR "id" IN (SELECT "agent_id" FROM "vm" WHERE "host" = ? '
            'AND "agent_id" IS NOT NULL))',
            (*statuses, name, name, name),
        )
        return [(int(i), str(s), str(p)) for i, s, p in rows]

    def mark_vms_unknown(self, name: str, keep: tuple[str, ...], why: str) -> int:
        """Every VM of host `name` not in `keep` becomes unknown, held by nobody."""
        marks = ", ".join("?" for _ in keep)
        return self.store.execute(
            'UPDATE "vm" SET "state" = ?, "holder" = NULL, "agent_id" = NULL, "error" = ? '
            f'WHERE "host" = ? AND "state" NOT IN ({marks})',
            ("unknown", why, name, *keep),
        )

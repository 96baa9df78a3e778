"""Leases: at most one process acts as the controller of a database.

A lease is one row (name, holder, expires_at, data). Every change to it is one
conditional statement, so two processes can never both win:

- take: INSERT ... ON CONFLICT (name) DO UPDATE ... WHERE the row is ours or has
  expired; the statement changes one row only for the winner;
- take over from a holder known to be dead: UPDATE ... WHERE holder = that holder;
- renew: UPDATE ... WHERE holder = me (zero rows: the lease was lost);
- release: UPDATE ... SET expires_at = now WHERE holder = me (the row stays, so
  others can still read who ran last and when it stopped).

`data` carries what others want to show: the holder's process, when it last
ticked, and its counts (see core.controller.controller_status).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from core.owner import owner_alive
from core.store import Store
from core.utc import as_stored, as_utc, db_value, utcnow

CONTROLLER_LEASE = "controller"


def controller_lease(host: str) -> str:
    """The lease of the controller of `host`: one controller acts per host."""
    return f"{CONTROLLER_LEASE}:{host}"


@dataclass
class LeaseInfo:
    name: str
    holder: str
    expires_at: datetime  # aware UTC
    data: dict[str, Any]

    @property
    def expired(self) -> bool:
        return self.expires_at <= datetime.now(UTC)

    @property
    def owner(self) -> str | None:
        """The holding process as core.owner.process_owner names it, when recorded."""
        owner = self.data.get("owner")
        return owner if isinstance(owner, str) else None

    @property
    def alive(self) -> bool:
        """Unexpired and, when the holder runs on this machine, its process still exists."""
        return self.alive_for(None)

    def alive_for(self, host: str | None) -> bool:
        """Unexpired and, when the holder runs on `host` (the caller's), its process exists."""
        if self.expired:
            return False
        return owner_alive(self.owner, host) if self.owner else True


def _expiry(ttl_s: float) -> datetime:
    return utcnow() + timedelta(seconds=ttl_s)


def _changes(store: Store, query: Any) -> int:
    cursor = store.db.execute(query)
    return int(cursor.rowcount)


def try_take(
    store: Store, name: str, holder: str, ttl_s: float, data: dict[str, Any] | None = None
) -> bool:
    """Take the lease when it is free, expired or already ours. True when we hold it."""
    lease = store.t.Lease
    now = utcnow()
    expires = now + timedelta(seconds=ttl_s)
    query = lease.insert(name=name, holder=holder, expires_at=expires, data=data or {}).on_conflict(
        conflict_target=[lease.name],
        update={lease.holder: holder, lease.expires_at: expires, lease.data: data or {}},
        where=(lease.holder == holder) | (lease.expires_at < now),
    )
    with store.write():
        return _changes(store, query) == 1


def take_over(
    store: Store,
    name: str,
    holder: str,
    dead_holder: str,
    ttl_s: float,
    data: dict[str, Any] | None = None,
) -> bool:
    """Take the lease from `dead_holder` (checked dead by the caller) before it expires.

    Compare-and-swap on the holder: of several processes that saw the same dead
    holder, only the first one's UPDATE matches."""
    lease = store.t.Lease
    query = lease.update(holder=holder, expires_at=_expiry(ttl_s), data=data or {}).where(
        (lease.name == name) & (lease.holder == dead_holder)
    )
    with store.write():
        return _changes(store, query) == 1


def renew(
    store: Store, name: str, holder: str, ttl_s: float, data: dict[str, Any] | None = None
) -> bool:
    """Extend our lease. False when it is no longer ours (someone took it over)."""
    lease = store.t.Lease
    fields: dict[str, Any] = {"expires_at": _expiry(ttl_s)}
    if data is not None:
        fields["data"] = data
    query = lease.update(**fields).where((lease.name == name) & (lease.holder == holder))
    return _changes(store, query) == 1


def release(store: Store, name: str, holder: str, data: dict[str, Any] | None = None) -> bool:
    """Give the lease up at once (it expires now); the row stays for status displays."""
    lease = store.t.Lease
    fields: dict[str, Any] = {"expires_at": utcnow()}
    if data is not None:
        fields["data"] = data
    query = lease.update(**fields).where((lease.name == name) & (lease.holder == holder))
    return _changes(store, query) == 1


def read(store: Store, name: str) -> LeaseInfo | None:
    # Plain SQL: the dashboard reads the controller's lease at every refresh, and building
    # the peewee query cost more than the read.
    row = store.fetch_one(
        'SELECT "name", "holder", "expires_at", "data" FROM "lease" WHERE "name" = ?', (name,)
    )
    if row is None:
        return None
    expires = as_utc(row["expires_at"])
    assert expires is not None
    data = json.loads(row["data"]) if isinstance(row["data"], str) else row["data"]
    return LeaseInfo(
        name=row["name"],
        holder=row["holder"],
        expires_at=expires,
        data=data if isinstance(data, dict) else {},
    )


def acquire(
    store: Store,
    name: str,
    holder: str,
    ttl_s: float,
    data: dict[str, Any] | None = None,
    host: str | None = None,
) -> bool:
    """One attempt: take a free or expired lease, or one whose holder died on `host` (the
    caller's; default this machine)."""
    if try_take(store, name, holder, ttl_s, data):
        return True
    current = read(store, name)
    if current is None or current.alive_for(host) or current.holder == holder:
        return False
    return take_over(store, name, holder, current.holder, ttl_s, data)


def active_holder(
    store: Store, name: str = CONTROLLER_LEASE, host: str | None = None
) -> LeaseInfo | None:
    """The live holder of the lease (judged from `host`), or None when nobody holds it."""
    info = read(store, name)
    return info if info is not None and info.alive_for(host) else None


# -- the HTTP API's leases on VMs ----------------------------------------------------------
# Rows named "<prefix><lease id>" held by the lease id (or by the sweeper while it expires
# one); `data` says which pool and VM, and for how long a renewal runs.


@dataclass
class LeaseRow:
    name: str
    holder: str
    expires_at: datetime
    data: dict[str, Any]


# The API's lease rows are read and written on every acquire and release: plain SQL through
# the store's fast path (see Store.sql), not peewee queries built each time.


def lease_row(store: Store, name: str) -> LeaseRow | None:
    row = store.fetch_one(
        'SELECT "name", "holder", "expires_at", "data" FROM "lease" WHERE "name" = ?', (name,)
    )
    if row is None:
        return None
    data = json.loads(row["data"]) if isinstance(row["data"], str) else row["data"]
    return LeaseRow(row["name"], row["holder"], as_stored(row["expires_at"]), dict(data or {}))


def add_lease(store: Store, name: str, holder: str, expires_at: datetime, data: Any) -> None:
    store.execute(
        'INSERT INTO "lease" ("name", "holder", "expires_at", "data") VALUES (?, ?, ?, ?)',
        (name, holder, db_value(expires_at), json.dumps(data, sort_keys=True)),
    )


def set_lease(store: Store, name: str, holder: str, expires_at: datetime, data: Any) -> bool:
    """New expiry and data, only while `holder` still holds the row."""
    changed = store.execute(
        'UPDATE "lease" SET "expires_at" = ?, "data" = ? WHERE "name" = ? AND "holder" = ?',
        (db_value(expires_at), json.dumps(data, sort_keys=True), name, holder),
    )
    return changed == 1


def expire_lease_now(store: Store, name: str) -> None:
    store.execute(
        'UPDATE "lease" SET "expires_at" = ? WHERE "name" = ?', (db_value(utcnow()), name)
    )


def drop_lease(store: Store, name: str) -> None:
    store.execute('DELETE FROM "lease" WHERE "name" = ?', (name,))


def due_leases(store: Store, prefix: str, limit: int) -> list[str]:
    """Names of the leases with `prefix` past their expiry, soonest first."""
    lease = store.t.Lease
    rows = (
        lease.select(lease.name)
        .where(lease.name.startswith(prefix) & (lease.expires_at <= utcnow()))
        .order_by(lease.expires_at)
        .limit(limit)
        .tuples()
    )
    return [name for (name,) in rows]


def take_lease_to_expire(
    store: Store, name: str, seen_expiry: datetime, holder: str, until: datetime
) -> bool:
    """Claim an expired lease for the sweeper, only if nobody renewed or took it since."""
    lease = store.t.Lease
    changed = (
        lease.update(holder=holder, expires_at=until)
        .where((lease.name == name) & (lease.expires_at == seen_expiry))
        .execute()
    )
    return changed == 1


def vm_held_by(store: Store, holder: str) -> tuple[str, str | None] | None:
    """(name, pool) of the VM `holder` holds, if any."""
    row = store.fetch_one('SELECT "name", "pool" FROM "vm" WHERE "holder" = ? LIMIT 1', (holder,))
    return None if row is None else (row["name"], row["pool"])

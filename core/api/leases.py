"""API leases: a VM acquired over HTTP is held for a time that the client renews.

A lease is one row of the store's `lease` table, named `api:<lease id>`; the lease
id is also the `holder` that the engine records on the VM, so the VM of a lease
is always found from the VM table, even when the server stopped between claim
and answer. The row is written *before* the claim, so no VM is ever held by an
API lease that has no row (and so no expiry).

An expired lease is released by the pool's policy. Expiring is claimed with one
conditional UPDATE (the row's holder becomes `expiring`), so two servers on one
database never both release it, and a renew can never revive a lease being expired.
All methods block (database and backend calls): run them in a worker thread.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from core.api.errors import LeaseExpired
from core.api.schemas import Lease
from core.engine import Engine
from core.errors import Conflict, HvkubeError, NotFound, ReadOnlyMode
from core.store import leases as store_leases
from core.utc import as_stored, as_utc, utcnow

ROW_PREFIX = "api:"
ID_PREFIX = "api-"
EXPIRING = "expiring"
# After a sweeper claims an expired lease, another sweeper may retry it after this long.
RETRY_EXPIRY_S = 60.0


def _aware(value: datetime | str) -> datetime:
    aware = as_utc(value)
    assert aware is not None
    return aware


_naive = as_stored


def new_lease_id() -> str:
    return ID_PREFIX + secrets.token_hex(10)


def valid_lease_id(lease_id: str) -> bool:
    return (
        lease_id.startswith(ID_PREFIX)
        and len(lease_id) == len(ID_PREFIX) + 20
        and all(c in "0123456789abcdef" for c in lease_id[len(ID_PREFIX) :])
    )


@dataclass
class Expired:
    lease_id: str
    vm: str | None
    pool: str | None


class ApiLeases:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.store = engine.store

    def _row(self, lease_id: str) -> store_leases.LeaseRow:
        if not valid_lease_id(lease_id):
            raise NotFound(f"no lease {lease_id[:60]!r}; lease ids look like api-<20 hex digits>")
        row = store_leases.lease_row(self.store, ROW_PREFIX + lease_id)
        if row is None:
            raise NotFound(f"no lease {lease_id!r}; it was released or has expired")
        return row

    @staticmethod
    def _model(lease_id: str, row: store_leases.LeaseRow) -> Lease:
        data = row.data
        return Lease(
            lease_id=lease_id,
            vm_name=data.get("vm"),
            pool=data.get("pool"),
            expires_at=_aware(row.expires_at),
            lease_seconds=float(data.get("seconds", 0.0)),
        )

    def open(self, lease_id: str, pool: str, first_expiry_s: float) -> None:
        """Record the lease before any VM is claimed for it (the pool must exist)."""
        self.engine.get_pool(pool)
        if self.engine.readonly:
            raise ReadOnlyMode("read-only mode: refusing to acquire a VM; run without --readonly")
        store_leases.add_lease(
            self.store,
            ROW_PREFIX + lease_id,
            lease_id,
            utcnow() + timedelta(seconds=first_expiry_s),
            {"pool": pool, "vm": None, "seconds": 0.0},
        )

    def bind(self, lease_id: str, vm: str, pool: str, seconds: float) -> Lease:
        """The claim succeeded: the lease now names its VM and runs `seconds` from now."""
        store_leases.set_lease(
            self.store,
            ROW_PREFIX + lease_id,
            lease_id,
            utcnow() + timedelta(seconds=seconds),
            {"pool": pool, "vm": vm, "seconds": seconds},
        )
        return self.get(lease_id)

    def abandon(self, lease_id: str) -> None:
        """The acquire did not finish: drop the lease, or let the sweeper release its VM now."""
        if self.engine.readonly:
            return  # `open` refused: there is no lease row
        with self.store.write():
            if store_leases.vm_held_by(self.store, lease_id) is not None:
                store_leases.expire_lease_now(self.store, ROW_PREFIX + lease_id)
            else:
                store_leases.drop_lease(self.store, ROW_PREFIX + lease_id)

    def drop(self, lease_id: str) -> None:
        store_leases.drop_lease(self.store, ROW_PREFIX + lease_id)

    def get(self, lease_id: str) -> Lease:
        return self._model(lease_id, self._row(lease_id))

    def renew(self, lease_id: str, seconds: float | None) -> Lease:
        with self.store.write():
            row = self._row(lease_id)
            now = utcnow()
            if row.holder != lease_id or _naive(row.expires_at) <= now:
                raise LeaseExpired(
                    f"lease {lease_id} has expired; its VM is released by the pool's policy. "
                    "Acquire again"
                )
            data = dict(row.data)
            if seconds is not None:
                data["seconds"] = seconds
            length = float(data.get("seconds", 0.0))
            store_leases.set_lease(
                self.store, row.name, lease_id, now + timedelta(seconds=length), data
            )
        return self.get(lease_id)

    def due(self, limit: int = 100) -> list[str]:
        """Ids of API leases past their expiry (including claimed ones whose retry is due)."""
        names = store_leases.due_leases(self.store, ROW_PREFIX, limit)
        return [name[len(ROW_PREFIX) :] for name in names]

    def expire(self, lease_id: str) -> Expired | None:
        """Release the VM of an expired lease by pool policy. None when it is not ours to do."""
        name = ROW_PREFIX + lease_id
        with self.store.write():
            row = store_leases.lease_row(self.store, name)
            if row is None or _naive(row.expires_at) > utcnow():
                return None
            until = utcnow() + timedelta(seconds=RETRY_EXPIRY_S)
            if not store_leases.take_lease_to_expire(
                self.store, name, row.expires_at, EXPIRING, until
            ):
                return None
        started = time.perf_counter()
        held = store_leases.vm_held_by(self.store, lease_id)
        vm = held[0] if held is not None else None
        pool = held[1] if held is not None else row.data.get("pool")
        if vm is not None:
            try:
                self.engine.release(vm, holder=lease_id)
            except Conflict:
                if store_leases.vm_held_by(self.store, lease_id) is not None:
                    return None  # busy: another sweep retries after RETRY_EXPIRY_S
            except HvkubeError:
                pass  # the engine left the VM in ERROR with the reason; the lease is over
        self.engine.ledger.record_event("lease_expired", vm, pool, started)
        self.drop(lease_id)
        return Expired(lease_id, vm, pool)

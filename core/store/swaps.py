"""The conditional writes that carry the state machines: each is one UPDATE whose WHERE
names the state the caller saw, so it changes the row only if nobody moved it since
(design invariants 1 and 2). The ledger (VMs) and the agent queue decide; these write."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from core.utc import utcnow

if TYPE_CHECKING:
    from core.store import Store


def _marks(values: Iterable[Any]) -> str:
    return ", ".join("?" for _ in values)


class Swaps:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._where: dict[tuple[Any, ...], str] = {}

    # -- VMs -------------------------------------------------------------------------------

    def vm(
        self,
        name: str,
        values: dict[str, Any],
        *,
        not_in: Iterable[str] = (),
        states: Iterable[str] | None = None,
        holder: str | None = None,
        idle_only: bool = False,
    ) -> bool:
        """Write `values` to VM `name` only if its state is none of `not_in`, one of `states`
        (when given), it is held by `holder` (when given) and, with `idle_only`, by nobody."""
        not_in = tuple(not_in)
        wanted = None if states is None else tuple(states)
        params: list[Any] = [*not_in, *(wanted or ())]
        if holder is not None:
            params.append(holder)
        # The acquire path runs this a few times a cycle: the WHERE text is built once per shape.
        shape = (
            len(not_in),
            None if wanted is None else len(wanted),
            holder is not None,
            idle_only,
        )
        where = self._where.get(shape)
        if where is None:
            clauses: list[str] = []
            if not_in:
                clauses.append(f'"state" NOT IN ({_marks(not_in)})')
            if wanted is not None:
                clauses.append(f'"state" IN ({_marks(wanted)})')
            if holder is not None:
                clauses.append('"holder" = ?')
            if idle_only:
                clauses.append('"holder" IS NULL')
            where = self._where[shape] = " AND ".join(clauses)
        return self.store.update_vm(name, values, where, tuple(params)) == 1

    def claim_candidates(
        self,
        pool: str,
        order: tuple[str, ...],
        limit: int = 16,
        hosts: tuple[str, ...] | None = None,
        prefer: str | None = None,
    ) -> list[tuple[Any, ...]]:
        """Free, built VMs of the pool in `order` of states (the ready tiers, best first), on
        host `prefer` first among equals, on `hosts` when given, and never on a host that is
        down, past its heartbeat or draining: (name, state, template, rdp_port, host_id,
        host)."""
        whens = " ".join(f"WHEN ? THEN {i}" for i in range(len(order)))
        on_hosts = "" if hosts is None else f'AND "host" IN ({_marks(hosts)}) '
        preferred = "" if prefer is None else 'CASE WHEN "host" = ? THEN 0 ELSE 1 END, '
        return self.store.fetch_all(
            'SELECT "name", "state", "template", "rdp_port", "host_id", "host" FROM "vm" '
            f'WHERE "pool" = ? AND "holder" IS NULL AND "state" IN ({_marks(order)}) '
            f'AND "host_id" IS NOT NULL {on_hosts}'
            'AND "host" NOT IN (SELECT "name" FROM "host" WHERE "down" = ? OR "draining" = ? '
            'OR "expires_at" < ?) '
            f'ORDER BY CASE "state" {whens} ELSE {len(order)} END, {preferred}"name" LIMIT ?',
            (
                pool,
                *order,
                *(hosts or ()),
                True,
                True,
                str(utcnow()),
                *order,
                *(() if prefer is None else (prefer,)),
                limit,
            ),
        )

    # -- agents ----------------------------------------------------------------------------

    def agent(self, agent_id: int, values: dict[str, Any], statuses: Iterable[str]) -> bool:
        """Write `values` to the agent only if its status is one of `statuses`."""
        wanted = tuple(statuses)
        changed = self.store.update_agent(
            agent_id, values, f'"status" IN ({_marks(wanted)})', wanted
        )
        return changed == 1

    def take_agents(
        self, pool: str, status: str, to: str, limit: int, host: str | None = None
    ) -> list[tuple[Any, ...]]:
        """Move up to `limit` of the pool's oldest agents in `status` to `to` (taken by
        `host`), in one write transaction: (id, exec_command, input, timeout_s) of those
        moved."""
        store = self.store
        with store.write():
            rows = store.fetch_all(
                'SELECT "id", "exec_command", "input", "timeout_s" FROM "agent" '
                'WHERE "pool" = ? AND "status" = ? ORDER BY "id" LIMIT ?',
                (pool, status, limit),
            )
            ids = [int(row[0]) for row in rows]
            if ids:
                store.execute(
                    f'UPDATE "agent" SET "status" = ?, "wait_reason" = NULL, "host" = ? '
                    f'WHERE "status" = ? AND "id" IN ({_marks(ids)})',
                    (to, host, status, *ids),
                )
        return rows

    def wait_reason(self, pool: str, status: str, reason: str | None) -> None:
        self.store.execute(
            'UPDATE "agent" SET "wait_reason" = ? WHERE "pool" = ? AND "status" = ?',
            (reason, pool, status),
        )

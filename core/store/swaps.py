"""The conditional writes that carry the state machines: each is one UPDATE whose WHERE
names the state the caller saw, so it changes the row only if nobody moved it since
(design invariants 1 and 2). The ledger (VMs) and the agent queue decide; these write."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from core.utc import db_value, utcnow

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

    def claim(
        self,
        pool: str,
        order: tuple[str, ...],
        values: dict[str, Any],
        hosts: tuple[str, ...] | None = None,
        prefer: str | None = None,
    ) -> tuple[Any, ...] | None:
        """Write `values` to the first free, built VM of the pool in the first state of
        `order` (the ready tiers, best first) that has one, on host `prefer` first among
        equals, on `hosts` when given, and never on a host that is down, past its heartbeat
        or draining: (name, state before, template, rdp_port, host_id, host) of the VM
        claimed, or None.

        One conditional UPDATE whose sub-SELECT picks the VM (design invariant 1: never
        find-then-update). On PostgreSQL that row is locked by the statement and rows other
        claimers are taking are skipped, so concurrent claims take different VMs instead of
        queueing behind one."""
        store = self.store
        columns = ", ".join(f'"{column}" = ?' for column in values)
        on_hosts = "" if hosts is None else f'AND "host" IN ({_marks(hosts)}) '
        preferred = "" if prefer is None else 'CASE WHEN "host" = ? THEN 0 ELSE 1 END, '
        usable = (
            'AND "host" NOT IN (SELECT "name" FROM "host" WHERE "down" = ? OR "draining" = ? '
            'OR "expires_at" < ?) '
        )
        filters = (*(hosts or ()), True, True, str(utcnow()))
        tail = (*(() if prefer is None else (prefer,)),)
        params = tuple(map(db_value, values.values()))
        if store.postgres:
            # One statement for all tiers: PostgreSQL's RETURNING can name the row as it was.
            whens = " ".join(f"WHEN ? THEN {i}" for i in range(len(order)))
            rows = store.fetch_all(
                f'UPDATE "vm" SET {columns} FROM (SELECT "name" AS "picked", "state" AS "was" '
                'FROM "vm" WHERE "pool" = ? AND "holder" IS NULL AND "host_id" IS NOT NULL '
                f'AND "state" IN ({_marks(order)}) {on_hosts}{usable}'
                f'ORDER BY CASE "state" {whens} ELSE {len(order)} END, {preferred}"name" '
                f'LIMIT 1{store.lock_rows}) AS "free" WHERE "vm"."name" = "free"."picked" '
                'RETURNING "vm"."name", "free"."was", "vm"."template", "vm"."rdp_port", '
                '"vm"."host_id", "vm"."host"',
                (*params, pool, *order, *filters, *order, *tail),
            )
            return rows[0] if rows else None
        # SQLite's RETURNING shows only the new row: one statement per tier, whose WHERE
        # names the state the VM was in.
        text = (
            f'UPDATE "vm" SET {columns} WHERE "name" = (SELECT "name" FROM "vm" '
            'WHERE "pool" = ? AND "holder" IS NULL AND "state" = ? AND "host_id" IS NOT NULL '
            f'{on_hosts}{usable}ORDER BY {preferred}"name" LIMIT 1) '
            'AND "holder" IS NULL AND "state" = ? '
            'RETURNING "name", "template", "rdp_port", "host_id", "host"'
        )
        for state in order:
            rows = store.fetch_all(text, (*params, pool, state, *filters, *tail, state))
            if rows:
                name, template, rdp_port, host_id, host = rows[0]
                return name, state, template, rdp_port, host_id, host
        return None

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
        `host`), in one statement: (id, exec_command, input, timeout_s, exec_env) of those
        moved, oldest first."""
        store = self.store
        rows = store.fetch_all(
            'UPDATE "agent" SET "status" = ?, "wait_reason" = NULL, "host" = ? '
            'WHERE "status" = ? AND "id" IN (SELECT "id" FROM "agent" WHERE "pool" = ? '
            f'AND "status" = ? ORDER BY "id" LIMIT ?{store.lock_rows}) '
            'RETURNING "id", "exec_command", "input", "timeout_s", "exec_env"',
            (to, host, status, pool, status, limit),
        )
        return sorted(rows, key=lambda row: int(row[0]))

    def wait_reason(self, pool: str, status: str, reason: str | None) -> None:
        self.store.execute(
            'UPDATE "agent" SET "wait_reason" = ? WHERE "pool" = ? AND "status" = ?',
            (reason, pool, status),
        )

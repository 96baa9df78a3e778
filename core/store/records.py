"""VMs, agents and events as the engine reads them: every statement about those rows that
is not a state change (those are the ledger's and the agent queue's)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from core.models import VM, Agent, Event, Template

if TYPE_CHECKING:
    from core.store import Store


class Records:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.t = store.t

    # -- VMs -------------------------------------------------------------------------------

    def vm(self, name: str) -> VM | None:
        row = self.store.fetch_one('SELECT * FROM "vm" WHERE "name" = ?', (name,))
        return None if row is None else self.store.vm_model(row)

    def vms(
        self, pool: str | None = None, state: str | None = None, host: str | None = None
    ) -> list[VM]:
        vm = self.t.VM
        query = vm.select().order_by(vm.name)
        if pool is not None:
            query = query.where(vm.pool == pool)
        if host is not None:
            query = query.where(vm.host == host)
        if state is not None:
            query = query.where(vm.state == state)
        return [self.store.vm_model(r) for r in query]

    def held_vms(self, host: str) -> list[tuple[str, str, str | None]]:
        """(name, holder, hypervisor id) of every held VM on `host` (or on no host yet), by
        name: one cheap read."""
        return [
            (str(name), str(holder), host_id)
            for name, holder, host_id in self.store.fetch_all(
                'SELECT "name", "holder", "host_id" FROM "vm" WHERE "holder" IS NOT NULL '
                'AND ("host" = ? OR "host" IS NULL) ORDER BY "name"',
                (host,),
            )
        ]

    def vm_contacts(self, names: list[str]) -> dict[str, tuple[str | None, int, int | None]]:
        """Where to reach each named VM and whose it is: name -> (ip, rdp port, agent id)."""
        if len(names) == 1:
            one = self.store.fetch_one(
                'SELECT "ip", "rdp_port", "agent_id" FROM "vm" WHERE "name" = ?', (names[0],)
            )
            return {} if one is None else {names[0]: (one["ip"], one["rdp_port"], one["agent_id"])}
        vm = self.t.VM
        return {
            name: (ip, port, agent_id)
            for name, ip, port, agent_id in vm.select(vm.name, vm.ip, vm.rdp_port, vm.agent_id)
            .where(vm.name.in_(sorted(names)))
            .tuples()
        }

    def vm_to_release(self, name: str) -> tuple[VM, str | None, Template] | None:
        """VM `name`, its pool's release policy and its template, in one read (the release
        path needs all three; on a server each read is a round trip)."""
        store = self.store
        row = store.fetch_one(
            f'SELECT "vm".*, "pool"."release_policy" AS "pool_policy", {store.template_columns()} '
            'FROM "vm" JOIN "template" AS "t" ON "t"."name" = "vm"."template" '
            'LEFT JOIN "pool" ON "pool"."name" = "vm"."pool" WHERE "vm"."name" = ?',
            (name,),
        )
        if row is None:
            return None
        return store.vm_model(row), row["pool_policy"], store.template_from(row)

    def vm_host(self, name: str) -> str | None:
        row = self.store.fetch_one('SELECT "host" FROM "vm" WHERE "name" = ?', (name,))
        return None if row is None or row["host"] is None else str(row["host"])

    def vm_holder(self, name: str) -> tuple[int | None, str | None] | None:
        """(agent id, holder) of a VM, None when there is no such VM."""
        row = self.store.fetch_one(
            'SELECT "agent_id", "holder" FROM "vm" WHERE "name" = ?', (name,)
        )
        return None if row is None else (row["agent_id"], row["holder"])

    def vm_operation(self, name: str) -> tuple[str | None, str | None]:
        """(op_owner, op_kind): which process is changing the VM, and how."""
        row = self.store.fetch_one(
            'SELECT "op_owner", "op_kind" FROM "vm" WHERE "name" = ?', (name,)
        )
        return (None, None) if row is None else (row["op_owner"], row["op_kind"])

    def vm_with_host_id(self, host_id: str) -> str | None:
        row = self.store.fetch_one('SELECT "name" FROM "vm" WHERE "host_id" = ?', (host_id,))
        return None if row is None else str(row["name"])

    def vms_held_for_agents(
        self, host: str | None = None
    ) -> list[tuple[str, str, int, str, str | None]]:
        """(name, state, agent_id, holder, op_owner) of every VM held for an agent (on
        `host`, when given)."""
        vm = self.t.VM
        where = vm.agent_id.is_null(False) & vm.holder.is_null(False)
        if host is not None:
            where = where & (vm.host == host)
        return list(
            vm.select(vm.name, vm.state, vm.agent_id, vm.holder, vm.op_owner).where(where).tuples()
        )

    def operation_owners(self, states: list[str], host: str | None = None) -> set[str]:
        """The processes recorded as working on VMs in `states` (of `host`, when given)."""
        vm = self.t.VM
        where = vm.state.in_(states) & vm.op_owner.is_null(False)
        if host is not None:
            where = where & (vm.host == host)
        return {owner for (owner,) in vm.select(vm.op_owner).where(where).distinct().tuples()}

    def free_vms_by_state(
        self, states: tuple[str, ...], host: str | None = None
    ) -> dict[str, dict[str, int]]:
        """Per pool, how many VMs nobody holds are in each of `states` (on `host`)."""
        marks = ", ".join("?" for _ in states)
        on_host = "" if host is None else 'AND "host" = ? '
        rows = self.store.fetch_all(
            'SELECT "pool", "state", COUNT(*) FROM "vm" WHERE "holder" IS NULL '
            f'AND "state" IN ({marks}) {on_host}GROUP BY "pool", "state"',
            (*states, *(() if host is None else (host,))),
        )
        free: dict[str, dict[str, int]] = {}
        for pool, state, n in rows:
            free.setdefault(pool, {})[state] = int(n)
        return free

    # -- agents ----------------------------------------------------------------------------

    def agent_status(self, agent_id: int) -> str | None:
        row = self.store.fetch_one('SELECT "status" FROM "agent" WHERE "id" = ?', (agent_id,))
        return None if row is None else str(row["status"])

    def agents_by_pool(self, status: str) -> dict[str, int]:
        rows = self.store.fetch_all(
            'SELECT "pool", COUNT(*) FROM "agent" WHERE "status" = ? GROUP BY "pool"', (status,)
        )
        return {pool: int(n) for pool, n in rows}

    def unplaceable(self, status: str, pools: list[str], no_gpu: list[str]) -> dict[int, str]:
        """Agents in `status` that can never run: their pool is gone, or they need a GPU
        their pool's template lacks. Agent id -> why."""
        agent = self.t.Agent
        waiting = agent.status == status
        found = {
            agent_id: "its pool no longer exists"
            for (agent_id,) in agent.select(agent.id)
            .where(waiting & agent.pool.not_in(pools or [""]))
            .tuples()
        }
        if no_gpu:
            why = (
                "the agent needs a GPU but its pool's template has none; submit it to a "
                "pool of a GPU template"
            )
            for (agent_id,) in (
                agent.select(agent.id)
                .where(waiting & agent.requires_gpu & agent.pool.in_(no_gpu))
                .tuples()
            ):
                found.setdefault(agent_id, why)
        return found

    def add_agent(self, values: dict[str, Any]) -> Agent:
        return self.store.agent_model(self.t.Agent.create(**values))

    def agent(self, agent_id: int) -> Agent | None:
        row = self.store.fetch_one('SELECT * FROM "agent" WHERE "id" = ?', (agent_id,))
        return None if row is None else self.store.agent_model(row)

    def agents(self, status: str | None, pool: str | None, limit: int) -> list[Agent]:
        agent = self.t.Agent
        query = agent.select().order_by(agent.id.desc()).limit(limit)
        if status is not None:
            query = query.where(agent.status == status)
        if pool is not None:
            query = query.where(agent.pool == pool)
        return [self.store.agent_model(r) for r in query]

    # -- events ----------------------------------------------------------------------------

    def events_after(
        self, since: int | None, limit: int, vm: str | None, pool: str | None, kind: str | None
    ) -> list[Event]:
        """Events oldest first: the `limit` after id `since`, or the latest `limit`."""
        event = self.t.Event
        query = event.select()
        if vm is not None:
            query = query.where(event.vm == vm)
        if pool is not None:
            query = query.where(event.pool == pool)
        if kind is not None:
            query = query.where(event.kind == kind)
        if since is not None:
            rows = list(query.where(event.id > since).order_by(event.id).limit(limit))
        else:
            rows = list(query.order_by(event.id.desc()).limit(limit))[::-1]
        return [self.store.event_model(r) for r in rows]

    def events(
        self,
        vm: str | None,
        pool: str | None,
        limit: int,
        since_id: int | None,
        kind: str | None,
    ) -> list[Event]:
        event = self.t.Event
        query = event.select().order_by(event.id.desc()).limit(limit)
        if vm is not None:
            query = query.where(event.vm == vm)
        if pool is not None:
            query = query.where(event.pool == pool)
        if since_id is not None:
            query = query.where(event.id > since_id)
        if kind is not None:
            query = query.where(event.kind == kind)
        return [self.store.event_model(r) for r in query]

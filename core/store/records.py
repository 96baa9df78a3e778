"""VMs, agents and events as the engine reads them: every statement about those rows that
is not a state change (those are the ledger's and the agent queue's)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from core.models import VM, Agent, Event

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

    def vms(self, pool: str | None = None, state: str | None = None) -> list[VM]:
        vm = self.t.VM
        query = vm.select().order_by(vm.name)
        if pool is not None:
            query = query.where(vm.pool == pool)
        if state is not None:
            query = query.where(vm.state == state)
        return [self.store.vm_model(r) for r in query]

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

    def vm_holder(self, name: str) -> tuple[int | None, str | None] | None:
        """(agent id, holder) of a VM, None when there is no such VM."""
        row = self.store.fetch_one(
            'SELECT "agent_id", "holder" FROM "vm" WHERE "name" = ?', (name,)
        )
        return None if row is None else (row["agent_id"], row["holder"])

    # -- agents ----------------------------------------------------------------------------

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

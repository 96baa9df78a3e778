"""Templates and pools: what the store keeps of them, and every statement about them."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from core.models import ACTIVE_AGENT_STATUSES, Template, VMPool

if TYPE_CHECKING:
    from core.store import Store


class Catalog:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.t = store.t

    # -- templates -------------------------------------------------------------------------

    def add_template(self, values: dict[str, Any]) -> None:
        self.t.Template.create(**values)

    def template(self, name: str) -> Template | None:
        row = self.store.fetch_one('SELECT * FROM "template" WHERE "name" = ?', (name,))
        return None if row is None else self.store.template_model(row)

    def templates(self) -> list[Template]:
        query = self.t.Template.select().order_by(self.t.Template.name)
        return [self.store.template_model(r) for r in query]

    def template_users(self, name: str) -> tuple[list[str], int]:
        """The pools using a template, and how many VMs were made from it."""
        pools = [p.name for p in self.t.Pool.select().where(self.t.Pool.template == name)]
        return pools, self.t.VM.select().where(self.t.VM.template == name).count()

    def delete_template(self, name: str) -> None:
        self.t.Template.delete_by_id(name)

    def template_field(self, name: str, field: str) -> Any:
        """One column of a template ('mcp_endpoint'), None when there is none."""
        if field not in {"mcp_endpoint"}:
            raise ValueError(f"no template field {field!r} to read")
        row = self.store.fetch_one(f'SELECT "{field}" FROM "template" WHERE "name" = ?', (name,))
        return None if row is None else row[field]

    # -- pools -----------------------------------------------------------------------------

    def add_pool(self, values: dict[str, Any]) -> None:
        self.t.Pool.create(**values)

    def pool(self, name: str) -> VMPool | None:
        row = self.store.fetch_one('SELECT * FROM "pool" WHERE "name" = ?', (name,))
        return None if row is None else self.store.pool_model(row)

    def pools(self) -> list[VMPool]:
        return [self.store.pool_model(r) for r in self.t.Pool.select().order_by(self.t.Pool.name)]

    def update_pool(self, name: str, values: dict[str, Any]) -> None:
        self.t.Pool.update(**values).where(self.t.Pool.name == name).execute()

    def exec_env(self, name: str) -> list[str]:
        """The names of the controller's variables the pool's agents' commands get."""
        row = self.store.fetch_one('SELECT "exec_env" FROM "pool" WHERE "name" = ?', (name,))
        value = None if row is None else row["exec_env"]
        return [str(n) for n in json.loads(value)] if isinstance(value, str) else []

    def release_policy(self, name: str) -> str | None:
        row = self.store.fetch_one('SELECT "release_policy" FROM "pool" WHERE "name" = ?', (name,))
        return None if row is None else str(row["release_policy"])

    def active_agents(self, pool: str) -> int:
        agent = self.t.Agent
        return (
            agent.select()
            .where((agent.pool == pool) & agent.status.in_(sorted(ACTIVE_AGENT_STATUSES)))
            .count()
        )

    def delete_pool(self, name: str) -> None:
        self.t.Pool.delete_by_id(name)

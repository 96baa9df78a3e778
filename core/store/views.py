"""What the dashboard polls and the command line lists: plain row tuples, read
incrementally. VMs and agents carry a change mark (schema 6): after a first whole read, the
dashboard asks only for the rows changed since the mark it read at (`change_mark`, `changed`)
and learns of deletions from a count of them (`deletions`, schema 10). The dashboard turns these
rows into its views; the statements live here, with the rest of the store's SQL. They run on
the whole store or on a plain read-only SQLite connection (core.store.reading); the change
marks need the whole store."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from typing import Protocol

    from core.store.postgres import PostgresDialect
    from core.store.sqlite import SqliteDialect

    class RowSource(Protocol):
        """What the views read through: the store, or core.store.reading's connection."""

        def fetch_all(self, text: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]: ...


# Tables whose rows carry a change mark (schema 6), with the columns its index holds after
# the mark: a tick reads (id, status) of every changed agent from the index alone.
CHANGE_TRACKED: dict[str, tuple[str, ...]] = {
    "vm": ("row_change",),
    "agent": ("row_change", "status"),
}


def _columns(fields: tuple[str, ...]) -> str:
    return ", ".join(f'"{f}"' for f in fields)


class ViewRows:
    def __init__(self, store: RowSource) -> None:
        self.store = store

    def _all(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return self.store.fetch_all(sql, params)

    def _dialect(self) -> SqliteDialect | PostgresDialect:
        """The store's dialect: change marks are read the way each database keeps them."""
        dialect = getattr(self.store, "dialect", None)
        if dialect is None:
            raise TypeError("change marks are read through the whole store")
        return dialect

    def templates(self) -> list[tuple[Any, ...]]:
        """(name, disk_path, memory_mb, cpus, gpu, software, rdp_port) by name."""
        return self._all(
            'SELECT "name", "disk_path", "memory_mb", "cpus", "gpu", "software", '
            '"rdp_port" FROM "template" ORDER BY "name"'
        )

    def pools(self) -> list[tuple[Any, ...]]:
        """(name, template, desired, warm, hot, max_per_host, release_policy) by name."""
        return self._all(
            'SELECT "name", "template", "desired_count", "warm_count", "hot_count", '
            '"max_per_host", "release_policy" FROM "pool" ORDER BY "name"'
        )

    def change_mark(self) -> Any:
        """What the current read transaction sees, as a mark to pass to `changed` later."""
        return self._all(self._dialect().change_mark_sql())[0][0]

    def changed(self, table: str, fields: tuple[str, ...], mark: Any) -> list[tuple[Any, ...]]:
        """Rows of `table` ("vm" or "agent") inserted or updated since `mark` was taken."""
        if table not in CHANGE_TRACKED:
            raise ValueError(f"{table!r} carries no change marks")
        dialect = self._dialect()
        return self._all(
            f'SELECT {_columns(fields)} FROM "{table}" WHERE {dialect.changed_since_sql()}',
            dialect.changed_since_params(mark),
        )

    def deletions(self) -> dict[str, int]:
        """Per tracked table, a count that moves whenever rows of it are deleted (schema
        10): a reader compares it with the one it read before."""
        return {str(table): int(n) for table, n in self._all(self._dialect().delete_counts_sql())}

    def vm_names(self) -> set[str]:
        return {name for (name,) in self._all('SELECT "name" FROM "vm"')}

    def agent_statuses(self) -> list[tuple[Any, ...]]:
        """(id, status) of every agent."""
        return self._all('SELECT "id", "status" FROM "agent"')

    def vms(
        self,
        fields: tuple[str, ...],
        *,
        pool: str | None = None,
        state: str | None = None,
        host: str | None = None,
    ) -> list[tuple[Any, ...]]:
        """The VMs by name, only those of `pool`, in `state` and on `host` when given."""
        wanted = [
            (c, v) for c, v in (("pool", pool), ("state", state), ("host", host)) if v is not None
        ]
        where = " AND ".join(f'"{column}" = ?' for column, _ in wanted)
        return self._all(
            f'SELECT {_columns(fields)} FROM "vm"{" WHERE " + where if where else ""} '
            'ORDER BY "name"',
            tuple(value for _, value in wanted),
        )

    def vms_by_pool_host_state(self) -> list[tuple[Any, ...]]:
        """(pool, host, state, count): one pass gives the pools' and the hosts' counts."""
        return self._all(
            'SELECT "pool", "host", "state", COUNT(*) FROM "vm" GROUP BY "pool", "host", "state"'
        )

    def agents_by_status(self) -> list[tuple[Any, ...]]:
        return self._all('SELECT "status", COUNT(*) FROM "agent" GROUP BY "status"')

    def newest_agents(self, fields: tuple[str, ...], limit: int) -> list[tuple[Any, ...]]:
        return self._all(
            f'SELECT {_columns(fields)} FROM "agent" ORDER BY "id" DESC LIMIT ?', (limit,)
        )

    def newest_in(
        self, fields: tuple[str, ...], statuses: tuple[str, ...], limit: int
    ) -> list[tuple[Any, ...]]:
        """The newest `limit` agents in `statuses`, newest first. One statement per status,
        each walking the (status, id) index from its end: one IN (...) with ORDER BY would
        sort every match first."""
        rows: list[tuple[Any, ...]] = []
        for status in statuses:
            rows += self._all(
                f'SELECT {_columns(fields)} FROM "agent" WHERE "status" = ? '
                'ORDER BY "id" DESC LIMIT ?',
                (status, limit),
            )
        rows.sort(key=lambda row: row[0], reverse=True)
        return rows[:limit]

    def agents_with_ids(self, fields: tuple[str, ...], ids: list[int]) -> list[tuple[Any, ...]]:
        condition, params = self._dialect().one_of("id", ids)
        return self._all(f'SELECT {_columns(fields)} FROM "agent" WHERE {condition}', params)

    def event_count(self) -> int:
        rows = self._all('SELECT COUNT(*) FROM "event"', ())
        return int(rows[0][0]) if rows else 0

    def events_after(self, fields: tuple[str, ...], top: int, limit: int) -> list[tuple[Any, ...]]:
        return self._all(
            f'SELECT {_columns(fields)} FROM "event" WHERE "id" > ? ORDER BY "id" DESC LIMIT ?',
            (top, limit),
        )

"""What the dashboard polls and the command line lists: whole tables as plain row tuples,
read incrementally where rows never change once written. The dashboard turns these rows into
its views; the statements live here, with the rest of the store's SQL. They run on the
whole store or on a plain read-only SQLite connection (core.store.reading)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from typing import Protocol

    class RowSource(Protocol):
        """What the views read through: the store, or core.store.reading's connection."""

        def fetch_all(self, text: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]: ...


def _columns(fields: tuple[str, ...]) -> str:
    return ", ".join(f'"{f}"' for f in fields)


class ViewRows:
    def __init__(self, store: RowSource) -> None:
        self.store = store

    def _all(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return self.store.fetch_all(sql, params)

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

    def agents_in(
        self, fields: tuple[str, ...], statuses: tuple[str, ...], below: int, inclusive: bool
    ) -> list[tuple[Any, ...]]:
        """Agents in `statuses` with an id below (or up to) `below`, newest first."""
        marks = ", ".join("?" for _ in statuses)
        bound = "<=" if inclusive else "<"
        return self._all(
            f'SELECT {_columns(fields)} FROM "agent" WHERE "status" IN ({marks}) '
            f'AND "id" {bound} ? ORDER BY "id" DESC',
            (*statuses, below),
        )

    def agents_after(self, fields: tuple[str, ...], top: int) -> list[tuple[Any, ...]]:
        return self._all(f'SELECT {_columns(fields)} FROM "agent" WHERE "id" > ?', (top,))

    def agents_with_ids(self, fields: tuple[str, ...], ids: list[int]) -> list[tuple[Any, ...]]:
        marks = ", ".join("?" for _ in ids)
        return self._all(
            f'SELECT {_columns(fields)} FROM "agent" WHERE "id" IN ({marks})', tuple(ids)
        )

    def event_count(self) -> int:
        rows = self._all('SELECT COUNT(*) FROM "event"', ())
        return int(rows[0][0]) if rows else 0

    def events_after(self, fields: tuple[str, ...], top: int, limit: int) -> list[tuple[Any, ...]]:
        return self._all(
            f'SELECT {_columns(fields)} FROM "event" WHERE "id" > ? ORDER BY "id" DESC LIMIT ?',
            (top, limit),
        )

"""The shared store: one PostgreSQL database that several hosts use at once.

What SQLite gives by itself is built here the PostgreSQL way:
- `write()` (SQLite's BEGIN IMMEDIATE: one writing transaction at a time) takes a
  transaction-scoped advisory lock, so a block that reads, checks and writes is never
  interleaved with another such block; single conditional statements outside it need no
  lock (READ COMMITTED re-checks their WHERE on the row they wait for);
- `data_version()` (SQLite's PRAGMA data_version) is the sum of a few counter rows that a
  trigger on every table bumps in the writing transaction: visible exactly when the change
  is, and taken with SKIP LOCKED so that writers never wait for each other there;
- read-only is a read-only session (`default_transaction_read_only`);
- per-row change marks (schema 6): SQLite numbers changed rows in commit order; here a
  number taken at write time would not be (a transaction that took a lower one may commit
  later), so a row records the id of the transaction that last wrote it and a reader keeps
  the snapshot it read at: the rows changed since are those written by a transaction that
  snapshot did not see.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import peewee as pw

from core.errors import StoreUnavailable
from core.store.target import hide_password
from core.thread_close import CloseWithThreadMixin

# pg_advisory_xact_lock key of write() (the bytes of "hvkube"): one lock per database.
WRITE_LOCK_KEY = 0x68766B756265
CHANGE_TABLE = "hvkube_change"
_CHANGE_SLOTS = 16

_CHANGE_FUNCTION = f"""
CREATE OR REPLACE FUNCTION hvkube_count_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE taken integer;
BEGIN
    SELECT slot INTO taken FROM {CHANGE_TABLE} ORDER BY slot LIMIT 1 FOR UPDATE SKIP LOCKED;
    IF taken IS NULL THEN
        INSERT INTO {CHANGE_TABLE} (n) VALUES (1);
    ELSE
        UPDATE {CHANGE_TABLE} SET n = n + 1 WHERE slot = taken;
    END IF;
    RETURN NULL;
END $$
"""


class PostgresqlDatabase(CloseWithThreadMixin, pw.PostgresqlDatabase):
    """peewee's PostgreSQL database, each thread's connection closed when the thread ends."""


_ROW_CHANGE_FUNCTION = """
CREATE OR REPLACE FUNCTION hvkube_row_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.row_change := pg_current_xact_id();
    RETURN NEW;
END $$
"""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


class PostgresDialect:
    name = "postgresql"

    def __init__(self, url: str, readonly: bool, connect_timeout_s: float = 10.0) -> None:
        self.location = hide_password(url)
        self.readonly = readonly
        options = "-c default_transaction_read_only=on" if readonly else None
        params: dict[str, Any] = {"connect_timeout": max(1, int(connect_timeout_s))}
        if options:
            params["options"] = options
        self.db = PostgresqlDatabase(url, prefer_psycopg3=True, **params)

    def connect(self) -> None:
        try:
            self.db.connect(reuse_if_open=True)
        except pw.ImproperlyConfigured as exc:
            raise StoreUnavailable(
                f"cannot use PostgreSQL store {self.location}: {_first_line(exc)} "
                "(install it with: pip install 'hvkube[postgresql]')"
            ) from None
        except pw.PeeweeException as exc:
            raise StoreUnavailable(
                f"cannot connect to PostgreSQL store {self.location}: {_first_line(exc)}"
            ) from None

    def data_version(self) -> int:
        # The counter exists once the store is migrated, which opening it ensures.
        row = self.db.execute_sql(f"SELECT COALESCE(SUM(n), 0) FROM {CHANGE_TABLE}").fetchone()
        return int(row[0])

    @contextmanager
    def write(self) -> Iterator[None]:
        with self.db.atomic():
            self.db.execute_sql("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK_KEY,))
            yield

    @contextmanager
    def reading(self) -> Iterator[None]:
        """One snapshot for several reads (READ COMMITTED takes one per statement)."""
        with self.db.atomic(isolation_level="REPEATABLE READ"):
            yield

    def add_row_changes(self, tables: dict[str, tuple[str, ...]]) -> None:
        execute = self.db.execute_sql
        execute(_ROW_CHANGE_FUNCTION)
        for table, indexed in tables.items():
            columns = ", ".join(f'"{c}"' for c in indexed)
            execute(
                f'ALTER TABLE "{table}" ADD COLUMN IF NOT EXISTS "row_change" xid8 NOT NULL '
                "DEFAULT pg_current_xact_id()"
            )
            execute(f'CREATE INDEX IF NOT EXISTS "{table}_row_change" ON "{table}" ({columns})')
            if table == "agent":
                # The newest agents in a status, walked from the index's end (SQLite's index
                # on status holds the rowid, which is the id; PostgreSQL's does not).
                execute('CREATE INDEX IF NOT EXISTS "agent_status_id" ON "agent" ("status", "id")')
            execute(
                "CREATE OR REPLACE TRIGGER hvkube_row_change BEFORE INSERT OR UPDATE "
                f'ON "{table}" '
                "FOR EACH ROW EXECUTE FUNCTION hvkube_row_change()"
            )

    def change_mark_sql(self) -> str:
        """A SELECT giving the mark of what the current read transaction sees."""
        return "SELECT pg_current_snapshot()::text"

    def changed_since_sql(self) -> str:
        """A condition on a tracked table: written by a transaction the mark's snapshot did
        not see. Every such transaction is at or above the snapshot's xmin: the index range."""
        return (
            '"row_change" >= pg_snapshot_xmin(?::pg_snapshot) '
            'AND NOT pg_visible_in_snapshot("row_change", ?::pg_snapshot)'
        )

    def changed_since_params(self, mark: Any) -> tuple[Any, ...]:
        return (mark, mark)

    def after_migrate(self) -> None:
        """Count commits on every table (inside the migration's transaction)."""
        db = self.db
        db.execute_sql(
            f"CREATE TABLE IF NOT EXISTS {CHANGE_TABLE} "
            "(slot SERIAL PRIMARY KEY, n BIGINT NOT NULL DEFAULT 0)"
        )
        (count,) = db.execute_sql(f"SELECT COUNT(*) FROM {CHANGE_TABLE}").fetchone()
        for _ in range(_CHANGE_SLOTS - int(count)):
            db.execute_sql(f"INSERT INTO {CHANGE_TABLE} (n) VALUES (0)")
        db.execute_sql(_CHANGE_FUNCTION)
        for table in db.get_tables():
            if table == CHANGE_TABLE:
                continue
            db.execute_sql(
                "CREATE OR REPLACE TRIGGER hvkube_change AFTER INSERT OR UPDATE OR DELETE "
                f'ON "{table}" FOR EACH ROW EXECUTE FUNCTION hvkube_count_change()'
            )

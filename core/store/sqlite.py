"""The embedded store: one SQLite file in WAL mode.

Before anything is written to a file it is recognised: a new or empty file becomes a store;
an existing file must carry hvkube's marker (the `meta` table with a schema version), and
anything else is refused untouched. Read-only opens the file with SQLite's `mode=ro` (or
`immutable=1` while no writer has it open, so that not even SQLite's -wal and -shm files
are created) and never creates, migrates or changes it.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import peewee as pw

from core.errors import InvalidInput
from core.sqlite_ro import readonly_uri, wal_file
from core.thread_close import CloseWithThreadMixin


class SqliteDatabase(CloseWithThreadMixin, pw.SqliteDatabase):
    """peewee's SQLite database, each thread's connection closed when the thread ends."""


ROW_CHANGE_COUNTER = "row_change_counter"
DELETE_COUNTS = "row_delete_count"  # per tracked table: rows deleted (schema 10)


def _shown(path: Path) -> str:
    text = str(path)
    return text if len(text) <= 200 else text[:200] + "..."


def _unusable(path: Path, exc: OSError) -> InvalidInput:
    return InvalidInput(f"database path {_shown(path)!r} cannot be used: {exc.strerror or exc}")


def _kind(path: Path) -> str:
    """ "store", "sqlite" (another program's database) or "other" (not SQLite at all).

    Read through SQLite only, without writing a byte or creating its side files: a plain
    open() and close() of a database file that this process also has open through SQLite
    would drop SQLite's POSIX locks on it."""
    try:
        with closing(sqlite3.connect(readonly_uri(path), uri=True)) as conn:
            tables = {
                name
                for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            }
            if "meta" not in tables:
                return "sqlite"
            try:
                row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            except sqlite3.Error:  # a table named meta, not hvkube's
                return "sqlite"
            return "store" if row is not None else "sqlite"
    except sqlite3.DatabaseError as exc:
        if "not a database" in str(exc):
            return "other"
        raise InvalidInput(f"database path {_shown(path)!r} cannot be used: {exc}") from None


def check_file(path: Path, readonly: bool) -> bool:
    """Refuse a path that cannot hold a store, before anything is written. True when the
    file is already an hvkube store, False when it is new (absent or empty)."""
    text = str(path)
    if "\x00" in text or not text.strip():
        raise InvalidInput(f"database path {text!r} is not a usable file name")
    try:
        if path.is_dir():
            raise InvalidInput(f"database path {path} is a folder; give a file path")
        size = path.stat().st_size if path.exists() else 0
    except OSError as exc:  # too long, not a folder, no permission, ...
        raise _unusable(path, exc) from None
    if not size:
        if readonly:
            raise InvalidInput(
                f"database {_shown(path)} does not exist (or is empty) and read-only mode "
                "creates nothing; run once without --readonly to create it"
            )
        return False
    kind = _kind(path)
    if kind == "other":
        raise InvalidInput(
            f"database path {_shown(path)} is a file that is not an SQLite database; "
            "hvkube leaves it alone: give a new path or an hvkube store"
        )
    if kind == "sqlite":
        raise InvalidInput(
            f"database {_shown(path)} is an SQLite file but not an hvkube store (no hvkube "
            "meta table); hvkube leaves it alone: give a new path or an hvkube store"
        )
    return True


def create_file(path: Path) -> None:
    """Create the folder and the file readable by their owner only."""
    try:
        if not path.parent.exists():
            path.parent.mkdir(parents=True, mode=0o700)
        if not path.exists():
            os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
    except OSError as exc:
        raise _unusable(path, exc) from None


class SqliteDialect:
    """SQLite with WAL (readers never block the writer), a busy timeout so that writers
    queue instead of failing with "database is locked", and foreign keys."""

    name = "sqlite"

    def __init__(self, path: Path, busy_timeout_s: float, readonly: bool) -> None:
        self.path = path
        self.location = str(path)
        self.readonly = readonly
        in_memory = str(path) == ":memory:"
        if not in_memory:
            exists = check_file(path, readonly)
            if not exists:
                create_file(path)
        self._params: dict[str, Any] = {
            "timeout": busy_timeout_s,
            "check_same_thread": False,
            "pragmas": {"busy_timeout": int(busy_timeout_s * 1000), "query_only": 1},
        }
        if readonly and not in_memory:
            self._live = wal_file(path).exists()
            self.db = SqliteDatabase(readonly_uri(path, self._live), uri=True, **self._params)
        else:
            self._live = True
            self.db = SqliteDatabase(
                str(path),
                pragmas={
                    "journal_mode": "wal",
                    "busy_timeout": int(busy_timeout_s * 1000),
                    "foreign_keys": 1,
                    "synchronous": "normal",
                },
                timeout=busy_timeout_s,
                check_same_thread=False,
            )
        self._version_offset = 0

    def data_version(self) -> int:
        """Changes whenever another connection commits (PRAGMA data_version)."""
        if not self._live and wal_file(self.path).exists():
            # A writer opened the store since: follow it from now on (its -wal and -shm
            # files exist now, so reading live creates nothing).
            self._live = True
            self.db.close()
            self.db.init(readonly_uri(self.path, True), uri=True, **self._params)
            self._version_offset += 1 << 32
        version = int(self.db.execute_sql("PRAGMA data_version").fetchone()[0])
        return version + self._version_offset

    @contextmanager
    def write(self) -> Iterator[None]:
        # BEGIN IMMEDIATE takes the write lock up front: a deferred transaction that
        # reads and then writes can fail with SQLITE_BUSY under WAL, which the busy
        # timeout does not retry.
        with self.db.atomic("IMMEDIATE"):
            yield

    def after_migrate(self) -> None:
        """Nothing to add: SQLite counts commits itself (data_version)."""

    # -- per-row change marks (schema 6) -------------------------------------------------------
    # One counter row; every insert or update of a tracked row takes the next number. SQLite
    # has one writer at a time, so the numbers follow the order of the commits: a reader that
    # has seen everything up to n at one snapshot finds all that changed since in `> n`.

    def add_row_changes(self, tables: dict[str, tuple[str, ...]]) -> None:
        execute = self.db.execute_sql
        execute(
            f"CREATE TABLE IF NOT EXISTS {ROW_CHANGE_COUNTER} "
            "(id INTEGER PRIMARY KEY CHECK (id = 1), n INTEGER NOT NULL)"
        )
        execute(f"INSERT OR IGNORE INTO {ROW_CHANGE_COUNTER} (id, n) VALUES (1, 0)")
        for table, indexed in tables.items():
            columns = ", ".join(f'"{c}"' for c in indexed)
            if "row_change" not in {c.name for c in self.db.get_columns(table)}:
                execute(f'ALTER TABLE "{table}" ADD COLUMN "row_change" INTEGER NOT NULL DEFAULT 0')
            execute(f'CREATE INDEX IF NOT EXISTS "{table}_row_change" ON "{table}" ({columns})')
            mark = (
                f"UPDATE {ROW_CHANGE_COUNTER} SET n = n + 1; "
                f'UPDATE "{table}" SET "row_change" = (SELECT n FROM {ROW_CHANGE_COUNTER}) '
                "WHERE rowid = NEW.rowid;"
            )
            execute(
                f'CREATE TRIGGER IF NOT EXISTS "{table}_row_change_insert" '
                f'AFTER INSERT ON "{table}" BEGIN {mark} END'
            )
            # The WHEN stops the trigger's own UPDATE from firing it again, should recursive
            # triggers ever be switched on.
            execute(
                f'CREATE TRIGGER IF NOT EXISTS "{table}_row_change_update" '
                f'AFTER UPDATE ON "{table}" WHEN NEW."row_change" = OLD."row_change" '
                f"BEGIN {mark} END"
            )

    def add_delete_counts(self, tables: tuple[str, ...]) -> None:
        """A count of the rows deleted from each table, so that a reader learns of deletions
        without comparing row counts."""
        execute = self.db.execute_sql
        execute(
            f"CREATE TABLE IF NOT EXISTS {DELETE_COUNTS} "
            "(tbl TEXT PRIMARY KEY, n INTEGER NOT NULL DEFAULT 0)"
        )
        for table in tables:
            execute(f"INSERT OR IGNORE INTO {DELETE_COUNTS} (tbl, n) VALUES (?, 0)", (table,))
            execute(
                f'CREATE TRIGGER IF NOT EXISTS "{table}_row_delete" AFTER DELETE ON "{table}" '
                f"BEGIN UPDATE {DELETE_COUNTS} SET n = n + 1 WHERE tbl = '{table}'; END"
            )

    def delete_counts_sql(self) -> str:
        return f"SELECT tbl, n FROM {DELETE_COUNTS}"

    def change_mark_sql(self) -> str:
        """A SELECT giving the mark of what the current read transaction sees."""
        return f"SELECT n FROM {ROW_CHANGE_COUNTER}"

    def changed_since_sql(self) -> str:
        """A condition on a tracked table: the row changed after the mark (one parameter)."""
        return '"row_change" > ?'

    def one_of(self, column: str, values: list[Any]) -> tuple[str, tuple[Any, ...]]:
        """A condition: `column` is one of `values` (and its parameters)."""
        return f'"{column}" IN ({", ".join("?" for _ in values)})', tuple(values)

    def changed_since_params(self, mark: Any) -> tuple[Any, ...]:
        return (mark,)

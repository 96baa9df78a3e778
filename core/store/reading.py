"""Reading an SQLite store through sqlite3 alone, without peewee or the models: what the
command line's listings read, so that they start in a fraction of the time that opening the
whole store (and importing what it needs) takes.

Only a store that needs nothing done before it is read is opened this way: a file that
exists, is at this hvkube's schema and was made with the backend in use. Anything else (a
new file, an older or newer schema, another backend, a file that is not a store) gets None,
and the caller opens the whole store, which creates, migrates or refuses it as it always
does. The schema and backend are checked with one query.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from core.sqlite_ro import readonly_uri
from core.store import SCHEMA_VERSION


class SqliteRows:
    """A read-only connection with the one method the views (core.store.views) need."""

    postgres = False

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def fetch_all(self, text: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return self._conn.execute(text, params).fetchall()

    def close(self) -> None:
        self._conn.close()


def open_rows(path: Path, backend: str, readonly: bool) -> SqliteRows | None:
    """The store at `path` for reading, when it is ready to be read as it is; else None.

    It follows writers (`mode=ro`, which makes SQLite's -wal and -shm files if they are
    absent, as opening the whole store would); in read-only mode it creates nothing, as the
    whole store's read-only opening does (`immutable=1` while no writer has the file)."""
    try:
        if not path.stat().st_size:
            return None
    except (OSError, ValueError):  # absent, or not a usable path: the whole store says why
        return None
    try:
        uri = readonly_uri(path) if readonly else readonly_uri(path, live=True)
        conn = sqlite3.connect(uri, uri=True, timeout=30.0)
    except sqlite3.Error:
        return None
    try:
        meta = dict(
            conn.execute(
                'SELECT "key", "value" FROM "meta" WHERE "key" IN (?, ?)',
                ("schema_version", "backend"),
            ).fetchall()
        )
    except sqlite3.Error:  # no meta table, or not a database
        meta = {}
    if meta.get("schema_version") != str(SCHEMA_VERSION) or meta.get("backend") != backend:
        conn.close()
        return None
    return SqliteRows(conn)

"""Per-thread database connections closed when their thread ends.

The store and the simulated host give each thread its own connection, kept in a
`threading.local`. When the thread ends, that connection is not closed by itself: Python's
sqlite3 connection sits in a reference cycle (its statement cache), so only a full garbage
collection frees it, and until then its file descriptors, page cache and (PostgreSQL) server
backend stay. A long-running process whose threads come and go (provisioning's executors,
the API server's worker threads) piled them up. A `ClosedWithThread` kept in the same
thread-local is freed as soon as the thread ends and closes the connection then.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any


class ClosedWithThread:
    __slots__ = ("conn",)

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # already closed, or the interpreter is ending
            self.conn.close()


class CloseWithThreadMixin:
    """For a peewee database class: each thread's connection closed when the thread ends."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._closers = threading.local()

    def _connect(self) -> Any:
        conn = super()._connect()  # type: ignore[misc]
        self._closers.current = ClosedWithThread(conn)
        return conn

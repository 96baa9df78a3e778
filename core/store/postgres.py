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
- a statement the server refused for a serialization failure or a deadlock (`40001`,
  `40P01`), or that met a connection the server had closed, was not done: outside a
  transaction it is run again (after reconnecting), a bounded number of times. Inside a
  transaction, or when the connection broke while the server may have done it, it is not:
  the caller gets a one-line StoreInterrupted saying whether anything could have changed;
- per-row change marks (schema 6): SQLite numbers changed rows in commit order; here a
  number taken at write time would not be (a transaction that took a lower one may commit
  later), so a row records the id of the transaction that last wrote it and a reader keeps
  the snapshot it read at: the rows changed since are those written by a transaction that
  snapshot did not see.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

import peewee as pw

from core.errors import StoreRefused, StoreUnavailable
from core.store.target import hide_password
from core.thread_close import CloseWithThreadMixin

# pg_advisory_xact_lock key of write() (the bytes of "hvkube"): one lock per database.
WRITE_LOCK_KEY = 0x68766B756265
CHANGE_TABLE = "hvkube_change"
DELETE_COUNTS = "hvkube_delete_count"  # per tracked table: deleting transactions (schema 10)
_CHANGE_SLOTS = 16

# Once per writing transaction (schema 9): its changes become visible together, so one
# step of the counter says all of them. The trigger runs for every row written; a
# transaction-local setting remembers that the step was taken. Updating the counter row for
# every row instead made one transaction's n rows cost n^2 (each update of the row walks the
# versions the transaction made before), and two statements per row cost the acquire path
# a tenth of the server's work (schema 8 made it one).
_CHANGE_FUNCTION = f"""
CREATE OR REPLACE FUNCTION hvkube_count_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('hvkube.counted', true) IS DISTINCT FROM 'y' THEN
        PERFORM set_config('hvkube.counted', 'y', true);
        UPDATE {CHANGE_TABLE} SET n = n + 1 WHERE slot = (SELECT slot FROM {CHANGE_TABLE}
            ORDER BY slot LIMIT 1 FOR UPDATE SKIP LOCKED);
        IF NOT FOUND THEN
            INSERT INTO {CHANGE_TABLE} (n) VALUES (1);
        END IF;
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


# A step for each transaction that deleted rows of the table, guarded as the change counter
# is (a transaction deleting n rows updates the row once, not n times).
_DELETE_FUNCTION = f"""
CREATE OR REPLACE FUNCTION hvkube_count_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('hvkube.deleted_' || TG_TABLE_NAME, true) IS DISTINCT FROM 'y' THEN
        PERFORM set_config('hvkube.deleted_' || TG_TABLE_NAME, 'y', true);
        UPDATE {DELETE_COUNTS} SET n = n + 1 WHERE tbl = TG_TABLE_NAME;
    END IF;
    RETURN NULL;
END $$
"""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


# How many times a statement the server did not do is tried in all, and the first pause.
ATTEMPTS = 5
_FIRST_PAUSE_S = 0.02
# The server refused the statement and rolled its transaction back: doing it again is safe.
_REFUSED = {"40001": "a serialization failure", "40P01": "a deadlock"}
# The server ended the session before doing the statement (terminated, shutting down).
_ENDED = {"57P01", "57P02", "57P03"}


class StoreInterrupted(StoreUnavailable, pw.OperationalError):
    """A statement or transaction the PostgreSQL store did not finish. A peewee error too,
    so that code that treats a failed database call as one treats this one alike.
    `maybe_done`: the connection broke while the server may have made the change."""

    def __init__(self, message: str, *, maybe_done: bool = False) -> None:
        super().__init__(message)
        self.maybe_done = maybe_done


def _driver_error(exc: BaseException) -> BaseException:
    """The driver's exception behind a peewee one (which carries it as its first argument
    or as the exception it was raised while handling)."""
    first = exc.args[0] if exc.args else None
    for cause in (first, exc.__cause__, exc.__context__):
        if isinstance(cause, BaseException) and hasattr(cause, "sqlstate"):
            return cause
    return exc


def _failure(exc: BaseException) -> str | None:
    """ "refused" (rolled back), "ended" (the session ended before doing it), "lost" (the
    connection broke: done or not, nobody knows), or None for any other error."""
    cause = _driver_error(exc)
    state = getattr(cause, "sqlstate", None)
    if state in _REFUSED:
        return "refused"
    if state in _ENDED:
        return "ended"
    if isinstance(exc, pw.OperationalError) and state is None:
        return "lost"
    return None


# What the server says when it refuses the URL itself (libpq passes its words on, in the
# server's language: English unless lc_messages says otherwise). A server starting, stopping
# or full also answers "FATAL", but is down for now, not misnamed.
_REFUSED_LOGIN = (
    "does not exist",  # the database or the role
    "password authentication failed",
    "no password supplied",
    "no pg_hba.conf entry",
    "permission denied for database",
    "is not permitted to log in",
)


def _connect_error(location: str, exc: BaseException) -> StoreUnavailable:
    """A failed connection as one line: StoreRefused when the server turned the URL's
    database, user or password down (bad input), else StoreUnavailable (down, unreachable)."""
    line = _first_line(exc)
    text = f"cannot connect to PostgreSQL store {location}: {line}"
    if any(words in line for words in _REFUSED_LOGIN):
        return StoreRefused(f"{text}: check the database, user and password in the URL")
    return StoreUnavailable(text)


def _reads_only(sql: str) -> bool:
    return sql.lstrip()[:6].upper() == "SELECT" and "FOR UPDATE" not in sql.upper()


class RetryingDatabase(PostgresqlDatabase):
    """peewee's PostgreSQL database, with the retries and messages described above."""

    location = ""

    def _usable(self) -> bool:
        conn = self._state.conn  # type: ignore[attr-defined]
        return conn is None or not (conn.closed or conn.broken)

    def reopen(self) -> None:
        """A new connection in place of a broken one (never inside a transaction)."""
        with suppress(pw.PeeweeException):
            self.close()
        try:
            self.connect()
        except pw.PeeweeException as exc:
            raise _connect_error(self.location, exc) from None

    def _interrupted(self, failure: str, exc: BaseException, maybe_done: bool) -> StoreInterrupted:
        cause = _first_line(_driver_error(exc))
        if failure == "refused":
            what = _REFUSED.get(str(getattr(_driver_error(exc), "sqlstate", "")), "a conflict")
            text = (
                f"the PostgreSQL store {self.location} rolled the change back ({what} with "
                "another process); nothing was changed: run the command again"
            )
        elif maybe_done:
            text = (
                f"lost the connection to the PostgreSQL store {self.location} ({cause}) while "
                "it made a change, which may or may not have been made: look (e.g. 'hvkube "
                "vm list') before running the command again"
            )
        else:
            text = (
                f"lost the connection to the PostgreSQL store {self.location} ({cause}); "
                "nothing was changed: run the command again"
            )
        return StoreInterrupted(text, maybe_done=maybe_done)

    def execute_sql(self, sql: str, params: Any = None) -> Any:
        pause = _FIRST_PAUSE_S
        for attempt in range(1, ATTEMPTS + 1):
            in_transaction = self.in_transaction()
            if not in_transaction and not self._usable():
                self.reopen()
            try:
                return super().execute_sql(sql, params)
            except pw.PeeweeException as exc:
                failure = _failure(exc)
                if failure is None:
                    raise
                if in_transaction:
                    # The server has rolled the transaction back (or lost it with the
                    # connection): nothing of it was made; the block cannot be run again.
                    raise self._interrupted(failure, exc, maybe_done=False) from None
                if failure == "lost" and not _reads_only(sql):
                    with suppress(StoreUnavailable):
                        self.reopen()
                    raise self._interrupted(failure, exc, maybe_done=True) from None
                if attempt == ATTEMPTS:
                    raise self._interrupted(failure, exc, maybe_done=False) from None
                if failure != "refused":
                    self.reopen()
                time.sleep(pause)
                pause *= 2
        raise AssertionError("unreachable")  # pragma: no cover

    def begin(self, *args: Any, **kwargs: Any) -> None:
        if not self._usable():
            self.reopen()
        try:
            super().begin(*args, **kwargs)
        except pw.PeeweeException as exc:
            failure = _failure(exc)
            if failure is None:
                raise
            self.reopen()  # nothing was begun: once more on a new connection
            super().begin(*args, **kwargs)

    def commit(self) -> None:
        try:
            super().commit()
        except pw.PeeweeException as exc:
            failure = _failure(exc)
            if failure is None:
                raise
            raise self._interrupted(failure, exc, maybe_done=failure != "refused") from None

    def rollback(self) -> None:
        try:
            super().rollback()
        except pw.PeeweeException:
            if self._usable():
                raise
            # The connection is gone, and the server drops its transaction with it.


class PostgresDialect:
    name = "postgresql"

    def __init__(self, url: str, readonly: bool, connect_timeout_s: float = 10.0) -> None:
        self.location = hide_password(url)
        self.readonly = readonly
        options = "-c default_transaction_read_only=on" if readonly else None
        params: dict[str, Any] = {"connect_timeout": max(1, int(connect_timeout_s))}
        if options:
            params["options"] = options
        self.db = RetryingDatabase(url, prefer_psycopg3=True, **params)
        self.db.location = self.location

    def connect(self) -> None:
        try:
            self.db.connect(reuse_if_open=True)
        except pw.ImproperlyConfigured as exc:
            raise StoreUnavailable(
                f"cannot use PostgreSQL store {self.location}: {_first_line(exc)} "
                "(install it with: pip install 'hvkube[postgresql]')"
            ) from None
        except pw.PeeweeException as exc:
            raise _connect_error(self.location, exc) from None

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

    def add_delete_counts(self, tables: tuple[str, ...]) -> None:
        """A count of the transactions that deleted rows of each table, so that a reader
        learns of deletions without comparing row counts."""
        execute = self.db.execute_sql
        execute(
            f"CREATE TABLE IF NOT EXISTS {DELETE_COUNTS} "
            "(tbl TEXT PRIMARY KEY, n BIGINT NOT NULL DEFAULT 0)"
        )
        execute(_DELETE_FUNCTION)
        for table in tables:
            execute(
                f"INSERT INTO {DELETE_COUNTS} (tbl, n) VALUES (%s, 0) ON CONFLICT DO NOTHING",
                (table,),
            )
            execute(
                f'CREATE OR REPLACE TRIGGER hvkube_row_delete AFTER DELETE ON "{table}" '
                "FOR EACH ROW EXECUTE FUNCTION hvkube_count_delete()"
            )
            # TRUNCATE fires no row trigger (an operator's way to empty a table).
            execute(
                f'CREATE OR REPLACE TRIGGER hvkube_truncate AFTER TRUNCATE ON "{table}" '
                "FOR EACH STATEMENT EXECUTE FUNCTION hvkube_count_delete()"
            )

    def delete_counts_sql(self) -> str:
        return f"SELECT tbl, n FROM {DELETE_COUNTS}"

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

    def one_of(self, column: str, values: list[Any]) -> tuple[str, tuple[Any, ...]]:
        """A condition: `column` is one of `values` (and its parameters). One array
        parameter, so that the statement's text is the same for any number of values: a
        prepared IN (...) of hundreds of parameters may be given a generic plan that reads
        the whole table."""
        return f'"{column}" = ANY(?)', (list(values),)

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

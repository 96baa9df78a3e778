"""The store: peewee tables over one SQLite file (the default) or a PostgreSQL database.

What differs between the two lives in `sqlite.py` and `postgres.py` (opening, write
transactions, change detection, read-only); the SQL the engine runs is plain peewee or
ANSI SQL that both accept. Models are built per Store (no global database binding), so one
process can hold several stores and every thread gets its own connection.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from core.errors import HvkubeError, ReadOnlyMode
from core.store.target import StoreTarget, parse_target
from core.utc import as_utc, db_value, utcnow

# Importing this package loads neither peewee nor the pydantic models (the command line's
# plain reads, core.store.reading, live here too): they are imported where they are used.
if TYPE_CHECKING:
    import peewee as pw

    from core.models import VM, Agent, Event, Template, VMPool
    from core.store.postgres import PostgresDialect
    from core.store.sqlite import SqliteDialect

SCHEMA_VERSION = 10


def _as_utc_required(value: datetime | str) -> datetime:
    result = as_utc(value)
    assert result is not None
    return result


def _json_list(value: Any) -> list[str] | None:
    if isinstance(value, str):
        value = json.loads(value)
    return None if value is None else [str(v) for v in value]


def __getattr__(name: str) -> Any:
    # StoreError: what a failed database call raises, for callers that must not import the
    # driver (loaded when asked for).
    if name == "StoreError":
        import peewee

        return peewee.PeeweeException
    # StoreInterrupted: a PostgreSQL statement or transaction the server did not finish.
    if name == "StoreInterrupted":
        from core.store.postgres import StoreInterrupted

        return StoreInterrupted
    raise AttributeError(f"module 'core.store' has no attribute {name!r}")


class Tables(NamedTuple):
    # Typed Any: the classes are built per database in make_tables, so a type checker
    # cannot see their fields.
    Meta: Any
    Template: Any
    Pool: Any
    VM: Any
    Agent: Any
    Event: Any
    Lease: Any
    Host: Any
    ApiToken: Any

    def all(self) -> list[Any]:
        return [
            self.Meta,
            self.Template,
            self.Pool,
            self.VM,
            self.Agent,
            self.Event,
            self.Lease,
            self.Host,
            self.ApiToken,
        ]


def make_tables(db: pw.Database) -> Tables:
    import peewee as pw

    class JSONField(pw.TextField):
        def db_value(self, value: Any) -> str | None:
            return None if value is None else json.dumps(value, sort_keys=True)

        def python_value(self, value: str | None) -> Any:
            return None if value is None else json.loads(value)

    class Base(pw.Model):
        class Meta:
            database = db
            legacy_table_names = False

    class MetaRow(Base):
        key = pw.CharField(primary_key=True, max_length=64)
        value = pw.TextField()

        class Meta:
            table_name = "meta"

    class TemplateRow(Base):
        name = pw.CharField(primary_key=True, max_length=64)
        disk_path = pw.TextField()
        memory_mb = pw.IntegerField()
        cpus = pw.IntegerField()
        gpu = pw.BooleanField(default=False)
        software = JSONField(default=list)
        rdp_port = pw.IntegerField(default=3389)
        mcp_endpoint = pw.TextField(null=True)
        probe = JSONField(null=True)
        created_at = pw.DateTimeField(default=utcnow)

        class Meta:
            table_name = "template"

    class PoolRow(Base):
        name = pw.CharField(primary_key=True, max_length=64)
        template = pw.ForeignKeyField(
            TemplateRow, column_name="template", field="name", on_delete="RESTRICT"
        )
        desired_count = pw.IntegerField()
        warm_count = pw.IntegerField(default=0)
        hot_count = pw.IntegerField(default=0)
        max_per_host = pw.IntegerField(null=True)
        release_policy = pw.CharField(max_length=16, default="reset")
        created_at = pw.DateTimeField(default=utcnow)
        # The hosts its VMs may live on (schema 4); null: every host.
        hosts = JSONField(null=True)
        # Names of the controller's variables its agents' commands get (schema 7).
        exec_env = JSONField(null=True)

        class Meta:
            table_name = "pool"

    class VMRow(Base):
        name = pw.CharField(primary_key=True, max_length=100)
        template = pw.ForeignKeyField(
            TemplateRow, column_name="template", field="name", on_delete="RESTRICT"
        )
        pool = pw.ForeignKeyField(
            PoolRow, column_name="pool", field="name", null=True, on_delete="SET NULL"
        )
        state = pw.CharField(max_length=24)
        disk_path = pw.TextField(null=True)
        saved_state_path = pw.TextField(null=True)
        ip = pw.CharField(max_length=64, null=True)
        rdp_port = pw.IntegerField(default=3389)
        memory_mb = pw.IntegerField(default=0)
        created_at = pw.DateTimeField(default=utcnow)
        last_resumed_at = pw.DateTimeField(null=True)
        last_resume_ms = pw.DoubleField(null=True)
        agent_id = pw.IntegerField(null=True)
        holder = pw.CharField(max_length=128, null=True)
        op_owner = pw.CharField(max_length=128, null=True)
        op_kind = pw.CharField(max_length=24, null=True)
        op_started_at = pw.DateTimeField(null=True)
        error = pw.TextField(null=True)
        raw_state = pw.CharField(max_length=64, null=True)
        # Where the VM lives (schema 3): backend, host, and the hypervisor's own id for it.
        backend = pw.CharField(max_length=16, null=True)
        host = pw.CharField(max_length=128, null=True)
        host_id = pw.CharField(max_length=64, null=True)

        class Meta:
            table_name = "vm"
            indexes = ((("pool", "state"), False), (("host", "state"), False))

    class AgentRow(Base):
        id = pw.AutoField()
        pool = pw.CharField(max_length=64, index=True)
        workflow = pw.CharField(max_length=128)
        input = JSONField(default=dict)
        timeout_s = pw.IntegerField(default=600)
        requires_gpu = pw.BooleanField(default=False)
        exec_command = pw.TextField(null=True)
        status = pw.CharField(max_length=16, index=True)
        vm = pw.CharField(max_length=100, null=True)
        created_at = pw.DateTimeField(default=utcnow)
        started_at = pw.DateTimeField(null=True)
        finished_at = pw.DateTimeField(null=True)
        result = JSONField(null=True)
        wait_reason = pw.TextField(null=True)
        # What happens when its VM's host goes down while it runs (schema 4): fail, requeue.
        on_host_down = pw.CharField(max_length=16, default="fail")
        # The host whose controller scheduled it and runs it (schema 4).
        host = pw.CharField(max_length=64, null=True)
        # Names of the controller's variables its command gets besides its pool's (schema 7).
        exec_env = JSONField(null=True)

        class Meta:
            table_name = "agent"

    class EventRow(Base):
        id = pw.AutoField()
        vm = pw.CharField(max_length=100, null=True, index=True)
        pool = pw.CharField(max_length=64, null=True)
        kind = pw.CharField(max_length=32)
        started_at = pw.DateTimeField(default=utcnow)
        duration_ms = pw.DoubleField(default=0.0)
        ok = pw.BooleanField(default=True)
        error = pw.TextField(null=True)

        class Meta:
            table_name = "event"
            indexes = ((("pool", "kind"), False),)

    class LeaseRow(Base):
        """Who may act as the controller (or hold an API lease) until `expires_at`."""

        name = pw.CharField(primary_key=True, max_length=128)
        holder = pw.CharField(max_length=128)
        expires_at = pw.DateTimeField()
        data = JSONField(null=True)

        class Meta:
            table_name = "lease"

    class HostRow(Base):
        """A host of the fleet (schema 4): its controller's heartbeat and memory figures."""

        name = pw.CharField(primary_key=True, max_length=64)
        draining = pw.BooleanField(default=False)
        down = pw.BooleanField(default=False)
        down_since = pw.DateTimeField(null=True)
        heartbeat_at = pw.DateTimeField(null=True)
        # heartbeat_at plus the lease: null while no controller runs there.
        expires_at = pw.DateTimeField(null=True)
        lease_s = pw.FloatField(null=True)
        total_memory_mb = pw.IntegerField(null=True)
        free_memory_mb = pw.IntegerField(null=True)
        backend = pw.CharField(max_length=16, null=True)
        created_at = pw.DateTimeField(default=utcnow)

        class Meta:
            table_name = "host"

    class ApiTokenRow(Base):
        """A scoped HTTP API token; only the SHA-256 of the secret is kept."""

        id = pw.CharField(primary_key=True, max_length=32)
        name = pw.CharField(max_length=64)
        scope = pw.CharField(max_length=16)
        secret_hash = pw.CharField(max_length=64)
        created_at = pw.DateTimeField(default=utcnow)
        revoked_at = pw.DateTimeField(null=True)

        class Meta:
            table_name = "api_token"

    tables = Tables(
        MetaRow, TemplateRow, PoolRow, VMRow, AgentRow, EventRow, LeaseRow, HostRow, ApiTokenRow
    )
    if isinstance(db, pw.PostgresqlDatabase):
        # Text compares and sorts byte by byte, as in SQLite, whatever the database's locale.
        for model in tables.all():
            for accessor in vars(model).values():
                field = getattr(accessor, "field", None)
                target = field.rel_field if isinstance(field, pw.ForeignKeyField) else field
                if field is not None and isinstance(target, pw.CharField | pw.TextField):
                    field.collation = '"C"'
    return tables


class _RowView:
    """Attribute access to a plain row dict, shaped like a peewee model instance."""

    def __init__(self, row: dict[str, Any], json_fields: tuple[str, ...] = ()) -> None:
        self._row = row
        self._json = json_fields

    def __getattr__(self, name: str) -> Any:
        row = self.__dict__["_row"]
        if name.endswith("_id") and name not in row:
            return row[name[:-3]]
        value = row[name]
        if name in self.__dict__["_json"] and isinstance(value, str):
            return json.loads(value)
        if name == "gpu":
            return bool(value)
        return value


MIGRATIONS: dict[int, Callable[[Store], None]] = {}


def migration(version: int) -> Callable[[Callable[[Store], None]], Callable[[Store], None]]:
    def register(fn: Callable[[Store], None]) -> Callable[[Store], None]:
        MIGRATIONS[version] = fn
        return fn

    return register


@migration(1)
def _create_base_tables(store: Store) -> None:
    t = store.t
    store.db.create_tables([t.Meta, t.Template, t.Pool, t.VM, t.Agent, t.Event])


@migration(2)
def _add_leases(store: Store) -> None:
    store.db.create_tables([store.t.Lease])


@migration(3)
def _add_vm_identity(store: Store) -> None:
    """Each VM row names its backend, host and hypervisor id; the store gets an id of its own
    for the ownership mark on the VMs it makes. Rows made before this have no hypervisor id:
    hvkube leaves those VMs alone until `hvkube reconcile` adopts them."""
    import uuid

    from playhouse.migrate import SchemaMigrator, migrate

    vm = store.t.VM
    columns = {c.name for c in store.db.get_columns("vm")}
    migrator = SchemaMigrator.from_database(store.db)
    migrate(
        *(
            migrator.add_column("vm", name, getattr(vm, name))
            for name in ("backend", "host", "host_id")
            if name not in columns
        )
    )
    store.t.Meta.insert(key="store_id", value=uuid.uuid4().hex).on_conflict_ignore().execute()


@migration(4)
def _add_hosts(store: Store) -> None:
    """A fleet: a host table, the hosts a pool may use, an agent's policy for a lost host.
    VM rows made before this all live on the machine that ran hvkube: it is their host."""
    import socket

    from playhouse.migrate import SchemaMigrator, migrate

    t = store.t
    store.db.create_tables([t.Host])
    migrator = SchemaMigrator.from_database(store.db)
    pool_columns = {c.name for c in store.db.get_columns("pool")}
    agent_columns = {c.name for c in store.db.get_columns("agent")}
    if "host" not in agent_columns:
        migrate(migrator.add_column("agent", "host", t.Agent.host))
    migrate(
        *(
            [migrator.add_column("pool", "hosts", t.Pool.hosts)]
            if "hosts" not in pool_columns
            else []
        ),
        *(
            [migrator.add_column("agent", "on_host_down", t.Agent.on_host_down)]
            if "on_host_down" not in agent_columns
            else []
        ),
    )
    if not any(ix.name == "vm_host_state" for ix in store.db.get_indexes("vm")):
        migrate(migrator.add_index("vm", ("host", "state"), False))
    t.VM.update(host=socket.gethostname()).where(t.VM.host.is_null()).execute()
    for (name,) in t.VM.select(t.VM.host).distinct().tuples():
        t.Host.insert(name=name).on_conflict_ignore().execute()


@migration(5)
def _add_api_tokens(store: Store) -> None:
    store.db.create_tables([store.t.ApiToken])


@migration(6)
def _add_row_changes(store: Store) -> None:
    """Every insert and update of a VM or an agent marks the row, so that a reader can ask
    for the rows changed since it last read (see the dialects for how)."""
    from core.store.views import CHANGE_TRACKED

    store.dialect.add_row_changes(CHANGE_TRACKED)


@migration(7)
def _add_exec_env(store: Store) -> None:
    """The names of the controller's variables a pool's or an agent's command gets."""
    from playhouse.migrate import SchemaMigrator, migrate

    migrator = SchemaMigrator.from_database(store.db)
    for table, model in (("pool", store.t.Pool), ("agent", store.t.Agent)):
        if "exec_env" not in {c.name for c in store.db.get_columns(table)}:
            migrate(migrator.add_column(table, "exec_env", model.exec_env))


@migration(8)
def _faster_change_counter(store: Store) -> None:
    """PostgreSQL: the change counter's trigger function in one statement, which
    after_migrate writes after every migration; SQLite counts changes itself."""


@migration(9)
def _change_counted_once_per_transaction(store: Store) -> None:
    """PostgreSQL: the change counter steps once per writing transaction, not per row
    (after_migrate writes the function); SQLite counts changes itself."""


@migration(10)
def _add_delete_counts(store: Store) -> None:
    """Deletions of VMs and agents are counted, so that a reader learns of them at its next
    read without counting the table's rows."""
    from core.store.views import CHANGE_TRACKED

    store.dialect.add_delete_counts(tuple(CHANGE_TRACKED))


class Store:
    """One database: tables, schema migrations, and the conversions to models.

    `location` is an SQLite file path or a postgresql:// URL. Read-only opens the database
    so that nothing can change it, and refuses one that is missing or needs migrating."""

    def __init__(
        self,
        location: str | os.PathLike[str] | StoreTarget,
        *,
        busy_timeout_s: float = 30.0,
        readonly: bool = False,
    ) -> None:
        from core.store.catalog import Catalog
        from core.store.hosts import Hosts
        from core.store.postgres import PostgresDialect
        from core.store.records import Records
        from core.store.sqlite import SqliteDialect
        from core.store.swaps import Swaps
        from core.store.views import ViewRows

        target = location if isinstance(location, StoreTarget) else parse_target(str(location))
        self.target = target
        self.readonly = readonly
        self.dialect: SqliteDialect | PostgresDialect
        if target.url is not None:
            self.dialect = PostgresDialect(target.url, readonly)
            self.path = Path(target.shown)
        else:
            assert target.path is not None
            self.path = target.path
            self.dialect = SqliteDialect(target.path, busy_timeout_s, readonly)
        self.location = self.dialect.location
        self.db = self.dialect.db
        self._sql_cache: dict[str, str] = {}
        self.t = make_tables(self.db)
        if isinstance(self.dialect, PostgresDialect):
            self.dialect.connect()
        else:
            self.db.connect(reuse_if_open=True)
        try:
            self.migrate()
        except BaseException:
            self.close()
            raise
        self.catalog = Catalog(self)
        self.records = Records(self)
        self.swaps = Swaps(self)
        self.views = ViewRows(self)
        self.hosts = Hosts(self)

    @property
    def postgres(self) -> bool:
        return self.dialect.name == "postgresql"

    @property
    def lock_rows(self) -> str:
        """Suffix of a sub-SELECT whose rows a claim takes: on PostgreSQL rows another
        transaction is claiming are skipped instead of waited for (SQLite has one writer)."""
        return " FOR UPDATE SKIP LOCKED" if self.postgres else ""

    def close(self) -> None:
        if not self.db.is_closed():
            self.db.close()

    # -- schema --------------------------------------------------------------------------------

    def schema_version(self) -> int:
        if not self.db.table_exists("meta"):
            return 0
        row = self.t.Meta.get_or_none(self.t.Meta.key == "schema_version")
        return int(row.value) if row else 0

    def migrate(self) -> None:
        current = self.schema_version()
        if current > SCHEMA_VERSION:
            raise HvkubeError(
                f"database {self.location} has schema version {current}, newer than this "
                f"hvkube ({SCHEMA_VERSION}); upgrade hvkube"
            )
        if current == SCHEMA_VERSION:
            return
        if self.readonly:
            raise ReadOnlyMode(
                f"database {self.location} has schema version {current} and this hvkube needs "
                f"{SCHEMA_VERSION}; read-only mode changes nothing: run any hvkube command "
                "once without --readonly to upgrade it"
            )
        with self.write():
            current = self.schema_version()  # another process may have migrated meanwhile
            for version in range(current + 1, SCHEMA_VERSION + 1):
                MIGRATIONS[version](self)
                self.t.Meta.insert(key="schema_version", value=str(version)).on_conflict(
                    conflict_target=[self.t.Meta.key], update={self.t.Meta.value: str(version)}
                ).execute()
            self.dialect.after_migrate()

    @contextmanager
    def write(self) -> Iterator[None]:
        """A write transaction that holds the write lock from its first statement."""
        if self.readonly:
            raise ReadOnlyMode(
                f"read-only mode: the store {self.location} is not written; run without --readonly"
            )
        with self.dialect.write():
            yield

    def meta(self, key: str) -> str | None:
        row = self.fetch_one('SELECT "value" FROM "meta" WHERE "key" = ?', (key,))
        return None if row is None else str(row["value"])

    def set_meta(self, key: str, value: str) -> None:
        self.t.Meta.insert(key=key, value=value).on_conflict(
            conflict_target=[self.t.Meta.key], update={self.t.Meta.value: value}
        ).execute()

    @property
    def store_id(self) -> str:
        """This store's own id: the ownership mark on every VM it makes names it."""
        value = self.meta("store_id")
        if value is None:  # pragma: no cover - migration 3 always writes it
            raise HvkubeError(f"database {self.location} has no store id; it is damaged")
        return value

    @contextmanager
    def reading(self) -> Iterator[None]:
        """One consistent view of the store across several reads (a read transaction)."""
        from core.store.postgres import PostgresDialect

        if isinstance(self.dialect, PostgresDialect):
            with self.dialect.reading():
                yield
        else:
            with self.db.atomic():
                yield

    def data_version(self) -> int:
        """Changes whenever another connection commits a change."""
        return self.dialect.data_version()

    # -- fast path ---------------------------------------------------------------------------
    # Building a peewee query costs 0.2-0.7 ms of Python on these machines, more than the
    # database work itself. The few statements on the acquire/release path are written once
    # here in plain ANSI SQL (double-quoted names, positional parameters) that SQLite and
    # PostgreSQL both accept, and only the parameter marker is adapted to the driver.

    def sql(self, text: str) -> str:
        cached = self._sql_cache.get(text)
        if cached is None:
            cached = text.replace("?", self.db.param)
            self._sql_cache[text] = cached
        return cached

    def template_columns(self, table: str = "t") -> str:
        """The template table's columns as `table`.column AS "t_column", for a statement that
        reads a template beside another row (see template_from)."""
        cached = self._sql_cache.get(f"\0template:{table}")
        if cached is None:
            import peewee as pw

            columns = [
                accessor.field.column_name
                for accessor in vars(self.t.Template).values()
                if isinstance(getattr(accessor, "field", None), pw.Field)
                and accessor.field.model is self.t.Template  # not another table's back-reference
            ]
            cached = ", ".join(f'"{table}"."{c}" AS "t_{c}"' for c in columns)
            self._sql_cache[f"\0template:{table}"] = cached
        return cached

    def template_from(self, row: dict[str, Any]) -> Template:
        """The template read beside another row through template_columns."""
        return self.template_model({k[2:]: v for k, v in row.items() if k.startswith("t_")})

    def fetch_one(self, text: str, params: tuple[Any, ...]) -> dict[str, Any] | None:
        cursor = self.db.execute_sql(self.sql(text), params)
        row = cursor.fetchone()
        if row is None:
            return None
        return dict(zip([c[0] for c in cursor.description], row, strict=True))

    def fetch_all(self, text: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        return list(self.db.execute_sql(self.sql(text), params).fetchall())

    def execute(self, text: str, params: tuple[Any, ...]) -> int:
        return int(self.db.execute_sql(self.sql(text), params).rowcount)

    def update_vm(
        self, name: str, values: dict[str, Any], where: str = "", params: tuple[Any, ...] = ()
    ) -> int:
        """UPDATE one VM row; `where` adds conditions (for conditional updates)."""
        columns = ", ".join(f'"{column}" = ?' for column in values)
        text = f'UPDATE "vm" SET {columns} WHERE "name" = ?' + (f" AND {where}" if where else "")
        return self.execute(text, (*map(db_value, values.values()), name, *params))

    def update_vm_with_event(
        self, name: str, values: dict[str, Any], event: tuple[str, str | None, float]
    ) -> int:
        """UPDATE one VM row and record the event (kind, pool, duration ms) of the step that
        brought it there, successful: on PostgreSQL in one statement (one round trip, one
        commit), on SQLite the event first, as record_event and update_vm would."""
        kind, pool, duration_ms = event
        if not self.postgres:
            self.insert_event(kind, name, pool, duration_ms, True, None)
            return self.update_vm(name, values)
        columns = ", ".join(f'"{column}" = ?' for column in values)
        return self.execute(
            'WITH "e" AS (INSERT INTO "event" ("vm", "pool", "kind", "started_at", '
            '"duration_ms", "ok", "error") VALUES (?, ?, ?, ?, ?, ?, ?)) '
            f'UPDATE "vm" SET {columns} WHERE "name" = ?',
            (
                name,
                pool,
                kind,
                db_value(utcnow()),
                duration_ms,
                True,
                None,
                *map(db_value, values.values()),
                name,
            ),
        )

    def insert_vm(self, values: dict[str, Any]) -> None:
        self.t.VM.insert(**values).execute()

    def delete_vm(self, name: str) -> None:
        self.t.VM.delete_by_id(name)

    def name_taken(self, table: str, name: str) -> str | None:
        """The name of the template or pool (`table`) equal to `name` ignoring case, if any."""
        import peewee as pw

        model = {"template": self.t.Template, "pool": self.t.Pool}[table]
        row = model.get_or_none(pw.fn.LOWER(model.name) == name.lower())
        return None if row is None else str(row.name)

    def vm_state_counts(self, pool: str) -> dict[str, int]:
        """How many of the pool's VMs are in each state, plus 'held'."""
        import peewee as pw

        vm = self.t.VM
        counts = {
            state: int(n)
            for state, n in vm.select(vm.state, pw.fn.COUNT(vm.name))
            .where(vm.pool == pool)
            .group_by(vm.state)
            .tuples()
        }
        counts["held"] = vm.select().where((vm.pool == pool) & vm.holder.is_null(False)).count()
        return counts

    def recent_resumes(self, pool: str, limit: int) -> list[float]:
        """The durations of the pool's last `limit` successful resumes, oldest first."""
        rows = self.fetch_all(
            'SELECT "duration_ms" FROM "event" WHERE "pool" = ? AND "kind" = ? AND "ok" = ? '
            'ORDER BY "id" DESC LIMIT ?',
            (pool, "resume", True, limit),
        )
        return [float(ms) for (ms,) in reversed(rows)]

    def activity_counts(self, statuses: list[str]) -> dict[str, int]:
        """Agents in each of `statuses`, VMs, VMs held and pools: the controller's status."""
        import peewee as pw

        agent = self.t.Agent
        counts = {
            status: int(n)
            for status, n in agent.select(agent.status, pw.fn.COUNT(agent.id))
            .where(agent.status.in_(statuses))
            .group_by(agent.status)
            .tuples()
        }
        counts["vms"] = self.t.VM.select().count()
        counts["vms_held"] = self.t.VM.select().where(self.t.VM.holder.is_null(False)).count()
        counts["pools"] = self.t.Pool.select().count()
        return counts

    def update_agent(
        self, agent_id: int, values: dict[str, Any], where: str = "", params: tuple[Any, ...] = ()
    ) -> int:
        """UPDATE one agent row; `where` adds conditions (for conditional updates)."""
        columns = ", ".join(f'"{column}" = ?' for column in values)
        text = f'UPDATE "agent" SET {columns} WHERE "id" = ?' + (f" AND {where}" if where else "")
        encoded = [
            json.dumps(v, sort_keys=True) if isinstance(v, dict | list) else db_value(v)
            for v in values.values()
        ]
        return self.execute(text, (*encoded, agent_id, *params))

    def insert_event(
        self,
        kind: str,
        vm: str | None,
        pool: str | None,
        duration_ms: float,
        ok: bool,
        error: str | None,
    ) -> None:
        self.execute(
            'INSERT INTO "event" ("vm", "pool", "kind", "started_at", "duration_ms", "ok", '
            '"error") VALUES (?, ?, ?, ?, ?, ?, ?)',
            (vm, pool, kind, db_value(utcnow()), duration_ms, ok, error),
        )

    def file_mode(self) -> int:
        return stat.S_IMODE(self.path.stat().st_mode)

    # -- conversions ---------------------------------------------------------------------------

    @staticmethod
    def template_model(row: Any) -> Template:
        from core.models import ReadinessProbe, Template

        if isinstance(row, dict):
            row = _RowView(row, json_fields=("software", "probe"))
        return Template(
            name=row.name,
            disk_path=row.disk_path,
            memory_mb=row.memory_mb,
            cpus=row.cpus,
            gpu=row.gpu,
            software=row.software or [],
            rdp_port=row.rdp_port,
            mcp_endpoint=row.mcp_endpoint,
            probe=ReadinessProbe(**(row.probe or {})),
            created_at=as_utc(row.created_at),
        )

    @staticmethod
    def pool_model(row: Any) -> VMPool:
        from core.models import ReleasePolicy, VMPool

        if isinstance(row, dict):
            row = _RowView(row)
        return VMPool(
            name=row.name,
            template=row.template_id,
            desired_count=row.desired_count,
            warm_count=row.warm_count,
            hot_count=row.hot_count,
            max_per_host=row.max_per_host,
            release_policy=ReleasePolicy(row.release_policy),
            created_at=as_utc(row.created_at),
            hosts=_json_list(row.hosts),
            exec_env=_json_list(row.exec_env) or [],
        )

    @staticmethod
    def vm_model(row: Any) -> VM:
        from core.models import VM, VMState

        if isinstance(row, dict):
            row = _RowView(row)
        return VM(
            name=row.name,
            template=row.template_id,
            pool=row.pool_id,
            state=VMState(row.state),
            disk_path=row.disk_path,
            saved_state_path=row.saved_state_path,
            ip=row.ip,
            rdp_port=row.rdp_port,
            memory_mb=row.memory_mb,
            created_at=as_utc(row.created_at),
            last_resumed_at=as_utc(row.last_resumed_at),
            last_resume_ms=row.last_resume_ms,
            agent_id=row.agent_id,
            holder=row.holder,
            error=row.error,
            raw_state=row.raw_state,
            backend=row.backend,
            host=row.host,
            host_id=row.host_id,
        )

    @staticmethod
    def agent_model(row: Any) -> Agent:
        from core.models import Agent, AgentResult, AgentStatus, Task

        if isinstance(row, dict):
            row = _RowView(row, json_fields=("input", "result", "exec_env"))
        return Agent(
            id=row.id,
            pool=row.pool,
            task=Task(
                workflow=row.workflow,
                input=row.input or {},
                timeout_s=row.timeout_s,
                requires_gpu=row.requires_gpu,
                exec_command=row.exec_command,
                on_host_down=row.on_host_down,
                exec_env=row.exec_env or [],
            ),
            status=AgentStatus(row.status),
            vm=row.vm,
            created_at=_as_utc_required(row.created_at),
            started_at=as_utc(row.started_at),
            finished_at=as_utc(row.finished_at),
            result=AgentResult(**row.result) if row.result else None,
            wait_reason=row.wait_reason,
            host=row.host,
        )

    @staticmethod
    def event_model(row: Any) -> Event:
        from core.models import Event

        return Event(
            id=row.id,
            vm=row.vm,
            pool=row.pool,
            kind=row.kind,
            started_at=_as_utc_required(row.started_at),
            duration_ms=row.duration_ms,
            ok=row.ok,
            error=row.error,
        )

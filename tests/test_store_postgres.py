"""The same store on SQLite and on a real PostgreSQL server: what a user sees from `--db`,
and the store's guarantees that differ in how each database gives them."""

from __future__ import annotations

import threading
from contextlib import suppress
from pathlib import Path

import pytest

from core import VMState, open_engine
from core.errors import AlreadyExists, NoVMAvailable
from core.store import Store
from tests.conftest import run_cli
from tests.pg_support import PgServer


def error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    return lines[0]


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://me@db.example:notaport/hvkube",
        "postgresql://me@db.example/",
        "mysql://me@db.example/hvkube",
    ],
)
def test_a_malformed_store_url_is_bad_input(url: str, tmp_path: Path) -> None:
    result = run_cli("--db", url, "vm", "list")
    assert result.returncode == 2
    assert error_line(result.stderr).startswith("hvkube: error: database URL")
    assert not (tmp_path / "data").exists()  # no simulated host made for it


def test_a_server_that_is_down_is_an_operation_failure(tmp_path: Path) -> None:
    # A unix socket folder with no server in it: connection refused at once.
    url = f"postgresql://postgres@/hvkube?host={tmp_path}"
    result = run_cli("--db", url, "template", "list")
    assert result.returncode == 1
    line = error_line(result.stderr)
    assert "cannot connect to PostgreSQL store" in line
    assert not (tmp_path / "data").exists()


def test_a_missing_database_or_user_is_bad_input(pg_server: PgServer, tmp_path: Path) -> None:
    """The server answered and turned the URL down: the URL is wrong (exit 2), not the
    server down (exit 1); nothing is made, there or here."""
    for url in (
        pg_server.url("no_such_db"),
        pg_server.url("postgres").replace("postgres@", "nobody@"),
    ):
        result = run_cli("--db", url, "template", "create", "--name", "t", "--vhdx", r"C:\T\t.vhdx")
        assert result.returncode == 2, result.stderr
        line = error_line(result.stderr)
        assert "cannot connect to PostgreSQL store" in line
        assert "does not exist" in line and "check the database, user and password" in line
        assert not (tmp_path / "data").exists()


def test_the_cli_works_on_a_postgresql_store(pg_url: str) -> None:
    assert run_cli("--db", pg_url, "template", "create", "--name", "t", "--vhdx",
                   r"C:\T\t.vhdx").returncode == 0  # fmt: skip
    result = run_cli("--db", pg_url, "--json", "template", "list")
    assert result.returncode == 0 and '"t"' in result.stdout
    env = {"HVKUBE_DB": pg_url}
    assert run_cli("pool", "create", "--name", "p", "--template", "t", "--count", "1",
                   env=env).returncode == 0  # fmt: skip
    shown = run_cli("--json", "pool", "list", env=env)
    assert shown.returncode == 0 and '"p"' in shown.stdout


def test_readonly_on_postgresql_changes_nothing(pg_url: str) -> None:
    with open_engine(db=pg_url, backend="sim", sim_scale=0) as engine:
        engine.create_template("t", r"C:\T\t.vhdx", memory_mb=1024)
    before = Store(pg_url)
    version = before.data_version()
    result = run_cli("--readonly", "--db", pg_url, "template", "delete", "t")
    assert result.returncode == 2 and "read-only" in result.stderr
    assert run_cli("--readonly", "--db", pg_url, "template", "list").returncode == 0
    assert before.data_version() == version
    assert before.catalog.template("t") is not None
    before.close()


def test_readonly_refuses_an_empty_postgresql_database(pg_url: str) -> None:
    result = run_cli("--readonly", "--db", pg_url, "vm", "list")
    assert result.returncode == 2
    assert "without --readonly" in error_line(result.stderr)
    store = Store(pg_url)  # nothing was created: this open makes the tables
    assert store.schema_version() > 0
    store.close()


def test_data_version_moves_exactly_when_another_connection_commits(store_url: str) -> None:
    writer = Store(store_url)
    reader = Store(store_url)
    try:
        first = reader.data_version()
        assert reader.data_version() == first
        with writer.write():
            writer.set_meta("probe", "1")
            assert reader.data_version() == first  # not committed yet
        second = reader.data_version()
        assert second != first
        assert reader.meta("probe") == "1"
        assert reader.data_version() == second
    finally:
        writer.close()
        reader.close()


def test_names_are_unique_ignoring_case(store_url: str) -> None:
    with open_engine(db=store_url, backend="sim", sim_scale=0) as engine:
        engine.create_template("Win11", r"C:\T\t.vhdx", memory_mb=1024)
        with pytest.raises(AlreadyExists):
            engine.create_template("win11", r"C:\T\u.vhdx", memory_mb=1024)


def test_text_sorts_byte_by_byte(store_url: str) -> None:
    with open_engine(db=store_url, backend="sim", sim_scale=0) as engine:
        for name in ("b-1", "B_2", "a.3", "A-4"):
            engine.create_template(name, r"C:\T\t.vhdx", memory_mb=1024)
        assert [t.name for t in engine.list_templates()] == ["A-4", "B_2", "a.3", "b-1"]


def test_concurrent_claims_from_threads_take_different_vms(store_url: str) -> None:
    with open_engine(db=store_url, backend="sim", sim_scale=0) as engine:
        engine.create_template("t", r"C:\T\t.vhdx", memory_mb=1024)
        engine.create_pool("p", "t", count=6, warm=6)
        assert not engine.provision_pool("p").failed
        got: list[str] = []
        lock = threading.Lock()

        def claim() -> None:
            claimed = engine.ledger.claim("p", holder=f"h-{threading.get_ident()}", agent_id=None)
            if claimed is not None:
                vm, template = claimed
                assert template.name == "t" and template.memory_mb == 1024
                with lock:
                    got.append(vm.name)

        threads = [threading.Thread(target=claim) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(got) == 6 and len(set(got)) == 6
        assert {vm.name for vm in engine.list_vms(pool="p") if vm.holder} == set(got)


def test_acquire_takes_hot_then_warm_then_cold_in_name_order(store_url: str) -> None:
    with open_engine(db=store_url, backend="sim", sim_scale=0) as engine:
        engine.create_template("t", r"C:\T\t.vhdx", memory_mb=1024)
        engine.create_pool("p", "t", count=4, warm=2, hot=1)
        assert not engine.provision_pool("p").failed
        taken = [engine.acquire("p") for _ in range(4)]
        assert [vm.from_state for vm in taken] == [
            VMState.PAUSED,
            VMState.SAVED,
            VMState.SAVED,
            VMState.OFF,
        ]
        saved = [vm.name for vm in taken if vm.from_state is VMState.SAVED]
        assert saved == sorted(saved)
        with pytest.raises(NoVMAvailable):
            engine.acquire("p")


def test_the_once_per_transaction_change_counter_reaches_an_existing_store(
    store_url: str,
) -> None:
    from core.store import MIGRATIONS, SCHEMA_VERSION

    (version,) = [
        v for v, fn in MIGRATIONS.items() if fn.__name__ == "_change_counted_once_per_transaction"
    ]
    store = Store(store_url)
    try:
        assert store.schema_version() == SCHEMA_VERSION
        store.set_meta("schema_version", str(version - 1))  # the later ones run again: no harm
        if store.postgres:
            # Schema 8's function: a step of the counter for every row written.
            old = (
                "CREATE OR REPLACE FUNCTION hvkube_count_change() RETURNS trigger "
                "LANGUAGE plpgsql AS $$ BEGIN UPDATE hvkube_change SET n = n + 1 WHERE slot = "
                "(SELECT slot FROM hvkube_change ORDER BY slot LIMIT 1 FOR UPDATE SKIP LOCKED); "
                "IF NOT FOUND THEN INSERT INTO hvkube_change (n) VALUES (1); END IF; "
                "RETURN NULL; END $$"
            )
            store.execute(old, ())
    finally:
        store.close()
    again = Store(store_url)
    try:
        assert again.schema_version() == SCHEMA_VERSION
        before = again.data_version()
        writer = Store(store_url)
        try:
            writer.hosts.ensure("h1")
        finally:
            writer.close()
        assert again.data_version() != before  # another connection's change is still seen
        if again.postgres:
            row = again.fetch_one(
                "SELECT prosrc FROM pg_proc WHERE proname = 'hvkube_count_change'", ()
            )
            assert row is not None and "hvkube.counted" in row["prosrc"]
    finally:
        again.close()


def test_a_transaction_of_many_rows_moves_data_version_once_it_commits(
    store_url: str,
) -> None:
    """The counter steps once per writing transaction; a step taken in a savepoint that
    rolled back is taken again by the transaction's next write, so it is never lost."""
    writer = Store(store_url)
    reader = Store(store_url)
    try:
        first = reader.data_version()
        with writer.write():
            for i in range(50):
                writer.set_meta(f"probe{i}", "1")
            assert reader.data_version() == first
        second = reader.data_version()
        assert second != first
        if reader.postgres:
            assert second == first + 1  # one step for the 50 rows
        with writer.write():
            with suppress(RuntimeError), writer.db.atomic():  # a savepoint
                writer.set_meta("undone", "1")
                raise RuntimeError("roll the savepoint back")
            writer.set_meta("kept", "1")
        third = reader.data_version()
        assert third != second
        assert reader.meta("undone") is None and reader.meta("kept") == "1"
        with writer.write():  # a transaction that writes nothing
            writer.meta("kept")
        assert reader.data_version() == third
    finally:
        writer.close()
        reader.close()

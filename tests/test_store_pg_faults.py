"""A real PostgreSQL server that ends a session, or refuses a statement for a deadlock: what
the store does again by itself, and the one-line error with nothing written where it cannot.

Sessions are ended with pg_terminate_backend and deadlocks made with a second connection,
as an operator or another process would."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest

from core import VMState, open_engine
from core.errors import HvkubeError
from core.store import Store, StoreInterrupted
from core.store.postgres import WRITE_LOCK_KEY
from tests.conftest import run_cli


def backend_pid(store: Store) -> int:
    row = store.fetch_one('SELECT pg_backend_pid() AS "pid"', ())
    assert row is not None
    return int(row["pid"])


def terminate(url: str, pid: int) -> None:
    with psycopg.connect(url, autocommit=True) as admin:
        ended = admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()
        assert ended == (True,)
        deadline = time.monotonic() + 10
        while admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone():
            assert time.monotonic() < deadline, "the session did not end"
            time.sleep(0.02)


def wait_until_blocked(url: str, text: str) -> int:
    """The pid of the session waiting on a lock in a statement containing `text`."""
    with psycopg.connect(url, autocommit=True) as admin:
        deadline = time.monotonic() + 20
        while True:
            row = admin.execute(
                "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND query LIKE %s AND pid <> pg_backend_pid()",
                (f"%{text}%",),
            ).fetchone()
            if row is not None:
                return int(row[0])
            assert time.monotonic() < deadline, f"nobody blocked on {text!r}"
            time.sleep(0.02)


def test_an_ended_session_is_reopened_and_acquire_and_release_go_through(pg_url: str) -> None:
    with open_engine(db=pg_url, backend="sim", sim_scale=0) as engine:
        engine.create_template("t", r"C:\T\t.vhdx", memory_mb=1024)
        engine.create_pool("p", "t", count=2, warm=2)
        assert not engine.provision_pool("p").failed

        terminate(pg_url, backend_pid(engine.store))
        got = engine.acquire("p")  # the claim meets the closed session, and is made again
        assert engine.get_vm(got.name).holder == got.holder

        terminate(pg_url, backend_pid(engine.store))
        engine.release(got.name)

        after = {vm.name: (vm.state, vm.holder) for vm in engine.list_vms()}
        assert after == {vm: (VMState.SAVED, None) for vm in after} and len(after) == 2
        kinds = [e.kind for e in engine.events(vm=got.name) if e.ok]
        assert kinds.count("resume") == 1 and kinds.count("release_reset") == 1


@contextmanager
def deadlock_partner(url: str, first: str, second: str) -> Iterator[threading.Thread]:
    """Another session that holds host row `first`, then (once this test's statement waits
    on it) asks for `second` and commits. Its deadlock check waits longer than ours, so the
    server breaks the deadlock by refusing our statement."""
    partner = psycopg.connect(url)
    partner.execute("SET deadlock_timeout = '10s'")
    partner.execute('UPDATE "host" SET "lease_s" = 1 WHERE "name" = %s', (first,))
    errors: list[BaseException] = []

    def then_second() -> None:
        try:
            wait_until_blocked(url, '"draining"')
            partner.execute('UPDATE "host" SET "lease_s" = 1 WHERE "name" = %s', (second,))
            partner.commit()
        except BaseException as exc:  # reported by the test below
            errors.append(exc)

    thread = threading.Thread(target=then_second)
    thread.start()
    try:
        yield thread
    finally:
        thread.join(30)
        partner.close()
        assert not errors, errors


def host_rows(store: Store) -> dict[str, tuple[Any, ...]]:
    return {
        name: (bool(draining), lease)
        for name, draining, lease in store.fetch_all(
            'SELECT "name", "draining", "lease_s" FROM "host" ORDER BY "name"', ()
        )
    }


def test_a_statement_refused_for_a_deadlock_is_made_again(pg_url: str) -> None:
    store = Store(pg_url)
    try:
        store.hosts.ensure("a")
        store.hosts.ensure("b")
        with deadlock_partner(pg_url, first="b", second="a"):
            # Takes a, then waits for b, which the partner holds while it waits for a.
            changed = store.execute(
                'UPDATE "host" SET "draining" = ? WHERE "name" IN (?, ?)', (True, "a", "b")
            )
        assert changed == 2
        assert host_rows(store) == {"a": (True, 1.0), "b": (True, 1.0)}
    finally:
        store.close()


def test_a_transaction_refused_for_a_deadlock_is_one_error_and_writes_nothing(
    pg_url: str,
) -> None:
    store = Store(pg_url)
    try:
        store.hosts.ensure("a")
        store.hosts.ensure("b")
        with (
            deadlock_partner(pg_url, first="b", second="a"),
            pytest.raises(StoreInterrupted) as caught,
            store.write(),
        ):
            store.execute('UPDATE "host" SET "draining" = ? WHERE "name" = ?', (True, "a"))
            store.execute('UPDATE "host" SET "draining" = ? WHERE "name" = ?', (True, "b"))
        message = str(caught.value)
        assert "\n" not in message
        assert "deadlock" in message and "nothing was changed: run the command again" in message
        assert isinstance(caught.value, HvkubeError) and caught.value.exit_code == 1
        # Our transaction left nothing; the partner's change went through.
        assert host_rows(store) == {"a": (False, 1.0), "b": (False, 1.0)}
        # The same store object keeps working.
        store.hosts.set_draining("a", True)
        assert host_rows(store)["a"] == (True, 1.0)
    finally:
        store.close()


def test_a_session_ended_in_the_middle_of_a_command_is_one_line_and_writes_nothing(
    pg_url: str,
) -> None:
    assert run_cli("--db", pg_url, "template", "create", "--name", "t", "--vhdx",
                   r"C:\T\t.vhdx", "--memory", "1024").returncode == 0  # fmt: skip
    holder = psycopg.connect(pg_url, autocommit=True)
    try:
        # Another process holds the store's write lock: the delete waits for it inside its
        # transaction, and its session is ended there.
        holder.execute("SELECT pg_advisory_lock(%s)", (WRITE_LOCK_KEY,))
        result: dict[str, Any] = {}
        thread = threading.Thread(
            target=lambda: result.update(done=run_cli("--db", pg_url, "template", "delete", "t"))
        )
        thread.start()
        terminate(pg_url, wait_until_blocked(pg_url, "pg_advisory_xact_lock"))
        thread.join(60)
    finally:
        holder.close()
    done = result["done"]
    assert done.returncode == 1, done.stderr
    # (the simulated host's notice, then the error)
    lines = [line for line in done.stderr.splitlines() if line.startswith("hvkube:")]
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert "lost the connection to the PostgreSQL store" in lines[0]
    assert "nothing was changed: run the command again" in lines[0]
    listed = run_cli("--db", pg_url, "--json", "template", "list")
    assert '"t"' in listed.stdout  # still there

"""A throwaway PostgreSQL server for tests and benchmarks: initdb in a temp folder, a unix
socket there and no TCP port, one fresh database per test.

`initdb` refuses to run as root; as root the server runs as the `postgres` user (Debian's
package makes it), owning its temp folder. Each pytest-xdist worker starts its own server
(the fixture is per session), so workers never share a database.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

PG_BIN = Path(os.environ.get("HVKUBE_PG_BIN", "/usr/lib/postgresql/15/bin"))
SERVICE_USER = "postgres"


def pg_missing() -> str | None:
    """Why no server can be started here, or None when one can."""
    for tool in ("initdb", "pg_ctl", "postgres"):
        if not (PG_BIN / tool).is_file():
            return f"{PG_BIN / tool} is missing (Debian package postgresql-15)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SERVICE_USER)
        except KeyError:
            return f"running as root and there is no {SERVICE_USER!r} user to run the server"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "the psycopg package is not installed"
    return None


class PgServer:
    """One server in its own folder. `durable=False` (tests) turns fsync off; benchmarks
    keep fsync and drop only the wait for it at commit (SQLite's synchronous=normal)."""

    def __init__(self, *, durable: bool = False, max_connections: int = 100) -> None:
        self.durable = durable
        self.max_connections = max_connections
        # Short: a unix socket path must fit in 107 bytes.
        self.root = Path(tempfile.mkdtemp(prefix="hvkpg-"))
        self.data = self.root / "data"
        self._as_user: str | None = None
        if os.geteuid() == 0:
            self._as_user = SERVICE_USER
            entry = pwd.getpwnam(SERVICE_USER)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self._names = itertools.count(1)
        self.started = False

    def _run(self, *args: str) -> None:
        result = subprocess.run(
            list(args), capture_output=True, text=True, user=self._as_user, timeout=120
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"{Path(args[0]).name} failed ({result.returncode}): "
                f"{result.stderr.strip() or result.stdout.strip()}"
            )

    def start(self) -> PgServer:
        self._run(
            str(PG_BIN / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
            "--no-sync",
        )
        options = [
            "-c listen_addresses=''",
            f"-c unix_socket_directories='{self.root}'",
            f"-c max_connections={self.max_connections}",
            "-c synchronous_commit=off",
        ]
        if not self.durable:
            options += ["-c fsync=off", "-c full_page_writes=off"]
        self._run(
            str(PG_BIN / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.root / "server.log"),
            "-o",
            " ".join(options),
            "-w",
            "-s",
            "start",
        )
        self.started = True
        return self

    def url(self, database: str) -> str:
        return f"postgresql://postgres@/{database}?host={self.root}"

    def _admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(sql)

    def create_database(self) -> str:
        """A new empty database: its URL."""
        name = f"hvk_{next(self._names)}"
        self._admin(f'CREATE DATABASE "{name}" TEMPLATE template0 STRATEGY FILE_COPY')
        return self.url(name)

    def drop_database(self, url: str) -> None:
        name = url.split("/")[-1].split("?")[0]
        with contextlib.suppress(Exception):
            self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        if self.started:
            with contextlib.suppress(Exception):
                self._run(
                    str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-s", "stop"
                )
            self.started = False
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PgServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- pytest fixtures (the suite's conftest imports them) --------------------------------------


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """One server per test session (per pytest-xdist worker), started on first use."""
    reason = pg_missing()
    if reason is not None:
        if os.environ.get("HVKUBE_REQUIRE_ALL_BACKENDS") == "1":
            pytest.fail(f"PostgreSQL is required here but missing: {reason}")
        pytest.skip(f"PostgreSQL: {reason}")
    server = PgServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_url(pg_server: PgServer) -> Iterator[str]:
    """The URL of a fresh, empty database for this test (dropped after it)."""
    url = pg_server.create_database()
    try:
        yield url
    finally:
        pg_server.drop_database(url)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A new store for this test: an SQLite file path, then a PostgreSQL URL."""
    if request.param == "sqlite":
        return str(tmp_path / "store.db")
    return str(request.getfixturevalue("pg_url"))

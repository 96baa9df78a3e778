"""Fixtures for the HTTP API tests: a real `hvkube serve` on loopback over a tmp store."""

from __future__ import annotations

import itertools
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from core import open_engine
from core.engine import Engine
from core.settings import Settings

STARTUP_LIMIT_S = 30.0


@dataclass
class Server:
    url: str
    token: str
    data_dir: Path
    db: Path
    process: subprocess.Popen[bytes]
    log: Path


def api_env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HVKUBE_")}
    env.update(
        HVKUBE_DATA_DIR=str(data_dir),
        HVKUBE_BACKEND="sim",
        HVKUBE_SIM_SCALE="0",
        HVKUBE_CONFIG=str(data_dir / "absent-config.toml"),
    )
    return env


def start_server(data_dir: Path, *extra: str) -> Server:
    """`hvkube serve --port 0` in a subprocess; returns once /health answers."""
    data_dir.mkdir(parents=True, exist_ok=True)
    log = data_dir / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "core.cli", "serve", "--port", "0", *extra],
            env=api_env(data_dir),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    deadline = time.monotonic() + STARTUP_LIMIT_S
    url = None
    while time.monotonic() < deadline and process.poll() is None:
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith("hvkube API on "):
                url = line.split()[3]
        if url:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
        time.sleep(0.05)
    else:
        process.kill()
        raise RuntimeError(f"server did not start:\n{log.read_text(errors='replace')}")
    assert url is not None and url.startswith("http://127.0.0.1:")
    token = (data_dir / "api-token").read_text().strip()
    return Server(url, token, data_dir, data_dir / "hvkube.db", process, log)


def stop_server(server: Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait(timeout=5)


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp("api"), "--sweep-seconds", "0.2")
    yield srv
    stop_server(srv)


@pytest.fixture(scope="session")
def api_engine(server: Server) -> Iterator[Engine]:
    """The same store and simulated host as the server, opened in the test process."""
    eng = open_engine(Settings(db=str(server.db), backend="sim", sim_scale=0.0))
    if not eng.list_templates():
        eng.create_template(
            "win11", "C:\\templates\\win11.vhdx", mcp_endpoint="http://{ip}:8080/mcp"
        )
    yield eng
    eng.close()


@pytest.fixture()
def client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {server.token}"}, timeout=30
    ) as c:
        yield c


_pool_numbers = itertools.count(1)


@pytest.fixture()
def new_pool(api_engine: Engine) -> Callable[..., str]:
    """Make and provision a pool of `count` warm VMs; returns its name."""

    def make(count: int = 2, release: str = "reset") -> str:
        name = f"p{next(_pool_numbers)}"
        api_engine.create_pool(name, "win11", count, warm=count, release=release)
        report = api_engine.provision_pool(name)
        assert not report.failed, report.failed
        return name

    return make


@pytest.fixture()
def dump(server: Server) -> Callable[[], list[str]]:
    """Every row of the server's database as SQL text, for before/after comparisons."""

    def read() -> list[str]:
        con = sqlite3.connect(server.db)
        try:
            return list(con.iterdump())
        finally:
            con.close()

    return read

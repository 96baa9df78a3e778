"""Security basics: files readable by their owner only, no secret in events or output, and a
read-only engine that refuses every change (every public method classified, so that a new
one cannot slip through)."""

from __future__ import annotations

import contextlib
import inspect
import io
import os
import sqlite3
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from reliability.stats import count

from core import open_engine
from core.cli import main
from core.engine import Engine
from core.errors import HvkubeError, ReadOnlyMode
from core.models import AgentResult, AgentStatus, VMState


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@contextlib.contextmanager
def umask(value: int) -> Iterator[None]:
    old = os.umask(value)
    try:
        yield
    finally:
        os.umask(old)


# -- files ---------------------------------------------------------------------------------


@pytest.mark.parametrize("mask", [0o000, 0o022])
def test_data_folder_and_databases_are_the_owners_only(tmp_path: Path, mask: int) -> None:
    data = tmp_path / "data"  # HVKUBE_DATA_DIR (conftest); it does not exist yet
    assert not data.exists()
    with umask(mask):
        assert run("template", "create", "--name", "w", "--vhdx", "C:\\w.vhdx")[0] == 0
        assert run("pool", "create", "--name", "p", "--template", "w", "--count", "1")[0] == 0
        assert run("pool", "provision", "p")[0] == 0
        # Keep a connection open so that SQLite's -wal and -shm files exist to be checked.
        con = sqlite3.connect(data / "hvkube.db")
        con.execute("SELECT 1 FROM vm").fetchall()
        files = sorted(p for p in data.iterdir())
        try:
            assert mode(data) == 0o700
            assert {p.name for p in files} >= {"hvkube.db", "sim-host.db"}
            for path in files:
                assert mode(path) & 0o077 == 0, f"{path.name} is {oct(mode(path))}"
        finally:
            con.close()


def test_a_database_named_with_db_gets_the_same_modes(tmp_path: Path) -> None:
    db = tmp_path / "new-folder" / "store.db"
    with umask(0):
        assert run("--db", str(db), "template", "list")[0] == 0
    assert mode(db.parent) == 0o700 and mode(db) == 0o600
    assert mode(db.parent / "sim-host.db") == 0o600


# -- secrets -------------------------------------------------------------------------------

ENV_SECRETS = {
    "HVKUBE_TEST_PASSWORD": "pw-1f0c9a7e",
    "HVKUBE_API_TOKEN": "tok-5b2d8e41",
    "DEPLOY_SECRET": "sec-93ad01c6",
    "GITHUB_TOKEN": "ghp-7c1e4f00",
}
INPUT_SECRET = "in-pw-c3e8b2aa"


def test_no_secret_in_events_errors_or_json_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in ENV_SECRETS.items():
        monkeypatch.setenv(key, value)
    outputs: list[tuple[tuple[str, ...], str]] = []

    def cli(*argv: str) -> tuple[int, str, str]:
        code, out, err = run(*argv, "--json")
        outputs.append((argv, out + err))
        return code, out, err

    cli("template", "create", "--name", "w", "--vhdx", "C:\\w.vhdx")
    cli("pool", "create", "--name", "p", "--template", "w", "--count", "2", "--warm", "2")
    cli("pool", "provision", "p")
    given = f'{{"password": "{INPUT_SECRET}", "user": "alice"}}'
    assert cli("agent", "submit", "--pool", "p", "--workflow", "wf", "--input", given)[0] == 0
    assert cli("acquire", "--pool", "p")[0] == 0
    cli("sim", "fault", "fail", "--op", "restore")
    cli("release", "p-001")  # fails: an error event with the backend's message
    cli("agent", "cancel", "1")
    for argv in (
        ("events", "--limit", "1000"),
        ("vm", "list"),
        ("pool", "list"),
        ("pool", "status", "p"),
        ("reconcile",),
        ("config", "show"),
        ("agent", "show", "1"),
        ("agent", "list"),
    ):
        cli(*argv)
    count("inputs tried", len(outputs))

    for argv, text in outputs:
        for key, value in ENV_SECRETS.items():
            assert value not in text, f"{key} shown by {' '.join(argv)}"
        # The agent's input is the user's own data, shown back by the agent commands only.
        if argv[0] != "agent":
            assert INPUT_SECRET not in text, f"agent input shown by {' '.join(argv)}"
    con = sqlite3.connect(tmp_path / "data" / "hvkube.db")
    try:
        events = "\n".join(map(str, con.execute("SELECT * FROM event").fetchall()))
        others = "\n".join(map(str, con.execute("SELECT * FROM vm").fetchall()))
    finally:
        con.close()
    assert "release_reset" in events  # the failed release left its event
    for value in [*ENV_SECRETS.values(), INPUT_SECRET]:
        assert value not in events and value not in others
    host = (tmp_path / "data" / "sim-host.db").read_bytes()
    for value in [*ENV_SECRETS.values(), INPUT_SECRET]:
        assert value.encode() not in host


# -- read-only -----------------------------------------------------------------------------

# Every public Engine method, classified. A new method fails the test below until it is put
# in one of these sets (and, when it changes anything, refuses in read-only mode).
READS = {
    "close",
    "get_template",
    "list_templates",
    "get_pool",
    "list_pools",
    "pool_counts",
    "get_vm",
    "list_vms",
    "mcp_endpoint",
    "vm_ip",  # in read-only mode, the recorded IP without refreshing the store
    "screenshot",  # in read-only mode, no event is written
    "events",
    "get_agent",
    "list_agents",
    "ref",
    "host_vm",
    "memory_budget",
    "list_hosts",
    "get_host",
    "on_host",
    "owner_alive",
    "reaches_other_hosts",
}
MUTATIONS: dict[str, Callable[[Engine], Any]] = {
    "create_template": lambda e: e.create_template("t2", "C:\\t2.vhdx"),
    "delete_template": lambda e: e.delete_template("unused"),
    "create_pool": lambda e: e.create_pool("p2", "w", count=1),
    "update_pool": lambda e: e.update_pool("p", count=3),
    "delete_pool": lambda e: e.delete_pool("p", with_vms=True),
    "resume_vm": lambda e: e.resume_vm("p-002"),
    "save_vm": lambda e: e.save_vm("p-001"),
    "pause_vm": lambda e: e.pause_vm("p-001"),
    "stop_vm": lambda e: e.stop_vm("p-001", force=True),
    "reset_vm": lambda e: e.reset_vm("p-002"),
    "delete_vm": lambda e: e.delete_vm("p-002"),
    "acquire": lambda e: e.acquire("p"),
    "release": lambda e: e.release("p-001"),
    "release_known": lambda e: e.release_known(
        e.get_vm("p-001"), e.get_template(e.get_vm("p-001").template), None, None, None
    ),
    "submit_agent": lambda e: e.submit_agent("p", "wf"),
    "finish_agent": lambda e: e.finish_agent(1, AgentStatus.COMPLETED, AgentResult(success=True)),
    "release_agent_vm": lambda e: e.release_agent_vm(1, "p-001"),
    "cancel_agent": lambda e: e.cancel_agent(1),
    "provision_pool": lambda e: e.provision_pool("p"),
    "scale_pool": lambda e: e.scale_pool("p", 3),
    "reconcile": lambda e: e.reconcile(),
    "remove_from_host": lambda e: e.remove_from_host(e.get_vm("p-002")),
    "restore_clean": lambda e: e.restore_clean(e.get_vm("p-002")),
    "bring_up": lambda e: e.bring_up(e.get_vm("p-002")),
    "give_back": lambda e: e.give_back(e.get_vm("p-002"), HvkubeError("x")),
    "drain_host": lambda e: e.drain_host(e.host),
    "remove_host": lambda e: e.remove_host(e.host),
}
# The ledger records every VM change: each of its writes is refused in read-only mode too.
LEDGER_WRITES: dict[str, Callable[[Engine], Any]] = {
    "record_event": lambda e: e.ledger.record_event("x", None, None, 0.0),
    "begin": lambda e: e.ledger.begin("p-002", VMState.SAVING),
    "claim": lambda e: e.ledger.claim("p", "someone", None),
    "correct": lambda e: e.ledger.correct(e.get_vm("p-002"), VMState.OFF, "test"),
    "note": lambda e: e.ledger.note("p-002", ip="10.0.0.1"),
    "forget": lambda e: e.ledger.forget("p-002"),
    "insert_provisioning": lambda e: e.ledger.insert_provisioning([]),
}


def public_methods() -> set[str]:
    return {
        name
        for name, member in inspect.getmembers(Engine)
        if not name.startswith("_") and callable(member)
    }


def test_every_public_engine_method_is_classified() -> None:
    unclassified = public_methods() - READS - set(MUTATIONS)
    assert not unclassified, f"classify these as reads or mutations: {sorted(unclassified)}"
    assert not READS & set(MUTATIONS)
    assert (READS | set(MUTATIONS)) <= public_methods()


def dump(data: Path) -> list[list[str]]:
    out = []
    for name in ("hvkube.db", "sim-host.db"):
        con = sqlite3.connect(data / name)
        try:
            out.append(list(con.iterdump()))
        finally:
            con.close()
    return out


@pytest.fixture
def populated(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    with open_engine(db=str(data / "hvkube.db"), backend="sim", sim_scale=0) as engine:
        engine.create_template("w", "C:\\w.vhdx", memory_mb=2048)
        engine.create_template("unused", "C:\\u.vhdx", memory_mb=2048)
        engine.create_pool("p", "w", count=2, warm=2)
        engine.provision_pool("p")
        agent = engine.submit_agent("p", "wf")
        engine.acquire("p", holder=f"agent-{agent.id}", agent_id=agent.id)
        assert engine.get_vm("p-001").state is VMState.RUNNING
    return data


@pytest.mark.parametrize("method", sorted(MUTATIONS) + [f"ledger.{m}" for m in LEDGER_WRITES])
def test_read_only_engine_refuses_every_change(populated: Path, method: str) -> None:
    before = dump(populated)
    change = LEDGER_WRITES[method[7:]] if method.startswith("ledger.") else MUTATIONS[method]
    with open_engine(
        db=str(populated / "hvkube.db"), backend="sim", sim_scale=0, readonly=True
    ) as engine:
        with pytest.raises(ReadOnlyMode) as info:
            change(engine)
        assert "read-only" in info.value.message
    assert dump(populated) == before


def test_read_only_engine_reads_change_nothing(populated: Path) -> None:
    before = dump(populated)
    with open_engine(
        db=str(populated / "hvkube.db"), backend="sim", sim_scale=0, readonly=True
    ) as engine:
        engine.list_templates(), engine.get_template("w"), engine.list_pools()
        engine.get_pool("p"), engine.pool_counts("p"), engine.list_vms(), engine.events()
        vm = engine.get_vm("p-001")
        engine.mcp_endpoint(vm), engine.vm_ip("p-001"), engine.screenshot("p-001")
        engine.get_agent(1), engine.list_agents()
    assert dump(populated) == before


@pytest.mark.parametrize(
    "argv",
    [
        ["sim", "fault", "fail"],
        ["sim", "clear"],
        ["vm", "ip", "p-001"],
        ["reconcile"],
        ["pool", "provision", "p"],
        ["agent", "complete", "1"],
    ],
)
def test_read_only_cli_refuses_changes_beyond_the_engine(
    populated: Path, monkeypatch: pytest.MonkeyPatch, argv: list[str]
) -> None:
    monkeypatch.setenv("HVKUBE_DATA_DIR", str(populated))
    before = dump(populated)
    code, _, err = run("--readonly", *argv)
    assert code in (0, 2), err
    if code == 2:
        assert "read-only" in err
    assert dump(populated) == before


# -- the HTTP API's token ------------------------------------------------------------------


def test_the_api_token_is_the_owners_only_and_never_logged(tmp_path: Path) -> None:
    import httpx
    from api.conftest import start_server, stop_server

    data = tmp_path / "api"
    with open_engine(db=str(data / "hvkube.db"), backend="sim", sim_scale=0) as engine:
        engine.create_template("w", "C:\\w.vhdx", memory_mb=2048)
        engine.create_pool("p", "w", count=1, warm=1)
        engine.provision_pool("p")
    wrong = "wrong-token-8d1f6e2b9a"
    server = start_server(data, "--access-log")
    try:
        assert mode(data / "api-token") == 0o600 and mode(data) == 0o700
        auth = {"Authorization": f"Bearer {server.token}"}
        with httpx.Client(base_url=server.url, headers=auth, timeout=30) as http:
            got = http.post("/api/v1/acquire", json={"pool": "p"})
            assert got.status_code == 200, got.text
            agent = http.post(
                "/api/v1/agents",
                json={"pool": "p", "workflow": "wf", "input": {"password": INPUT_SECRET}},
            )
            assert agent.status_code == 201, agent.text
            bodies = [got.text, agent.text, http.get("/api/v1/events").text]
            released = http.post(f"/api/v1/vms/{got.json()['name']}/release", json={})
            bodies.append(released.text)
            refused = httpx.get(
                f"{server.url}/api/v1/vms", headers={"Authorization": f"Bearer {wrong}"}
            )
            assert refused.status_code == 401
            bodies.append(refused.text)
            count("inputs tried", 5)
    finally:
        stop_server(server)
    log = server.log.read_text(errors="replace")
    assert "/api/v1/acquire" in log  # the access log was on
    for text in [log, *bodies]:
        assert server.token not in text
        assert wrong not in text
    assert INPUT_SECRET not in log
    con = sqlite3.connect(data / "hvkube.db")
    try:
        rows = "\n".join(map(str, con.execute("SELECT * FROM event").fetchall()))
    finally:
        con.close()
    assert server.token not in rows and INPUT_SECRET not in rows


# -- the controller's log ------------------------------------------------------------------


def test_the_controller_logs_no_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`hvkube run --verbose` (debug logging) runs agents that succeed, fail and time out, with
    a password in their input and secrets in the environment: none reaches its log."""
    from tests.conftest import run_cli

    for key, value in ENV_SECRETS.items():
        monkeypatch.setenv(key, value)
    with open_engine(db=str(tmp_path / "data" / "hvkube.db"), backend="sim", sim_scale=0) as e:
        e.create_template("w", "C:\\w.vhdx", memory_mb=2048)
        e.create_pool("p", "w", count=2, warm=2)
        e.provision_pool("p")
        secret = {"password": INPUT_SECRET}
        for command, timeout in (("true", 60), ("exit 3", 60), ("sleep 30", 1)):
            e.submit_agent("p", "wf", secret, timeout_s=timeout, exec_command=command)
    result = run_cli("--verbose", "run", "--once", "--tick", "0.05", "--grace", "0.2")
    log = result.stdout + result.stderr
    count("inputs tried")
    assert "agent" in log  # it did log the agents' ends
    for value in [*ENV_SECRETS.values(), INPUT_SECRET]:
        assert value not in log
    with open_engine(db=str(tmp_path / "data" / "hvkube.db"), backend="sim", sim_scale=0) as e:
        assert all(a.status.finished for a in e.list_agents()), e.list_agents()
        events = " ".join(f"{ev.kind} {ev.error}" for ev in e.events(limit=10_000))
    for value in [*ENV_SECRETS.values(), INPUT_SECRET]:
        assert value not in events

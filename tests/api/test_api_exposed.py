"""An exposed server: scoped tokens, the token file's owner, half-sent requests, the
connection cap, CORS, and a log without traceback floods."""

from __future__ import annotations

import os
import resource
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.errors import HvkubeError
from core.tokens import ID_HEX, PREFIX, TOKEN_FILE_NAME, load_or_create_token
from tests.api.conftest import Server, api_env, start_server, stop_server
from tests.api.test_api import acquire
from tests.api.test_api_manage import cli

# -- scoped tokens -----------------------------------------------------------------------------


def make_token(server: Server, name: str, scope: str = "agent") -> str:
    done = cli(server, "token", "create", "--name", name, "--scope", scope)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.fixture()
def agent_client(server: Server, request: pytest.FixtureRequest) -> Iterator[httpx.Client]:
    token = make_token(server, f"agent-{request.node.name[-30:].replace('[', '-')[:40]}")
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=30) as c:
        yield c


def test_an_agent_token_drives_only_its_own_leases_and_vms(
    client: httpx.Client,
    agent_client: httpx.Client,
    new_pool: Callable[..., str],
    dump: Callable[[], list[str]],
) -> None:
    pool = new_pool(2)
    mine = acquire(agent_client, pool)
    theirs = acquire(client, pool)
    # its own: seen, renewed, driven, released
    assert [v["name"] for v in agent_client.get("/api/v1/vms").json()] == [mine["name"]]
    assert agent_client.get(f"/api/v1/vms/{mine['name']}").status_code == 200
    assert agent_client.post(f"/api/v1/leases/{mine['lease_id']}/renew").status_code == 200
    # not its own, and nothing else: 403, nothing changed
    before = dump()
    for method, path, body in (
        ("GET", f"/api/v1/vms/{theirs['name']}", None),
        ("POST", f"/api/v1/vms/{theirs['name']}/release", {}),
        ("POST", f"/api/v1/vms/{theirs['name']}/save", None),
        ("POST", f"/api/v1/leases/{theirs['lease_id']}/renew", None),
        ("GET", "/api/v1/pools", None),
        ("POST", "/api/v1/pools", {"name": "x", "template": "win11", "count": 1}),
        ("POST", "/api/v1/templates", {"name": "x", "vhdx_path": "C:\\x.vhdx"}),
        ("DELETE", f"/api/v1/vms/{theirs['name']}", None),
        ("POST", "/api/v1/reconcile", None),
        ("GET", "/api/v1/events", None),
        ("POST", "/api/v1/agents", {"pool": pool, "workflow": "w"}),
        ("GET", "/metrics", None),
    ):
        r = agent_client.request(method, path, json=body)
        assert r.status_code == 403 and r.json()["code"] == "forbidden", (path, r.text)
    assert dump() == before
    body = {"lease_id": mine["lease_id"]}
    r = agent_client.post(f"/api/v1/vms/{mine['name']}/release", json=body)
    assert r.status_code == 200
    assert client.post(f"/api/v1/vms/{theirs['name']}/release").status_code == 200


def test_tokens_are_stored_hashed_and_revoked_at_once(server: Server, dump: Any) -> None:
    token = make_token(server, "revoke-me")
    rows = "\n".join(dump())
    secret = token[len(PREFIX) + ID_HEX + 1 :]  # the part after "hvk_<id>_" (it may hold "_")
    assert token not in rows and secret not in rows
    listed = cli(server, "--json", "token", "list")
    entry = next(t for t in __import__("json").loads(listed.stdout) if t["name"] == "revoke-me")
    headers = {"Authorization": f"Bearer {token}"}
    assert httpx.get(f"{server.url}/api/v1/vms", headers=headers).status_code == 200
    assert cli(server, "token", "revoke", entry["id"]).returncode == 0
    r = httpx.get(f"{server.url}/api/v1/vms", headers=headers)
    assert r.status_code == 401
    again = cli(server, "token", "revoke", entry["id"])
    assert again.returncode == 2 and "already revoked" in again.stderr
    bad = cli(server, "token", "create", "--name", "x", "--scope", "root")
    assert bad.returncode == 2


def test_a_mounted_app_gets_the_scope_from_the_authenticator(
    server: Server, client: httpx.Client
) -> None:
    from core.api.auth import Authenticator
    from core.store import Store

    token = make_token(server, "for-mcp")
    store = Store(server.db)
    try:
        auth = Authenticator(server.token, lambda: store)
        assert auth.authenticate(f"Bearer {server.token}").scope == "admin"  # type: ignore[union-attr]
        agent = auth.authenticate(token)
        assert agent is not None and agent.scope == "agent" and agent.name == "for-mcp"
        assert auth.authenticate("Bearer nope") is None
    finally:
        store.close()


# -- the token file's owner --------------------------------------------------------------------


def test_token_file_of_another_user_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "shared"
    folder.mkdir(mode=0o700)
    path = folder / "api-token"
    load_or_create_token(path)
    other = 4242
    os.chown(path, other, other)
    with pytest.raises(HvkubeError, match="not owned by this user"):
        load_or_create_token(path)


def test_token_file_in_a_folder_others_can_write_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "open"
    folder.mkdir()
    folder.chmod(0o1777)
    with pytest.raises(HvkubeError, match="not yours alone"):
        load_or_create_token(folder / "api-token")
    assert not (folder / "api-token").exists()


def test_serve_refuses_a_planted_token_file_in_one_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    data = tmp_path / "data"
    data.mkdir()
    planted = data / "api-token"
    planted.write_text("x" * 40)
    planted.chmod(0o600)
    os.chown(planted, 4242, 4242)
    done = subprocess.run(
        [sys.executable, "-m", "core.cli", "serve", "--port", "0"],
        env=api_env(data),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "delete it" in done.stderr


# -- half-sent requests and the connection cap -------------------------------------------------

SLOW = 1000
TIMEOUT_S = 3.0


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp("guard"), "--request-timeout", str(TIMEOUT_S))
    yield srv
    stop_server(srv)


def open_half_requests(url: str, count: int) -> list[socket.socket]:
    host, port = url.removeprefix("http://").split(":")
    socks = []
    for _ in range(count):
        s = socket.create_connection((host, int(port)), timeout=10)
        s.sendall(b"GET /api/v1/pools HTTP/1.1\r\nHost: x\r\nAuthori")
        socks.append(s)
    return socks


def closed(s: socket.socket) -> bool:
    s.setblocking(False)
    try:
        return s.recv(1024) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def test_half_sent_requests_do_not_hold_the_server(guarded: Server) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))
    opened = time.monotonic()
    socks = open_half_requests(guarded.url, SLOW)
    try:
        headers = {"Authorization": f"Bearer {guarded.token}"}
        with httpx.Client(base_url=guarded.url, headers=headers, timeout=10) as c:
            for _ in range(5):
                assert c.get("/api/v1/pools").status_code == 200
        # every half-sent request is closed by the server within the timeout (and a margin
        # for a loaded machine), none of them answered
        deadline = opened + TIMEOUT_S + 10
        pending = list(socks)
        while pending and time.monotonic() < deadline:
            pending = [s for s in pending if not closed(s)]
            time.sleep(0.2)
        assert pending == [], f"{len(pending)} of {SLOW} still open"
    finally:
        for s in socks:
            s.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    log = guarded.log.read_text(errors="replace")
    assert "Traceback" not in log and "Too many open files" not in log


def test_connections_beyond_the_cap_get_a_503(tmp_path: Path) -> None:
    srv = start_server(tmp_path / "data", "--max-connections", "20", "--request-timeout", "30")
    idle: list[socket.socket] = []
    try:
        idle = open_half_requests(srv.url, 20)
        time.sleep(0.3)
        host, port = srv.url.removeprefix("http://").split(":")
        extra = socket.create_connection((host, int(port)), timeout=10)
        answer = b""
        while chunk := extra.recv(4096):
            answer += chunk
        extra.close()
        assert answer.startswith(b"HTTP/1.1 503")
        assert b'"code": "too_many_connections"' in answer
    finally:
        for s in idle:
            s.close()
        stop_server(srv)


# -- CORS --------------------------------------------------------------------------------------


def preflight(url: str, origin: str) -> httpx.Response:
    return httpx.options(
        f"{url}/api/v1/pools",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization",
        },
    )


def test_cors_is_off_by_default(server: Server) -> None:
    r = preflight(server.url, "https://dash.example.org")
    assert "access-control-allow-origin" not in r.headers


def test_cors_allow_list_answers_preflights_before_auth(tmp_path: Path) -> None:
    srv = start_server(tmp_path / "data", "--cors-origin", "https://dash.example.org")
    try:
        r = preflight(srv.url, "https://dash.example.org")
        assert r.status_code == 200
        assert r.headers["access-control-allow-origin"] == "https://dash.example.org"
        other = preflight(srv.url, "https://evil.example.org")
        assert "access-control-allow-origin" not in other.headers
        plain = httpx.get(f"{srv.url}/api/v1/pools", headers={"Origin": "https://dash.example.org"})
        assert plain.status_code == 401  # a token is still needed for the request itself
    finally:
        stop_server(srv)


def test_read_only_server_refuses_management(tmp_path: Path) -> None:
    # Read-only creates nothing: the store is made first by a command that may write.
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    made = subprocess.run(
        [sys.executable, "-m", "core.cli", "template", "list"],
        env=api_env(data),
        capture_output=True,
        text=True,
    )
    assert made.returncode == 0, made.stderr
    load_or_create_token(data / TOKEN_FILE_NAME)  # nor a token file
    srv = start_server(data, "--readonly")
    try:
        headers = {"Authorization": f"Bearer {srv.token}"}
        with httpx.Client(base_url=srv.url, headers=headers, timeout=30) as c:
            r = c.post("/api/v1/templates", json={"name": "t", "vhdx_path": "C:\\t.vhdx"})
            assert r.status_code == 403 and r.json()["code"] == "read_only"
        con = sqlite3.connect(srv.db)
        assert con.execute("SELECT COUNT(*) FROM template").fetchone() == (0,)
        con.close()
    finally:
        stop_server(srv)

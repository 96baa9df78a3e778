"""The HTTP API through a real server on loopback."""

from __future__ import annotations

import json
import socket
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from core import open_engine
from core.api.auth import load_or_create_token
from core.api.schemas import MAX_BODY_BYTES
from core.api.server import exposure_warning, is_loopback
from core.engine import Engine
from core.errors import HvkubeError
from core.settings import Settings
from core.tokens import TOKEN_FILE_NAME
from tests.api.conftest import start_server, stop_server

PollLimit = 20.0


def wait_until(check: Callable[[], bool], what: str, limit_s: float = PollLimit) -> None:
    """Poll `check` (bounded); fails the test with `what` when it never holds."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    pytest.fail(f"gave up waiting for {what}")


def acquire(client: httpx.Client, pool: str, **extra: Any) -> dict[str, Any]:
    r = client.post("/api/v1/acquire", json={"pool": pool, **extra})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


# -- auth --------------------------------------------------------------------------------------


def test_health_needs_no_token(server: Any) -> None:
    r = httpx.get(f"{server.url}/health")
    assert r.status_code == 200
    assert r.json()["status"] == "ok"


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong-token"}, {"Authorization": "Basic dXNlcjpwYXNz"}],
)
@pytest.mark.parametrize("path", ["/api/v1/pools", "/api/v1/vms/x", "/openapi.json", "/nowhere"])
def test_401_without_a_valid_token(server: Any, headers: dict[str, str], path: str) -> None:
    r = httpx.get(f"{server.url}{path}", headers=headers)
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"
    assert r.json()["code"] == "unauthorized"


def test_401_comes_before_input_checks(server: Any, dump: Callable[[], list[str]]) -> None:
    before = dump()
    r = httpx.post(f"{server.url}/api/v1/acquire", json={"wait_seconds": -1})
    assert r.status_code == 401
    assert dump() == before


def test_token_file_is_owner_only(server: Any) -> None:
    path = server.data_dir / "api-token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(server.token) >= 32


def test_token_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "api-token"
    token = load_or_create_token(path)
    assert load_or_create_token(path) == token
    path.chmod(0o644)
    with pytest.raises(HvkubeError, match="chmod 600"):
        load_or_create_token(path)


def test_loopback_detection_and_the_exposure_warning() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.0.2.1")
    assert exposure_warning("127.0.0.1", tls=False) is None
    assert exposure_warning("0.0.0.0", tls=True) is None
    warning = exposure_warning("0.0.0.0", tls=False)
    assert warning is not None and "without TLS" in warning


def test_openapi_document(client: httpx.Client) -> None:
    doc = client.get("/openapi.json").json()
    for path in (
        "/api/v1/acquire",
        "/api/v1/leases/{lease_id}/renew",
        "/api/v1/vms/{name}/release",
        "/api/v1/events",
    ):
        assert path in doc["paths"]
    assert doc["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


# -- acquire, renew, release -------------------------------------------------------------------


def test_acquire_renew_release(client: httpx.Client, new_pool: Callable[..., str]) -> None:
    pool = new_pool(2)
    vm = acquire(client, pool, lease_seconds=120)
    assert vm["pool"] == pool and vm["ip"] and vm["rdp_port"] == 3389
    assert vm["mcp_endpoint"] == f"http://{vm['ip']}:8080/mcp"
    assert vm["lease_id"].startswith("api-") and vm["lease_seconds"] == 120
    # the earlier Rust API's fields, beside ours
    assert vm["vm_name"] == vm["name"] and vm["ip_address"] == vm["ip"]
    assert vm["resume_time_ms"] == round(vm["resume_ms"])  # an integer there

    shown = client.get(f"/api/v1/vms/{vm['name']}").json()
    assert shown["holder"] == vm["lease_id"] and shown["state"] == "running"

    lease = client.get(f"/api/v1/leases/{vm['lease_id']}").json()
    assert lease["vm_name"] == vm["name"]
    renewed = client.post(f"/api/v1/leases/{vm['lease_id']}/renew", json={"lease_seconds": 300})
    assert renewed.status_code == 200, renewed.text
    assert renewed.json()["lease_seconds"] == 300
    assert renewed.json()["expires_at"] > lease["expires_at"]
    assert client.post(f"/api/v1/leases/{vm['lease_id']}/renew").status_code == 200

    r = client.post(
        f"/api/v1/vms/{vm['name']}/release", json={"policy": "save", "lease_id": vm["lease_id"]}
    )
    assert r.status_code == 200, r.text
    assert r.json()["vm"]["state"] == "saved" and r.json()["vm"]["holder"] is None
    assert client.get(f"/api/v1/leases/{vm['lease_id']}").status_code == 404
    again = client.post(f"/api/v1/vms/{vm['name']}/release", json={})
    assert again.status_code == 409 and again.json()["code"] == "conflict"


def test_rust_client_fields(client: httpx.Client, new_pool: Callable[..., str]) -> None:
    pool = new_pool(1)
    r = client.post("/api/v1/acquire", json={"pool_name": pool, "client": "old"})
    assert r.status_code == 200, r.text
    name = r.json()["vm_name"]
    r = client.post(f"/api/v1/vms/{name}/release", json={"reset": True})
    assert r.status_code == 200, r.text
    assert r.json()["vm_name"] == name and r.json()["vm"]["holder"] is None


def test_release_by_another_lease_is_refused(
    client: httpx.Client, new_pool: Callable[..., str], server: Any, dump: Callable[[], list[str]]
) -> None:
    pool = new_pool(2)
    a = acquire(client, pool)
    b = acquire(client, pool)
    before = dump()
    r = client.post(f"/api/v1/vms/{a['name']}/release", json={"lease_id": b["lease_id"]})
    assert r.status_code == 409 and r.json()["code"] == "not_lease_holder", r.text
    assert dump() == before
    # the live lease is left alone: it still renews
    assert client.post(f"/api/v1/leases/{b['lease_id']}/renew").status_code == 200
    for vm in (a, b):
        assert client.post(f"/api/v1/vms/{vm['name']}/release").status_code == 200


def test_destroy_on_release(
    client: httpx.Client, new_pool: Callable[..., str], api_engine: Engine
) -> None:
    pool = new_pool(1)
    vm = acquire(client, pool)
    r = client.post(f"/api/v1/vms/{vm['name']}/release", json={"policy": "destroy"})
    assert r.status_code == 200 and r.json() == {
        "name": vm["name"],
        "vm_name": vm["name"],
        "destroyed": True,
        "vm": None,
        "message": f"VM '{vm['name']}' destroyed",
    }
    assert api_engine.list_vms(pool=pool) == []


def test_expired_lease_releases_the_vm(
    client: httpx.Client, new_pool: Callable[..., str], api_engine: Engine
) -> None:
    pool = new_pool(1, release="save")
    vm = acquire(client, pool, lease_seconds=1)

    def released() -> bool:
        return client.get(f"/api/v1/vms/{vm['name']}").json()["holder"] is None

    wait_until(released, "the abandoned VM to be released")
    after = client.get(f"/api/v1/vms/{vm['name']}").json()
    assert after["state"] == "saved"  # the pool's policy
    assert client.get(f"/api/v1/leases/{vm['lease_id']}").status_code == 404
    assert client.post(f"/api/v1/leases/{vm['lease_id']}/renew").status_code == 404
    late = client.post(f"/api/v1/vms/{vm['name']}/release", json={"lease_id": vm["lease_id"]})
    assert late.status_code == 409 and late.json()["code"] == "lease_expired"
    kinds = [e.kind for e in api_engine.events(vm=vm["name"], limit=20)]
    assert "lease_expired" in kinds and "release_save" in kinds
    # and the VM can be had again
    again = acquire(client, pool)
    assert again["name"] == vm["name"]
    client.post(f"/api/v1/vms/{again['name']}/release")


def test_no_vm_free_is_503_with_retry_after(
    client: httpx.Client, new_pool: Callable[..., str], server: Any, dump: Callable[[], list[str]]
) -> None:
    pool = new_pool(1)
    vm = acquire(client, pool)
    before = dump()
    for wait in (0, 0.3):
        r = client.post("/api/v1/acquire", json={"pool": pool, "wait_seconds": wait})
        assert r.status_code == 503
        assert int(r.headers["retry-after"]) > 0
        assert r.json()["code"] == "no_vm_available"
    assert dump() == before  # the refused acquires left no lease behind
    client.post(f"/api/v1/vms/{vm['name']}/release")


def test_waiting_acquire_gets_a_released_vm(
    client: httpx.Client, new_pool: Callable[..., str], server: Any
) -> None:
    pool = new_pool(1)
    held = acquire(client, pool)
    got: list[httpx.Response] = []

    def waiter() -> None:
        with httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {server.token}"}, timeout=60
        ) as c:
            got.append(c.post("/api/v1/acquire", json={"pool": pool, "wait_seconds": 30}))

    thread = threading.Thread(target=waiter)
    thread.start()
    time.sleep(0.3)  # let it start waiting (the outcome does not depend on it)
    assert client.post(f"/api/v1/vms/{held['name']}/release").status_code == 200
    thread.join(timeout=60)
    assert got and got[0].status_code == 200, got and got[0].text
    assert got[0].json()["name"] == held["name"]
    client.post(f"/api/v1/vms/{held['name']}/release")


def test_a_waiter_that_disconnects_stops_waiting(
    client: httpx.Client, new_pool: Callable[..., str], server: Any
) -> None:
    pool = new_pool(1)
    held = acquire(client, pool)

    def api_leases_of_pool() -> int:
        con = sqlite3.connect(server.db)
        try:
            rows = con.execute("SELECT data FROM lease WHERE name LIKE 'api:%'").fetchall()
        finally:
            con.close()
        return sum(1 for (data,) in rows if json.loads(data)["pool"] == pool)

    body = json.dumps({"pool": pool, "wait_seconds": 60}).encode()
    host, port = server.url.removeprefix("http://").split(":")
    waiter = socket.create_connection((host, int(port)), timeout=10)
    waiter.sendall(
        b"POST /api/v1/acquire HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Authorization: Bearer {server.token}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    wait_until(lambda: api_leases_of_pool() == 2, "the waiter's lease")
    waiter.close()
    # Freed at once, maybe before the server noticed the waiter left: the VM must not stay
    # with the departed client.
    assert client.post(f"/api/v1/vms/{held['name']}/release").status_code == 200
    wait_until(
        lambda: (
            api_leases_of_pool() == 0
            and client.get(f"/api/v1/vms/{held['name']}").json()["holder"] is None
        ),
        "the VM free and no lease left",
    )


def test_concurrent_clients_never_share_a_vm(server: Any, new_pool: Callable[..., str]) -> None:
    pool = new_pool(3)
    holders: dict[str, str] = {}
    lock = threading.Lock()
    doubles: list[str] = []
    failures: list[str] = []

    def worker(n: int) -> None:
        with httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {server.token}"}, timeout=60
        ) as c:
            for _ in range(4):
                r = c.post("/api/v1/acquire", json={"pool": pool, "wait_seconds": 30})
                if r.status_code != 200:
                    failures.append(r.text)
                    continue
                vm = r.json()
                with lock:
                    if vm["name"] in holders:
                        doubles.append(vm["name"])
                    holders[vm["name"]] = vm["lease_id"]
                with lock:
                    holders.pop(vm["name"], None)
                rel = c.post(f"/api/v1/vms/{vm['name']}/release", json={"lease_id": vm["lease_id"]})
                if rel.status_code != 200:
                    failures.append(rel.text)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not doubles and not failures


# -- bad input changes nothing -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/v1/acquire", {"wait_seconds": 1}, "pool"),
        ("/api/v1/acquire", {"pool": "bad name!"}, "pool"),
        ("/api/v1/acquire", {"pool": "POOL", "wait_seconds": -1}, "wait_seconds"),
        ("/api/v1/acquire", {"pool": "POOL", "wait_seconds": "soon"}, "wait_seconds"),
        ("/api/v1/acquire", {"pool": "POOL", "lease_seconds": 0}, "lease_seconds"),
        ("/api/v1/acquire", {"pool": "POOL", "pool_name": "other"}, "pool_name"),
        ("/api/v1/vms/VM/release", {"policy": "bogus"}, "policy"),
        ("/api/v1/vms/VM/release", {"policy": "save", "reset": True}, "reset"),
        ("/api/v1/agents", {"pool": "POOL", "workflow": "w", "timeout_s": 0}, "timeout_s"),
        ("/api/v1/agents", {"pool": "POOL", "workflow": "w", "input": [1]}, "input"),
        ("/api/v1/agents", {"pool": "POOL", "workflow": "a/b"}, "workflow"),
        # a lone surrogate (valid JSON, not storable text)
        (
            "/api/v1/agents",
            b'{"pool": "POOL", "workflow": "w", "input": {"k": "\\ud800"}}',
            "input",
        ),
        ("/api/v1/agents/0/cancel", None, "agent_id"),
        ("/api/v1/leases/LEASE/renew", {"lease_seconds": -5}, "lease_seconds"),
    ],
)
def test_bad_input_is_422_naming_the_field_and_changes_nothing(
    client: httpx.Client,
    new_pool: Callable[..., str],
    server: Any,
    path: str,
    body: dict[str, Any] | bytes | None,
    field: str | None,
    dump: Callable[[], list[str]],
) -> None:
    pool = new_pool(1)
    vm = acquire(client, pool)
    path = path.replace("VM", vm["name"]).replace("POOL", pool).replace("LEASE", vm["lease_id"])
    before = dump()
    if isinstance(body, bytes):
        r = client.post(
            path,
            content=body.replace(b"POOL", pool.encode()),
            headers={"Content-Type": "application/json"},
        )
    elif body is not None:
        body = {k: (v.replace("POOL", pool) if isinstance(v, str) else v) for k, v in body.items()}
        r = client.post(path, json=body)
    else:
        r = client.post(path)
    assert r.status_code == 422, r.text
    error = r.json()
    assert error["code"] == "invalid_input" and error["message"]
    if field is not None:
        assert error["field"] == field
        assert field in error["message"]
    assert "\n" not in error["message"]
    assert dump() == before
    client.post(f"/api/v1/vms/{vm['name']}/release")


def test_body_that_is_not_json(
    client: httpx.Client, server: Any, dump: Callable[[], list[str]]
) -> None:
    before = dump()
    r = client.post(
        "/api/v1/acquire", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 422 and r.json()["code"] == "invalid_input"
    assert dump() == before


def test_a_body_over_the_cap_is_413_and_changes_nothing(
    client: httpx.Client, new_pool: Callable[..., str], dump: Callable[[], list[str]]
) -> None:
    pool = new_pool(1)
    before = dump()
    big = b'{"pool": "%s", "workflow": "w", "input": {"x": "' % pool.encode()
    big += b"a" * (MAX_BODY_BYTES + 1) + b'"}}'
    declared = client.post(
        "/api/v1/agents", content=big, headers={"Content-Type": "application/json"}
    )

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        for start in range(0, len(big), 1 << 16):
            yield big[start : start + (1 << 16)]

    streamed = client.post(
        "/api/v1/agents", content=chunks(), headers={"Content-Type": "application/json"}
    )
    for r in (declared, streamed):
        assert r.status_code == 413, r.text
        assert r.json()["code"] == "too_large" and "MB" in r.json()["message"]
    assert dump() == before
    ok = client.post("/api/v1/agents", json={"pool": pool, "workflow": "w", "input": {"x": 1}})
    assert ok.status_code in (200, 201), ok.text


def test_engine_refusal_is_400_and_changes_nothing(
    client: httpx.Client, new_pool: Callable[..., str], server: Any, dump: Callable[[], list[str]]
) -> None:
    pool = new_pool(1)
    before = dump()
    r = client.post("/api/v1/agents", json={"pool": pool, "workflow": "w", "requires_gpu": True})
    assert r.status_code == 400
    assert r.json()["code"] == "invalid_input" and "GPU" in r.json()["message"]
    assert dump() == before


def test_exec_command_is_refused_by_default(
    client: httpx.Client, new_pool: Callable[..., str], server: Any, dump: Callable[[], list[str]]
) -> None:
    pool = new_pool(1)
    before = dump()
    r = client.post(
        "/api/v1/agents", json={"pool": pool, "workflow": "w", "exec_command": "rm -rf /"}
    )
    assert r.status_code == 403 and r.json()["field"] == "exec_command"
    assert dump() == before


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/pools/nosuchpool",
        "/api/v1/vms/nosuchvm",
        "/api/v1/vms/nosuchvm/screenshot",
        "/api/v1/agents/999999",
        "/api/v1/leases/api-00000000000000000000",
        "/api/v1/leases/whatever",
    ],
)
def test_unknown_objects_are_404(client: httpx.Client, path: str) -> None:
    r = client.get(path)
    assert r.status_code == 404 and r.json()["code"] == "not_found"


def test_unknown_pool_on_acquire_is_404(
    client: httpx.Client, server: Any, dump: Callable[[], list[str]]
) -> None:
    before = dump()
    r = client.post("/api/v1/acquire", json={"pool": "nosuchpool"})
    assert r.status_code == 404 and r.json()["code"] == "not_found"
    assert dump() == before


# -- reads and VM actions ----------------------------------------------------------------------


def test_pools_and_vms(client: httpx.Client, new_pool: Callable[..., str]) -> None:
    pool = new_pool(2)
    pools = {p["name"]: p for p in client.get("/api/v1/pools").json()}
    assert pools[pool]["counts"]["saved"] == 2 and pools[pool]["counts"]["held"] == 0
    one = client.get(f"/api/v1/pools/{pool}").json()
    assert one["desired_count"] == 2 and one["release_policy"] == "reset"
    vms = client.get("/api/v1/vms", params={"pool": pool}).json()
    assert [v["name"] for v in vms] == [f"{pool}-001", f"{pool}-002"]
    assert all(v["vm_name"] == v["name"] for v in vms)
    saved = client.get("/api/v1/vms", params={"pool": pool, "state": "saved"}).json()
    assert len(saved) == 2
    bad = client.get("/api/v1/vms", params={"state": "sleeping"})
    assert bad.status_code == 422 and bad.json()["field"] == "state"


def test_screenshot_is_png(client: httpx.Client, new_pool: Callable[..., str]) -> None:
    pool = new_pool(1)
    r = client.get(f"/api/v1/vms/{pool}-001/screenshot")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert r.content.startswith(b"\x89PNG\r\n\x1a\n")


def test_resume_save_reset(client: httpx.Client, new_pool: Callable[..., str]) -> None:
    pool = new_pool(1)
    name = f"{pool}-001"
    r = client.post(f"/api/v1/vms/{name}/resume")
    assert r.status_code == 200 and r.json()["vm"]["state"] == "running"
    assert r.json()["vm_name"] == name and isinstance(r.json()["resume_time_ms"], int)
    again = client.post(f"/api/v1/vms/{name}/resume")
    assert again.status_code == 409 and again.json()["code"] == "conflict"
    assert client.post(f"/api/v1/vms/{name}/save").json()["state"] == "saved"
    assert client.post(f"/api/v1/vms/{name}/reset").json()["state"] == "saved"


# -- agents and events -------------------------------------------------------------------------


def test_agent_lifecycle(client: httpx.Client, new_pool: Callable[..., str]) -> None:
    pool = new_pool(1)
    r = client.post("/api/v1/agents", json={"pool": pool, "workflow": "notepad", "input": {"a": 1}})
    assert r.status_code == 201, r.text
    agent = r.json()
    assert agent["status"] == "pending" and agent["task"]["input"] == {"a": 1}
    assert client.get(f"/api/v1/agents/{agent['id']}").json()["id"] == agent["id"]
    done = client.post(
        f"/api/v1/agents/{agent['id']}/complete", json={"success": True, "output": {"ok": 1}}
    )
    assert done.status_code == 200 and done.json()["status"] == "completed"
    assert done.json()["result"]["output"] == {"ok": 1}
    twice = client.post(f"/api/v1/agents/{agent['id']}/cancel")
    assert twice.status_code == 409

    other = client.post("/api/v1/agents", json={"pool": pool, "workflow": "w"}).json()
    cancelled = client.post(f"/api/v1/agents/{other['id']}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    failed = client.post("/api/v1/agents", json={"pool": pool, "workflow": "w"}).json()
    r = client.post(
        f"/api/v1/agents/{failed['id']}/complete", json={"success": False, "error": "x"}
    )
    assert r.json()["status"] == "failed" and r.json()["result"]["error"] == "x"


def test_events_page_forward(client: httpx.Client, new_pool: Callable[..., str]) -> None:
    first = client.get("/api/v1/events", params={"limit": 1}).json()
    start = first["last_id"] or 0
    pool = new_pool(1)
    vm = acquire(client, pool)
    client.post(f"/api/v1/vms/{vm['name']}/release")
    page = client.get("/api/v1/events", params={"since": start, "pool": pool}).json()
    kinds = [e["kind"] for e in page["events"]]
    assert "resume" in kinds and "release_reset" in kinds
    ids = [e["id"] for e in page["events"]]
    assert ids == sorted(ids) and all(i > start for i in ids)
    assert page["last_id"] == ids[-1]
    rest = client.get("/api/v1/events", params={"since": page["last_id"], "pool": pool}).json()
    assert rest["events"] == [] and rest["last_id"] == page["last_id"]
    assert client.get("/api/v1/events", params={"since": -1}).status_code == 422


def test_errors_are_json(client: httpx.Client) -> None:
    r = client.delete("/api/v1/pools")
    assert r.status_code == 405 and r.json()["code"] == "method_not_allowed"
    r = client.get("/api/v1/nowhere")
    assert r.status_code == 404 and r.json()["code"] == "not_found"


# -- packaging ---------------------------------------------------------------------------------


def test_core_does_not_import_the_web_stack() -> None:
    code = (
        "import sys, core, core.cli; "
        "bad = [m for m in ('fastapi', 'uvicorn', 'starlette', 'textual', 'hvkube_tui') "
        "if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_lease_outlives_a_server_restart(tmp_path: Path) -> None:
    """The server stops while a VM is leased; the next server still expires the lease."""
    first = start_server(tmp_path / "data", "--sweep-seconds", "0.2")
    try:
        with open_engine(Settings(db=str(first.db), backend="sim", sim_scale=0.0)) as engine:
            engine.create_template("win11", "C:\\templates\\win11.vhdx")
            engine.create_pool("rp", "win11", 1, warm=1)
            assert not engine.provision_pool("rp").failed
        headers = {"Authorization": f"Bearer {first.token}"}
        r = httpx.post(
            f"{first.url}/api/v1/acquire",
            json={"pool": "rp", "lease_seconds": 2},
            headers=headers,
            timeout=30,
        )
        assert r.status_code == 200, r.text
        vm = r.json()
    finally:
        stop_server(first)
    second = start_server(tmp_path / "data", "--sweep-seconds", "0.2")
    try:
        assert second.token == first.token  # the token file is kept
        headers = {"Authorization": f"Bearer {second.token}"}

        def released() -> bool:
            got = httpx.get(f"{second.url}/api/v1/vms/{vm['name']}", headers=headers).json()
            return got["holder"] is None

        wait_until(released, "the new server to expire the old lease")
        lease = httpx.get(f"{second.url}/api/v1/leases/{vm['lease_id']}", headers=headers)
        assert lease.status_code == 404
    finally:
        stop_server(second)


def test_a_read_only_server_refuses_changes(tmp_path: Path) -> None:
    # Read-only creates no store: the store is made first.
    db = tmp_path / "data" / "hvkube.db"
    with open_engine(Settings(db=str(db), backend="sim", sim_scale=0.0)) as engine:
        engine.create_template("win11", "C:\\templates\\win11.vhdx")
        engine.create_pool("ro", "win11", 1, warm=1)
        assert not engine.provision_pool("ro").failed
    # Nor a token file: a server that may write makes it.
    load_or_create_token(tmp_path / "data" / TOKEN_FILE_NAME)
    srv = start_server(tmp_path / "data", "--readonly")
    try:
        headers = {"Authorization": f"Bearer {srv.token}"}
        with httpx.Client(base_url=srv.url, headers=headers, timeout=30) as c:
            assert c.get("/api/v1/pools/ro").status_code == 200
            for path, body in (
                ("/api/v1/acquire", {"pool": "ro"}),
                ("/api/v1/vms/ro-001/resume", None),
                ("/api/v1/agents", {"pool": "ro", "workflow": "w"}),
            ):
                r = c.post(path, json=body)
                assert r.status_code == 403 and r.json()["code"] == "read_only", r.text
            assert c.get("/api/v1/vms/ro-001").json()["holder"] is None
    finally:
        stop_server(srv)

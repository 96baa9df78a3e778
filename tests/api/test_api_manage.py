"""Management over HTTP with the CLI's rules, leases that tell the truth, acquire without a
lease, the agent-input depth cap and /metrics, through a real server on loopback."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from core.engine import Engine
from core.names import MAX_JSON_DEPTH
from tests.api.conftest import Server, api_env, start_server, stop_server
from tests.api.test_api import acquire


def cli(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "core.cli", *args],
        env=api_env(server.data_dir),
        capture_output=True,
        text=True,
        timeout=60,
    )


# -- management: the CLI's rules and errors ----------------------------------------------------


def test_template_and_pool_lifecycle_over_http(client: httpx.Client, api_engine: Engine) -> None:
    r = client.post(
        "/api/v1/templates",
        json={"name": "m-tpl", "disk_path": "C:\\t\\m.vhdx", "memory_mb": 2048, "probe": "tcp:22"},
    )
    assert r.status_code == 201, r.text
    assert r.json()["probe"]["kind"] == "tcp" and r.json()["probe"]["port"] == 22
    assert api_engine.get_template("m-tpl").memory_mb == 2048
    r = client.post("/api/v1/pools", json={"name": "m-pool", "template": "m-tpl", "count": 2})
    assert r.status_code == 201 and r.json()["warm_count"] == 1
    r = client.patch("/api/v1/pools/m-pool", json={"warm": 2, "release": "save"})
    assert r.status_code == 200 and r.json()["release_policy"] == "save"
    r = client.post("/api/v1/pools/m-pool/provision")
    assert r.status_code == 200 and sorted(r.json()) == ["m-pool-001", "m-pool-002"]
    r = client.post("/api/v1/pools/m-pool/scale", json={"count": 3})
    assert r.status_code == 200 and r.json() == ["m-pool-003"]
    assert client.get("/api/v1/pools/m-pool").json()["total_vms"] == 3
    r = client.post("/api/v1/vms/m-pool-003/stop", params={"force": True})
    assert r.status_code == 200 and r.json()["state"] == "off"
    r = client.delete("/api/v1/vms/m-pool-003")
    assert r.status_code == 200 and "deleted" in r.json()["message"]
    # the template is in use: the CLI's refusal, word for word
    r = client.delete("/api/v1/templates/m-tpl")
    assert r.status_code == 409 and r.json()["code"] == "conflict"
    shown = cli_error(client, "template", "delete", "m-tpl")
    assert shown == r.json()["message"]
    r = client.delete("/api/v1/pools/m-pool")
    assert r.status_code == 409 and "--with-vms" in r.json()["message"]
    r = client.delete("/api/v1/pools/m-pool", params={"with_vms": True})
    assert r.status_code == 200 and "2 VM(s) removed" in r.json()["message"]
    assert client.delete("/api/v1/templates/m-tpl").status_code == 200


def cli_error(client: httpx.Client, *args: str) -> str:
    server: Server = client.server  # type: ignore[attr-defined]
    done = cli(server, *args)
    assert done.returncode != 0
    return done.stderr.strip().splitlines()[-1].removeprefix("hvkube: error: ")


@pytest.fixture(autouse=True)
def _server_on_client(client: httpx.Client, server: Server) -> None:
    client.server = server  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("body", "field_or_text"),
    [
        ({"name": "bad name", "template": "win11", "count": 1}, "name"),
        ({"name": "ok1", "template": "win11", "count": 1, "warm": 2}, "warm 2 plus hot 0"),
        ({"name": "ok2", "template": "nope", "count": 1}, "no template named 'nope'"),
        ({"name": "ok3", "template_name": "win11", "desired_count": -1}, "count"),
    ],
)
def test_bad_pool_input_changes_nothing(
    client: httpx.Client, body: dict[str, Any], field_or_text: str, dump: Callable[[], list[str]]
) -> None:
    before = dump()
    r = client.post("/api/v1/pools", json=body)
    assert r.status_code in (400, 404, 422), r.text
    assert field_or_text in (r.json().get("field") or "") + r.json()["message"]
    assert dump() == before


def test_same_pool_name_twice_is_409_already_exists(
    client: httpx.Client, new_pool: Callable[..., str]
) -> None:
    pool = new_pool(1)
    r = client.post("/api/v1/pools", json={"name": pool.upper(), "template": "win11", "count": 1})
    assert r.status_code == 409 and r.json()["code"] == "already_exists"
    assert r.json()["error"] == "AlreadyExists"


def test_agents_list(client: httpx.Client, new_pool: Callable[..., str]) -> None:
    pool = new_pool(1)
    made = client.post("/api/v1/agents", json={"pool": pool, "workflow": "w"}).json()
    listed = client.get("/api/v1/agents", params={"pool": pool}).json()
    assert [a["id"] for a in listed] == [made["id"]]


# -- leases that tell the truth ----------------------------------------------------------------


def test_renew_after_the_vm_went_to_another_client_is_lease_lost(
    client: httpx.Client, new_pool: Callable[..., str], dump: Callable[[], list[str]]
) -> None:
    pool = new_pool(1)
    first = acquire(client, pool)
    # someone resets the VM (ending every hold on it) and another client takes it
    assert client.post(f"/api/v1/vms/{first['name']}/reset").status_code == 200
    second = acquire(client, pool)
    assert second["name"] == first["name"]
    r = client.post(f"/api/v1/leases/{first['lease_id']}/renew")
    assert r.status_code == 409 and r.json()["code"] == "lease_lost", r.text
    # releasing with the lost lease neither releases the VM nor touches the live lease
    before = dump()
    r = client.post(f"/api/v1/vms/{first['name']}/release", json={"lease_id": first["lease_id"]})
    assert r.status_code == 409 and r.json()["code"] == "lease_lost"
    assert dump() == before
    assert client.post(f"/api/v1/leases/{second['lease_id']}/renew").status_code == 200
    r = client.post(f"/api/v1/vms/{second['name']}/release", json={"lease_id": second["lease_id"]})
    assert r.status_code == 200


def test_release_with_an_expired_lease_is_lease_expired(
    client: httpx.Client, new_pool: Callable[..., str]
) -> None:
    pool = new_pool(1)
    vm = acquire(client, pool)
    assert client.post(f"/api/v1/vms/{vm['name']}/release").status_code == 200
    r = client.post(f"/api/v1/vms/{vm['name']}/release", json={"lease_id": vm["lease_id"]})
    assert r.status_code == 409 and r.json()["code"] == "lease_expired"


def test_acquire_without_a_lease_holds_until_released(
    client: httpx.Client, new_pool: Callable[..., str], api_engine: Engine
) -> None:
    pool = new_pool(1)
    vm = acquire(client, pool, lease=False)
    assert vm["lease_id"] is None and vm["lease_expires_at"] is None
    held = api_engine.get_vm(vm["name"])
    assert held.holder and held.holder.startswith("nolease-")
    from core.models import holder_label

    assert holder_label(held.holder) == "held, no lease"  # as the dashboard shows it
    assert client.post(f"/api/v1/vms/{vm['name']}/release").status_code == 200
    assert api_engine.get_vm(vm["name"]).holder is None


def test_a_server_can_require_leases(tmp_path: Any) -> None:
    srv = start_server(tmp_path / "data", "--require-lease")
    try:
        headers = {"Authorization": f"Bearer {srv.token}"}
        r = httpx.post(
            f"{srv.url}/api/v1/acquire",
            json={"pool": "any", "lease": False},
            headers=headers,
            timeout=30,
        )
        assert r.status_code == 403 and r.json()["field"] == "lease"
    finally:
        stop_server(srv)


# -- agent input depth -------------------------------------------------------------------------


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


def test_agent_input_deeper_than_the_cli_allows_is_422_and_not_stored(
    client: httpx.Client, new_pool: Callable[..., str], dump: Callable[[], list[str]]
) -> None:
    pool = new_pool(1)
    before = dump()
    r = client.post("/api/v1/agents", json={"pool": pool, "workflow": "w", "input": nested(300)})
    assert r.status_code == 422 and r.json()["field"] == "input", r.text
    assert f"more than {MAX_JSON_DEPTH} levels" in r.json()["message"]
    assert dump() == before
    ok = client.post(
        "/api/v1/agents", json={"pool": pool, "workflow": "w", "input": nested(MAX_JSON_DEPTH)}
    )
    assert ok.status_code == 201
    server: Server = client.server  # type: ignore[attr-defined]
    listed = cli(server, "--json", "agent", "list")
    assert listed.returncode == 0, listed.stderr
    json.loads(listed.stdout)


# -- metrics -----------------------------------------------------------------------------------


def test_metrics_in_prometheus_text(client: httpx.Client, new_pool: Callable[..., str]) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    pool = new_pool(2)
    vm = acquire(client, pool)
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(r.text)}
    vms = {
        (s.labels["pool"], s.labels["state"]): s.value
        for s in families["hvkube_vms"].samples
        if s.labels["pool"] == pool
    }
    assert sum(vms.values()) == 2 and vms[(pool, "running")] == 1
    assert all(s.labels["host"] for s in families["hvkube_vms"].samples)
    counts = [s for s in families["hvkube_acquire_seconds"].samples if s.name.endswith("_count")]
    assert any(s.labels["tier"] == "warm" and s.value >= 1 for s in counts)
    assert "hvkube_resume_seconds" in families
    assert "hvkube_agents" in families
    kinds = {s.labels["kind"] for s in families["hvkube_host_memory_bytes"].samples}
    assert kinds == {"total", "free"}
    client.post(f"/api/v1/vms/{vm['name']}/release")


def test_hosts_view(client: httpx.Client, new_pool: Callable[..., str]) -> None:
    new_pool(1)
    hosts = client.get("/api/v1/hosts").json()
    assert hosts and all({"name", "status", "vms"} <= set(h) for h in hosts)
    one = client.get(f"/api/v1/hosts/{hosts[0]['name']}")
    assert one.status_code == 200 and one.json()["name"] == hosts[0]["name"]
    assert client.get("/api/v1/hosts/no-such-host").status_code == 404

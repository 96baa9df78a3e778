"""The earlier Rust hvkube's clients against our server, with only a bearer token added.

Its end-to-end flows (`tests/e2e.rs`: acquire, parallel acquire, double acquire, the
acquire/release cycle, release with `{"reset": false}`, the 404 cases) replayed request for
request, every answer decoded with its client's exact types (tests/api/rust_client.py,
strict: no int-from-float, no null-for-string). Two of its flows need a guest that answers
on port 8080 (its terminator's /health and MCP tools/list); the simulated host has none,
so those two calls are left out, the rest of their flows kept.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import BaseModel, ValidationError

from tests.api import rust_client as rc
from tests.api.conftest import Server, start_server, stop_server

POOL = "agents"


@pytest.fixture(scope="module")
def rust_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp("rust"))
    yield srv
    stop_server(srv)


@pytest.fixture(scope="module")
def c(rust_server: Server) -> Iterator[httpx.Client]:
    """The Rust client's HTTP client (30 s timeout), with the token added."""
    headers = {"Authorization": f"Bearer {rust_server.token}"}
    with httpx.Client(base_url=rust_server.url, headers=headers, timeout=30) as client:
        # The operator's setup (the Rust tests assume a pool named "agents" exists), done
        # over the API with the Rust request types; the MCP pattern is the Rust server's.
        body = {**rc.create_template("win11", "C:\\t\\win11.vhdx")}
        body["mcp_endpoint"] = "http://{ip}:8080/mcp"
        r = client.post("/api/v1/templates", json=body)
        assert r.status_code == 201, r.text
        rc.TemplateResponse.model_validate_json(r.content)
        r = client.post("/api/v1/pools", json=rc.create_pool(POOL, "win11", 3, 3))
        assert r.status_code == 201, r.text
        rc.PoolResponse.model_validate_json(r.content)
        r = client.post(f"/api/v1/pools/{POOL}/provision", json={"count": 3})
        assert r.status_code == 200, r.text
        assert sorted(r.json()) == ["agents-001", "agents-002", "agents-003"]
        yield client


def decode(model: type[BaseModel], r: httpx.Response) -> Any:
    assert r.is_success, r.text
    return model.model_validate_json(r.content)


def acquire(c: httpx.Client) -> rc.ResumeResponse:
    answer: rc.ResumeResponse = decode(
        rc.ResumeResponse, c.post("/api/v1/acquire", json=rc.acquire(POOL))
    )
    return answer


def release(c: httpx.Client, name: str, reset: bool = False) -> httpx.Response:
    return c.post(f"/api/v1/vms/{name}/release", json=rc.release(reset))


def test_the_strict_types_refuse_what_serde_refuses() -> None:
    good = {
        "vm_id": "a",
        "vm_name": "a",
        "ip_address": "1.2.3.4",
        "mcp_endpoint": "x",
        "resume_time_ms": 5,
    }
    rc.ResumeResponse.model_validate_json(httpx.Response(200, json=good).content)
    for bad in (
        {**good, "resume_time_ms": 5.5},
        {**good, "resume_time_ms": 5.0},
        {**good, "ip_address": None},
        {k: v for k, v in good.items() if k != "vm_id"},
    ):
        with pytest.raises(ValidationError):
            rc.ResumeResponse.model_validate_json(httpx.Response(200, json=bad).content)


def test_health(c: httpx.Client) -> None:
    assert decode(rc.HealthResponse, c.get("/health")).status == "ok"


def test_acquire_and_release(c: httpx.Client) -> None:
    vm = acquire(c)
    assert vm.ip_address != ""
    assert ":8080/mcp" in vm.mcp_endpoint
    r = release(c, vm.vm_name, reset=False)
    assert r.is_success
    decode(rc.ApiSuccess, r)
    # reset false means "save": the VM is parked saved, free
    after = decode(rc.VMResponse, c.get(f"/api/v1/vms/{vm.vm_name}"))
    assert after.state == "saved"


def test_parallel_acquire(c: httpx.Client) -> None:
    got: list[rc.ResumeResponse] = []

    def one() -> None:
        with httpx.Client(base_url=str(c.base_url), headers=c.headers, timeout=30) as mine:
            got.append(acquire(mine))

    threads = [threading.Thread(target=one) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 2
    assert got[0].vm_id != got[1].vm_id
    for vm in got:
        release(c, vm.vm_name)


def test_acquire_from_nonexistent_pool(c: httpx.Client) -> None:
    r = c.post("/api/v1/acquire", json=rc.acquire("nonexistent-pool"))
    assert r.status_code == 404
    assert rc.ApiError.model_validate_json(r.content).error == "NotFound"


def test_release_nonexistent_vm(c: httpx.Client) -> None:
    r = release(c, "nonexistent-vm")
    assert r.status_code == 404
    rc.ApiError.model_validate_json(r.content)


def test_resume_nonexistent_vm(c: httpx.Client) -> None:
    r = c.post("/api/v1/vms/nonexistent-vm/resume")
    assert r.status_code == 404
    rc.ApiError.model_validate_json(r.content)


def test_get_nonexistent_template(c: httpx.Client) -> None:
    r = c.get("/api/v1/templates/nonexistent")
    assert r.status_code == 404
    assert rc.ApiError.model_validate_json(r.content).error == "NotFound"


def test_double_acquire_same_vm(c: httpx.Client) -> None:
    vm1 = acquire(c)
    vm2 = acquire(c)
    assert vm1.vm_id != vm2.vm_id
    release(c, vm1.vm_name)
    release(c, vm2.vm_name)


def test_acquire_release_cycle(c: httpx.Client) -> None:
    vm = acquire(c)
    release(c, vm.vm_name)
    vm2 = acquire(c)
    release(c, vm2.vm_name)


def test_no_vm_left_is_503_no_vm_available(c: httpx.Client) -> None:
    held = [acquire(c) for _ in range(3)]
    r = c.post("/api/v1/acquire", json=rc.acquire(POOL))
    assert r.status_code == 503
    assert rc.ApiError.model_validate_json(r.content).error == "NoVMAvailable"
    for vm in held:
        release(c, vm.vm_name)


def test_every_answer_decodes_with_its_types(c: httpx.Client) -> None:
    [decode(rc.TemplateResponse, httpx.Response(200, json=t)) for t in _list(c, "templates")]
    [decode(rc.PoolResponse, httpx.Response(200, json=p)) for p in _list(c, "pools")]
    status = decode(rc.PoolStatusResponse, c.get(f"/api/v1/pools/{POOL}"))
    assert status.total_vms == 3 and status.saved_vms + status.running_vms <= 3
    vms = _list(c, "vms")
    assert len(vms) == 3
    [decode(rc.VMResponse, httpx.Response(200, json=v)) for v in vms]
    decode(rc.TemplateResponse, c.get("/api/v1/templates/win11"))
    name = "agents-001"
    decode(rc.ResumeResponse, c.post(f"/api/v1/vms/{name}/resume"))
    decode(rc.ApiSuccess, c.post(f"/api/v1/vms/{name}/save"))
    decode(rc.ApiSuccess, c.post(f"/api/v1/vms/{name}/reset"))
    decode(rc.ApiSuccess, c.post(f"/api/v1/vms/{name}/prepare"))
    decode(rc.ApiSuccess, c.post(f"/api/v1/pools/{POOL}/prepare"))
    decode(rc.ApiSuccess, c.post("/api/v1/reconcile"))
    conflict = c.post(f"/api/v1/vms/{name}/save")  # saved already
    assert conflict.status_code == 409
    assert rc.ApiError.model_validate_json(conflict.content).error == "InvalidState"


def test_create_routes_answer_201_and_delete_routes_a_message(c: httpx.Client) -> None:
    r = c.post("/api/v1/templates", json=rc.create_template("tmp-tpl", "C:\\t\\x.vhdx"))
    assert r.status_code == 201
    t = decode(rc.TemplateResponse, r)
    assert (t.id, t.memory_mb, t.cpu_count, t.gpu_enabled) == ("tmp-tpl", 4096, 2, False)
    r = c.post("/api/v1/pools", json=rc.create_pool("tmp-pool", "tmp-tpl", 3, 1))
    assert r.status_code == 201
    p = decode(rc.PoolResponse, r)
    assert (p.template_id, p.desired_count, p.warm_count) == ("tmp-tpl", 3, 1)
    assert "deleted" in decode(rc.ApiSuccess, c.delete("/api/v1/pools/tmp-pool")).message
    assert "deleted" in decode(rc.ApiSuccess, c.delete("/api/v1/templates/tmp-tpl")).message


def _list(c: httpx.Client, what: str) -> list[dict[str, Any]]:
    r = c.get(f"/api/v1/{what}")
    assert r.status_code == 200, r.text
    found: list[dict[str, Any]] = r.json()
    return found


def test_docs_name_the_compatibility_test() -> None:
    docs = (Path(__file__).resolve().parents[2] / "docs" / "api.md").read_text()
    assert "tests/api/test_rust_client.py" in docs

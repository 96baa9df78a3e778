"""`/mcp` under `hvkube serve`: the MCP tools over streamable HTTP behind the API's bearer
token, each desktop under an API lease that only its own session drives; and the recordings
routes."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.api.conftest import Server
from tests.mcp_support import png_of

pytest.importorskip("mcp")


async def two_sessions(server: Server, pool: str) -> dict[str, Any]:
    import httpx2
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    headers = {"Authorization": f"Bearer {server.token}"}

    out: dict[str, Any] = {}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=30) as http_a,
        httpx2.AsyncClient(headers=headers, timeout=30) as http_b,
        streamable_http_client(f"{server.url}/mcp", http_client=http_a) as (read_a, write_a),
        streamable_http_client(f"{server.url}/mcp", http_client=http_b) as (read_b, write_b),
        ClientSession(read_a, write_a) as a,
        ClientSession(read_b, write_b) as b,
    ):
        await a.initialize()
        await b.initialize()
        out["tools"] = {t.name for t in (await a.list_tools()).tools}
        got = await a.call_tool("acquire_desktop", {"pool": pool})
        out["got"] = got.structured_content
        vm = out["got"]["vm"]
        out["shot"] = await a.call_tool("screenshot", {"vm": vm})
        out["other"] = await b.call_tool("screenshot", {"vm": vm})
        out["other_release"] = await b.call_tool("release_desktop", {"vm": vm})
        out["released"] = await a.call_tool("release_desktop", {"vm": vm})
    return out


def test_mcp_over_http_with_leases_per_session(
    server: Server, client: httpx.Client, new_pool: Callable[..., str]
) -> None:
    pool = new_pool(1)
    refused = httpx.post(f"{server.url}/mcp", json={}, timeout=10)
    assert refused.status_code == 401 and refused.json()["code"] == "unauthorized"

    out = asyncio.run(two_sessions(server, pool))
    # The simulated host has a screen but no keyboard or mouse.
    assert out["tools"] == {
        "acquire_desktop",
        "release_desktop",
        "screenshot",
        "wait_for_screen_change",
    }
    lease = out["got"]["lease"]
    assert lease.startswith("api-")
    assert png_of(out["shot"]).size == (640, 400)
    assert out["other"].is_error and out["other"].structured_content["error"] == "not_held"
    assert out["other_release"].structured_content["error"] == "not_held"
    assert not out["released"].is_error
    vm = client.get(f"/api/v1/vms/{out['got']['vm']}").json()
    assert vm["holder"] is None
    assert client.get(f"/api/v1/leases/{lease}").status_code == 404  # dropped on release

    # The session's screenshot was recorded under its lease.
    listed = client.get("/api/v1/recordings").json()
    assert lease in [r["id"] for r in listed]
    entries = client.get(f"/api/v1/recordings/{lease}").json()
    assert entries[0]["vm"] == out["got"]["vm"] and entries[0]["frame"] == "000001.png"
    frame = client.get(f"/api/v1/recordings/{lease}/frames/000001.png")
    assert frame.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(frame.content)).size == (640, 400)
    gif = client.get(f"/api/v1/recordings/{lease}/export", params={"format": "gif"})
    assert gif.status_code == 200 and gif.content[:6] == b"GIF89a"
    assert client.get("/api/v1/recordings/nope-1").status_code == 404
    assert client.get(f"/api/v1/recordings/{lease}/frames/000099.png").status_code == 404
    assert client.get(f"/api/v1/recordings/{lease}/export?format=avi").status_code == 422

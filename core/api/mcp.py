"""`/mcp` under `hvkube serve`: the MCP tools over streamable HTTP, behind the API's token.

Each VM an MCP session acquires is held under an API lease (the same as POST /acquire): every
tool call on it renews the lease, and the server's sweeper gives it back when the session
lets the lease expire. A session drives only the leases it took itself.
"""

from __future__ import annotations

import threading
from collections.abc import Collection
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.from_thread
from starlette.types import ASGIApp, Receive, Scope, Send

from core.api.app import ApiState, run
from core.api.leases import new_lease_id
from core.models import AcquiredVM, ReleasePolicy

PATH = "/mcp"


@dataclass
class McpSlot:
    """Where the MCP app goes once the server has started (its engine opens at start-up)."""

    app: ASGIApp | None = None


class McpMount:
    """ASGI middleware: requests for /mcp go to the MCP app, all others to the API."""

    def __init__(self, app: ASGIApp, slot: McpSlot) -> None:
        self.app = app
        self.slot = slot

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        inner = self.slot.app
        if inner is not None and scope["type"] == "http" and scope["path"].rstrip("/") == PATH:
            await inner(scope, receive, send)
            return
        await self.app(scope, receive, send)


@dataclass
class HttpLeases:
    st: ApiState
    _sessions: dict[str | None, set[str]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    async def acquire(
        self, session: str | None, pool: str, wait_s: float
    ) -> tuple[AcquiredVM, str]:
        lease_id = new_lease_id()
        seconds = self.st.lease_seconds
        try:
            vm = await self.st.acquire_waiting(pool, lease_id, wait_s, wait_s + seconds + 60.0)
            await run(self.st.leases.bind, lease_id, vm.name, pool, seconds)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await run(self.st.leases.abandon, lease_id)
            raise
        with self._lock:
            self._sessions.setdefault(session, set()).add(lease_id)
        return vm, lease_id

    def holders(self, session: str | None) -> Collection[str]:
        with self._lock:
            return frozenset(self._sessions.get(session, ()))

    def touch(self, session: str | None, holder: str | None) -> None:
        if holder is not None:
            self.st.leases.renew(holder, None)

    def release(self, session: str | None, vm: str, policy: ReleasePolicy | None) -> Any:
        lease_id = self.st.engine.get_vm(vm).holder
        after, pool = self.st.release(vm, policy, lease_id)
        with self._lock:
            self._sessions.get(session, set()).discard(lease_id or "")
        # Runs in a worker thread; waking waiters happens on the event loop.
        anyio.from_thread.run_sync(self.st.vm_changed, pool)
        return after


def start(st: ApiState, slot: McpSlot) -> AbstractAsyncContextManager[Any]:
    """Build the MCP server over the API's engine, put it in `slot`, and return the context
    its sessions run in (entered for the server's lifetime)."""
    from mcp.server.transport_security import TransportSecuritySettings

    from core.computer.tools import build_server
    from core.desktop import Desktop
    from core.recording.recorder import Recorder

    desktop = Desktop(st.engine, "api", Recorder.for_engine(st.engine))
    server = build_server(st.engine, desktop, HttpLeases(st))
    # The bearer token guards /mcp; a page in a browser cannot send it, so the Host check
    # against DNS rebinding would only refuse hosts the operator chose to serve on.
    security = TransportSecuritySettings(enable_dns_rebinding_protection=False)
    slot.app = server.streamable_http_app(streamable_http_path=PATH, transport_security=security)
    return server.session_manager.run()

"""Which VMs an MCP session holds, and how it takes and gives them back.

Over stdio the server process is one session: it acquires under one holder of its own
(`mcp-<hex>`) and gives every VM back when the client goes. Over HTTP each VM is taken under
an API lease (renewed by every tool call on it, released by the server's sweeper when left
to expire), and a session drives only the leases it took.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Collection
from contextlib import suppress
from typing import Any, Protocol

from core.engine import Engine
from core.errors import HvkubeError
from core.models import AcquiredVM, ReleasePolicy


class SessionLeases(Protocol):
    """The VMs one MCP session holds. `acquire` is awaited; the others block (call them from a
    worker thread). `session` is the MCP session id (None over stdio)."""

    async def acquire(
        self, session: str | None, pool: str, wait_s: float
    ) -> tuple[AcquiredVM, str]: ...

    def holders(self, session: str | None) -> Collection[str]: ...

    def touch(self, session: str | None, holder: str | None) -> None: ...

    def release(self, session: str | None, vm: str, policy: ReleasePolicy | None) -> Any: ...


def policy_for(reset: bool | None) -> ReleasePolicy | None:
    """release_desktop's `reset`: true resets to clean, false saves as is, absent follows the
    pool's policy."""
    if reset is None:
        return None
    return ReleasePolicy.RESET if reset else ReleasePolicy.SAVE


class ProcessLeases:
    """One holder for the whole process (stdio: one client)."""

    def __init__(self, engine: Engine, holder: str | None = None) -> None:
        self.engine = engine
        self.holder = holder or f"mcp-{secrets.token_hex(6)}"
        self._lock = threading.Lock()

    async def acquire(
        self, session: str | None, pool: str, wait_s: float
    ) -> tuple[AcquiredVM, str]:
        import anyio.to_thread

        vm = await anyio.to_thread.run_sync(
            lambda: self.engine.acquire(pool, wait_s, holder=self.holder)
        )
        return vm, self.holder

    def holders(self, session: str | None) -> Collection[str]:
        return (self.holder,)

    def touch(self, session: str | None, holder: str | None) -> None:
        return None

    def release(self, session: str | None, vm: str, policy: ReleasePolicy | None) -> Any:
        return self.engine.release(vm, policy=policy, holder=self.holder)

    def held(self) -> list[str]:
        return [vm.name for vm in self.engine.list_vms() if vm.holder == self.holder]

    def release_all(self) -> list[str]:
        """Give back every VM still held (by each pool's policy); the names given back."""
        given = []
        for name in self.held():
            with suppress(HvkubeError):
                self.engine.release(name, holder=self.holder)
                given.append(name)
        return given

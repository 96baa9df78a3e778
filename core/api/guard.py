"""Holding up when exposed: slow and excess connections are closed, not served.

uvicorn has no deadline for receiving a request and no cap on open connections, so a
client that opens many connections and sends half a request on each holds them all until
the process runs out of file descriptors, and then nobody is answered. Here every
connection must deliver a whole request (head and body) within `request_timeout_s` of
opening or of its previous answer, or it is closed; and beyond `max_connections` a new
connection gets a 503 JSON answer and is closed at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("hvkube.api")

# File descriptors kept free beyond the connection cap (database, log, hypervisor sessions).
FD_RESERVE = 128


def busy_response() -> bytes:
    body = json.dumps(
        {
            "code": "too_many_connections",
            "error": "TooManyConnections",
            "message": "the server has too many open connections; retry in a few seconds",
        }
    ).encode()
    head = (
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nRetry-After: 5\r\nConnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


BUSY = busy_response()


def raise_fd_limit(wanted: int) -> int:
    """Raise this process's open-file limit toward `wanted` (as far as the hard limit
    allows); returns the soft limit in force."""
    if sys.platform == "win32":
        return wanted + FD_RESERVE  # no such limit on sockets there
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


def connection_cap(wanted: int) -> int:
    """The cap on open connections that fits within this process's file descriptors."""
    soft = raise_fd_limit(wanted + FD_RESERVE)
    return max(16, min(wanted, soft - FD_RESERVE))


class GuardedH11(H11Protocol):
    """uvicorn's h11 protocol with a request deadline and a connection cap."""

    request_timeout_s = 5.0
    max_connections = 1000
    refused = 0  # connections refused over the cap, for the log

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        over = len(self.connections) >= self.max_connections
        super().connection_made(transport)
        if over:
            cls = type(self)
            cls.refused += 1
            if cls.refused in (1, 10, 100) or cls.refused % 1000 == 0:
                log.warning(
                    "over %d open connections: refused %d so far", self.max_connections, cls.refused
                )
            transport.write(BUSY)
            transport.close()
            return
        self._arm()

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(self.request_timeout_s, self._too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        if self.conn.their_state is not h11.DONE and not self.transport.is_closing():
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is h11.DONE:
            self._disarm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)


def guarded_protocol(request_timeout_s: float, max_connections: int) -> type[GuardedH11]:
    """A protocol class with these limits, for `uvicorn.Config(http=...)`."""
    return type(
        "HvkubeH11",
        (GuardedH11,),
        {"request_timeout_s": request_timeout_s, "max_connections": max_connections, "refused": 0},
    )

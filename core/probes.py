"""Readiness probes: when is a freshly booted guest ready to be checkpointed?"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable

from core.backends.base import Backend, VMRef
from core.errors import Interrupted, OperationTimeout
from core.models import ReadinessProbe


def _tcp_open(host: str, port: int, timeout_s: float = 2.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def _http_ok(url: str, timeout_s: float = 3.0) -> bool:
    import urllib.error  # only templates with an http probe need it
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return 200 <= int(response.status) < 500
    except (urllib.error.URLError, OSError, ValueError):
        return False


def poll(
    check: Callable[[], bool],
    timeout_s: float,
    what: str,
    vm: str,
    stop: threading.Event | None = None,
) -> None:
    """Call `check` until it is true, backing off from 50 ms to 1 s, or raise a timeout
    (or Interrupted, once `stop` is set)."""
    deadline = time.monotonic() + timeout_s
    delay = 0.05
    while True:
        if check():
            return
        if stop is not None and stop.is_set():
            raise Interrupted(f"{vm}: stopped while waiting for the {what}")
        if time.monotonic() >= deadline:
            raise OperationTimeout(
                f"{vm}: {what} not seen within {timeout_s:g} s", vm=vm, operation="wait_ready"
            )
        if stop is not None:
            stop.wait(delay)
        else:
            time.sleep(delay)
        delay = min(1.0, delay * 2)


def wait_ready(
    backend: Backend,
    ref: VMRef,
    probe: ReadinessProbe,
    timeout_s: float,
    stop: threading.Event | None = None,
) -> str:
    """Wait until the guest answers its probe. Returns how readiness was decided.

    A simulated host has no reachable guests, so every probe there is answered by
    its heartbeat: no traffic ever goes to a simulated address.
    """
    timeout = min(timeout_s, probe.timeout_s)
    vm = ref.name
    if probe.kind == "heartbeat" or backend.simulated:
        poll(lambda: backend.heartbeat_ok(ref), timeout, "guest heartbeat", vm, stop)
        return "heartbeat"

    def address() -> str | None:
        return backend.ip_address(ref)

    poll(lambda: address() is not None, timeout, "guest IP address", vm, stop)
    if probe.kind == "tcp":
        port = probe.port or 3389
        poll(lambda: _tcp_open(address() or "", port), timeout, f"TCP port {port}", vm, stop)
        return f"tcp:{port}"
    url_pattern = probe.url or "http://{ip}/"
    poll(
        lambda: _http_ok(url_pattern.replace("{ip}", address() or "")),
        timeout,
        f"HTTP {url_pattern}",
        vm,
        stop,
    )
    return "http"

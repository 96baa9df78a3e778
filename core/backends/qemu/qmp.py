"""A small QMP client over a unix socket.

QMP speaks JSON objects, one per line. On connect the server sends a greeting;
the client must send `qmp_capabilities` before any other command. Asynchronous
events (`{"event": ...}`) may arrive between a command and its return; they are
kept in `events` and never mistaken for the answer.
"""

from __future__ import annotations

import json
import socket
import time
from itertools import count
from typing import Any

from core.errors import BackendError, OperationTimeout


class QMPError(BackendError):
    """QEMU answered a command with an error object."""

    def __init__(self, message: str, *, error_class: str, vm: str | None, operation: str) -> None:
        super().__init__(message, vm=vm, operation=operation, raw=error_class)
        self.error_class = error_class


class QMPClient:
    """One QMP session. Use as a context manager; every call has a timeout."""

    def __init__(self, path: str, *, vm: str | None = None, timeout_s: float = 10.0) -> None:
        self.path = path
        self.vm = vm
        self.timeout_s = timeout_s
        self.events: list[dict[str, Any]] = []
        self.greeting: dict[str, Any] = {}
        self._sock: socket.socket | None = None
        self._buffer = b""
        self._ids = count(1)

    # -- connection ----------------------------------------------------------------------------

    def connect(self) -> QMPClient:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout_s)
        try:
            sock.connect(self.path)
        except OSError as exc:
            sock.close()
            raise BackendError(
                f"cannot reach QEMU's monitor at {self.path}: {exc}",
                vm=self.vm,
                operation="qmp",
            ) from None
        self._sock = sock
        deadline = time.monotonic() + self.timeout_s
        greeting = self._read_message(deadline, "greeting")
        if "QMP" not in greeting:
            self.close()
            raise BackendError(
                f"unexpected QMP greeting: {greeting!r}", vm=self.vm, operation="qmp"
            )
        self.greeting = greeting
        self.execute("qmp_capabilities")
        return self

    def close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None

    def __enter__(self) -> QMPClient:
        return self.connect()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- framing -------------------------------------------------------------------------------

    def _read_message(self, deadline: float, what: str) -> dict[str, Any]:
        assert self._sock is not None
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise OperationTimeout(
                    f"QEMU did not answer {what} within {self.timeout_s:g} s",
                    vm=self.vm,
                    operation=what,
                )
            self._sock.settimeout(remaining)
            try:
                chunk = self._sock.recv(65536)
            except TimeoutError:
                continue
            except OSError as exc:
                raise BackendError(
                    f"QEMU's monitor connection failed during {what}: {exc}",
                    vm=self.vm,
                    operation=what,
                ) from None
            if not chunk:
                raise BackendError(
                    f"QEMU closed its monitor during {what} (the process exited?)",
                    vm=self.vm,
                    operation=what,
                )
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        try:
            message = json.loads(line)
        except json.JSONDecodeError:
            raise BackendError(
                f"QEMU sent a line that is not JSON: {line[:200]!r}", vm=self.vm, operation=what
            ) from None
        if not isinstance(message, dict):
            raise BackendError(f"unexpected QMP message {message!r}", vm=self.vm, operation=what)
        return message

    # -- commands ------------------------------------------------------------------------------

    def execute(
        self, command: str, arguments: dict[str, Any] | None = None, timeout_s: float | None = None
    ) -> Any:
        """Run one command and return its `return` value; events seen meanwhile are kept."""
        if self._sock is None:
            raise BackendError("QMP client is not connected", vm=self.vm, operation=command)
        ident = f"hvkube-{next(self._ids)}"
        request: dict[str, Any] = {"execute": command, "id": ident}
        if arguments:
            request["arguments"] = arguments
        try:
            self._sock.sendall(json.dumps(request).encode() + b"\n")
        except OSError as exc:
            raise BackendError(
                f"cannot send {command} to QEMU: {exc}", vm=self.vm, operation=command
            ) from None
        deadline = time.monotonic() + (timeout_s or self.timeout_s)
        while True:
            message = self._read_message(deadline, command)
            if "event" in message:
                self.events.append(message)
                continue
            if message.get("id") != ident:
                continue  # an answer to a request we gave up on
            if "error" in message:
                error = message["error"]
                raise QMPError(
                    f"QEMU refused {command}: {error.get('desc', error)}",
                    error_class=str(error.get("class", "GenericError")),
                    vm=self.vm,
                    operation=command,
                )
            return message.get("return")

    def wait_event(self, name: str, timeout_s: float) -> dict[str, Any]:
        """Wait for an event named `name` (already received ones count)."""
        for i, event in enumerate(self.events):
            if event.get("event") == name:
                return self.events.pop(i)
        deadline = time.monotonic() + timeout_s
        while True:
            message = self._read_message(deadline, f"event {name}")
            if message.get("event") == name:
                return message
            if "event" in message:
                self.events.append(message)

"""The guest: whether it is up, and its serial console and screen viewer.

Readiness: the guest prints `HVKUBE-READY` on its serial console (kept in serial.log,
and remembered in runtime.json until the next cold boot), or a QEMU guest agent
answers on its channel. The serial console is a unix socket; the screen is served
over VNC on another one, for a viewer.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time

from core.backends.base import VMRef
from core.backends.qemu.accel import READY_MARKER
from core.backends.qemu.layout import VMFiles, now_iso, read_runtime, set_runtime
from core.backends.qemu.process import QemuProcesses
from core.backends.qemu.registry import VMRegistry
from core.errors import BackendError, InvalidInput, OperationTimeout, Unsupported
from core.models import HostState

VIEWERS = ("remote-viewer", "vncviewer")


def find_viewer() -> str | None:
    """The first VNC viewer of `VIEWERS` installed on this host."""
    return next((v for v in VIEWERS if shutil.which(v)), None)


def guest_booted(files: VMFiles) -> bool:
    """Has the guest printed the ready marker since its cold boot?"""
    runtime = read_runtime(files)
    if runtime.get("booted"):
        return True
    try:
        with open(files.serial, "rb") as fh:
            seen = READY_MARKER.encode() in fh.read()
    except OSError:
        seen = False
    if seen:
        set_runtime(files, booted=True, booted_at=now_iso())
    return seen


def agent_ping(files: VMFiles, timeout_s: float = 0.3) -> bool:
    """True when a QEMU guest agent answers a sync request on its channel."""
    token = int.from_bytes(os.urandom(4), "big") & 0x7FFFFFFF
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout_s)
            sock.connect(str(files.qga))
            request = {"execute": "guest-sync-delimited", "arguments": {"id": token}}
            sock.sendall(b"\xff" + json.dumps(request).encode() + b"\n")
            deadline = time.monotonic() + timeout_s
            data = b""
            while time.monotonic() < deadline:
                chunk = sock.recv(4096)
                if not chunk:
                    return False
                data = (data + chunk)[-4096:]  # the guest's words: only the tail is kept
                if f'"return": {token}'.encode() in data.replace(b'":', b'": '):
                    return True
    except OSError:
        return False
    return False


class Guest:
    """The guests of the VMs in a registry; `viewer` opens their screens (None: no viewer)."""

    def __init__(self, registry: VMRegistry, processes: QemuProcesses, viewer: str | None) -> None:
        self.registry = registry
        self.processes = processes
        self.viewer = viewer

    def heartbeat_ok(self, vm: VMRef) -> bool:
        with self.registry.trying(vm, "heartbeat", wait_s=2.0) as held:
            if held is None:
                return False
            files, _ = held
            state, _ = self.processes.run_state(files)
            if state is not HostState.RUNNING:
                return False
            return guest_booted(files) or agent_ping(files)

    def console(self, vm: VMRef) -> subprocess.Popen[bytes]:
        """Open a VNC viewer on the VM's screen (QEMU serves VNC on a unix socket)."""
        name = vm.name
        files, _ = self.registry.resolve(vm, "console")
        if self.viewer is None:
            raise Unsupported(
                f"no VNC viewer found (install {' or '.join(VIEWERS)}); the screen is served "
                f"on {files.vnc}",
                vm=name,
                operation="console",
            )
        target = f"vnc+unix://{files.vnc}" if "remote-viewer" in self.viewer else str(files.vnc)
        return subprocess.Popen([self.viewer, target], start_new_session=True)

    def console_exchange(self, vm: VMRef, line: str, expect: str, timeout_s: float = 10.0) -> str:
        """Send a line on the serial console and return what comes back until `expect`."""
        name = vm.name
        files, _ = self.registry.resolve(vm, "console")
        if "\n" in line or "\r" in line:
            raise InvalidInput("console input is one line without line breaks")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(timeout_s)
                sock.connect(str(files.console))
                sock.sendall(line.encode() + b"\n")
                deadline = time.monotonic() + timeout_s
                data = b""
                while expect.encode() not in data:
                    if time.monotonic() >= deadline:
                        raise OperationTimeout(
                            f"'{name}': {expect!r} not seen on the console within {timeout_s:g} s",
                            vm=name,
                            operation="console",
                        )
                    chunk = sock.recv(4096)
                    if not chunk:
                        break
                    data += chunk
        except OSError as exc:
            raise BackendError(
                f"'{name}': serial console unreachable: {exc}", vm=name, operation="console"
            ) from None
        return data.decode(errors="replace")

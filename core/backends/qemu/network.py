"""The guest's network: user-mode networking, reached through one forwarded port.

No traffic leaves the host (`restrict=on`); one TCP port on the loopback interface,
picked free when the VM is made and kept in its `vm.json` as `rdp_port`, is forwarded
to the guest's RDP port.
"""

from __future__ import annotations

import socket

from core.backends.base import VMRef
from core.backends.qemu.process import QemuProcesses
from core.backends.qemu.registry import VMRegistry
from core.models import HostState

GUEST_PORT = 3389
LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def netdev(port: int) -> str:
    """The `-netdev` value: user-mode networking, `port` forwarded to the guest's RDP."""
    return f"user,id=net0,restrict=on,hostfwd=tcp:{LOOPBACK}:{port}-:{GUEST_PORT}"


class Network:
    """Where a VM's guest is reached."""

    def __init__(self, registry: VMRegistry, processes: QemuProcesses) -> None:
        self.registry = registry
        self.processes = processes

    def ip_address(self, vm: VMRef) -> str | None:
        files, _ = self.registry.resolve(vm, "ip")
        state, _ = self.processes.state_for_read(files)
        # User-mode networking: the guest is reached through a port on the loopback interface.
        return LOOPBACK if state is HostState.RUNNING else None

    def forwarded_port(self, vm: VMRef) -> int:
        """The loopback port forwarded to the guest's RDP port (3389). By ref, like every
        other operation: a same-named VM that is not this one has its own port."""
        return int(self.registry.resolve(vm, "ip")[1]["rdp_port"])

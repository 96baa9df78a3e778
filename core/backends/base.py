"""The one interface the orchestrator needs from a hypervisor.

Each backend maps its own world to VM names and `HostState`s. A backend that
lacks a capability lists it as absent in `capabilities` and raises
`Unsupported` from that method: never a fake result.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Protocol, runtime_checkable

from core.models import HostCapacity, HostVM


class Capability(StrEnum):
    GPU = "gpu"
    SCREENSHOT = "screenshot"
    HEARTBEAT = "heartbeat"
    PAUSE = "pause"
    CHECKPOINT_WITH_MEMORY = "checkpoint_with_memory"
    INPUT = "input"
    CONSOLE = "console"


CLEAN_CHECKPOINT = "clean"


@runtime_checkable
class Backend(Protocol):
    """Operations on one hypervisor host. Names are exact: never wildcards."""

    name: str
    simulated: bool
    capabilities: frozenset[Capability]

    def list_vms(self, prefix: str | None = None) -> list[HostVM]:
        """Every VM on the host (whose name starts with `prefix`, when given)."""
        ...

    def get_vm(self, name: str) -> HostVM | None:
        """The VM with exactly this name, or None."""
        ...

    def disk_path_for(self, vm_name: str, template_disk: str) -> str:
        """Where the clone of `template_disk` for `vm_name` lives on this host."""
        ...

    def create_differencing_disk(self, parent_path: str, child_path: str) -> None: ...

    def remove_disk(self, path: str) -> None:
        """Delete a disk file that no VM uses (a half-provisioned clone). Absent: no error."""
        ...

    def create_vm(self, name: str, disk_path: str, memory_mb: int, cpus: int, gpu: bool) -> None:
        """Create an Off VM on the disk (generation 2, automatic checkpoints off)."""
        ...

    def start(self, name: str) -> None:
        """Cold boot an Off VM or resume a Saved one, as Hyper-V's Start-VM does."""
        ...

    def save(self, name: str) -> None: ...

    def pause(self, name: str) -> None: ...

    def unpause(self, name: str) -> None: ...

    def stop(self, name: str, force: bool = False) -> None:
        """Shut down gracefully, or turn off when `force`."""
        ...

    def remove(self, name: str) -> None:
        """Remove the VM with its disk, saved state and checkpoints."""
        ...

    def checkpoint(self, name: str, checkpoint: str) -> None:
        """A standard checkpoint, with memory when the VM runs."""
        ...

    def restore_checkpoint(self, name: str, checkpoint: str) -> None: ...

    def remove_checkpoint(self, name: str, checkpoint: str) -> None: ...

    def ip_address(self, name: str) -> str | None: ...

    def heartbeat_ok(self, name: str) -> bool: ...

    def capacity(self) -> HostCapacity: ...

    def screenshot(self, name: str) -> bytes:
        """The VM's screen as PNG bytes."""
        ...

    def saved_state_path(self, name: str) -> str | None: ...

    def close(self) -> None: ...


@runtime_checkable
class InputBackend(Protocol):
    """Optional: backends with Capability.INPUT drive the guest's keyboard and mouse from the
    host, and with Capability.CONSOLE open the hypervisor's console window."""

    def send_text(self, name: str, text: str) -> None:
        """Type ASCII text (chunked as the hypervisor needs)."""
        ...

    def send_key(self, name: str, key: str) -> None:
        """Press and release one key: a name (enter, f5), a character, a code, ctrl+alt+del."""
        ...

    def click(self, name: str, x: int, y: int, button: str = "left") -> None: ...

    def console(self, name: str) -> object:
        """Start the hypervisor's console viewer for the VM; returns the started process."""
        ...

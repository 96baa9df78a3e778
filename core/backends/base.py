"""The one interface the orchestrator needs from a hypervisor.

Each backend maps its own world to VM names and `HostState`s. A backend that
lacks a capability lists it as absent in `capabilities` and raises
`Unsupported` from that method: never a fake result.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

from core.models import HostCapacity, HostVM


class Capability(StrEnum):
    GPU = "gpu"
    SCREENSHOT = "screenshot"
    HEARTBEAT = "heartbeat"
    PAUSE = "pause"
    CHECKPOINT_WITH_MEMORY = "checkpoint_with_memory"
    INPUT = "input"
    CONSOLE = "console"
    # The guest's RDP port is forwarded to a port on this host (QEMU's user-mode network).
    FORWARDED_RDP = "forwarded_rdp"
    # Other hosts of the fleet are reachable from here (the simulated hosts of one machine).
    OTHER_HOSTS = "other_hosts"


CLEAN_CHECKPOINT = "clean"


@dataclass(frozen=True)
class VMRef:
    """A VM as hvkube addresses it: by the hypervisor's own id, with its name to show."""

    name: str
    id: str

    def __str__(self) -> str:
        return self.name


@runtime_checkable
class Backend(Protocol):
    """Operations on one hypervisor host.

    Every operation on a VM takes a `VMRef` and addresses the VM by its id, never by a
    name lookup: a VM with the same name that hvkube did not make is never touched.
    Names are compared ignoring case, as Hyper-V and NTFS do."""

    name: str
    simulated: bool
    capabilities: frozenset[Capability]

    def list_vms(self, prefix: str | None = None) -> list[HostVM]:
        """Every VM on the host (whose name starts with `prefix`, ignoring case, when given).
        A VM the host cannot read (its files are gone) is left out, not an error."""
        ...

    def find_vms(self, name: str) -> list[HostVM]:
        """The VMs named `name`, ignoring case (Hyper-V allows several)."""
        ...

    def get_vm(self, vm: VMRef) -> HostVM | None:
        """The VM with this id, or None when the host has no such VM."""
        ...

    def disk_path_for(self, vm_name: str, template_disk: str) -> str:
        """Where the clone of `template_disk` for `vm_name` lives on this host."""
        ...

    def create_differencing_disk(self, parent_path: str, child_path: str) -> None:
        """A new differencing disk; HostObjectExists when a file is already there."""
        ...

    def remove_disk(self, path: str) -> None:
        """Delete a disk file that no VM uses. Absent: no error."""
        ...

    def create_vm(
        self, name: str, disk_path: str, memory_mb: int, cpus: int, gpu: bool, owner: str
    ) -> HostVM:
        """Create an Off VM on the disk (generation 2, automatic checkpoints off) carrying
        the ownership mark of store `owner`; returns it with its id."""
        ...

    def start(self, vm: VMRef) -> None:
        """Cold boot an Off VM or resume a Saved one, as Hyper-V's Start-VM does."""
        ...

    def save(self, vm: VMRef) -> None: ...

    def pause(self, vm: VMRef) -> None: ...

    def unpause(self, vm: VMRef) -> None: ...

    def stop(self, vm: VMRef, force: bool = False) -> None:
        """Shut down gracefully, or turn off when `force`."""
        ...

    def remove(self, vm: VMRef) -> None:
        """Remove the VM and its checkpoints (merged). Its disks stay, as with Remove-VM:
        the caller removes the disk it made with `remove_disk`."""
        ...

    def checkpoint(self, vm: VMRef, checkpoint: str) -> None:
        """A standard checkpoint, with memory when the VM runs; replaces older ones of the
        same name."""
        ...

    def restore_checkpoint(self, vm: VMRef, checkpoint: str) -> None:
        """Apply the newest checkpoint of that name; CheckpointNotFound when there is none."""
        ...

    def remove_checkpoint(self, vm: VMRef, checkpoint: str) -> None: ...

    def checkpoint_names(self, vm: VMRef) -> list[str]:
        """The names of the VM's checkpoints, oldest first."""
        ...

    def ip_address(self, vm: VMRef) -> str | None: ...

    def heartbeat_ok(self, vm: VMRef) -> bool: ...

    def capacity(self) -> HostCapacity: ...

    def screenshot(self, vm: VMRef) -> bytes:
        """The VM's screen as PNG bytes."""
        ...

    def saved_state_path(self, vm: VMRef) -> str | None: ...

    def close(self) -> None: ...


@runtime_checkable
class InputBackend(Protocol):
    """Capability.INPUT: drive the guest's keyboard and mouse from the host."""

    def send_text(self, vm: VMRef, text: str) -> None:
        """Type ASCII text (chunked as the hypervisor needs)."""
        ...

    def send_key(self, vm: VMRef, key: str) -> None:
        """Press and release one key: a name (enter, f5), a character, a code, ctrl+alt+del."""
        ...

    def click(self, vm: VMRef, x: int, y: int, button: str = "left") -> None: ...

    def move_mouse(self, vm: VMRef, x: int, y: int) -> None:
        """Move the pointer to screen pixel (x, y) without clicking."""
        ...

    def check_key(self, key: str) -> None:
        """InvalidInput when `send_key` could not press `key`; sends nothing."""
        ...

    def check_text(self, text: str) -> None:
        """InvalidInput when `send_text` could not type `text`; sends nothing."""
        ...


@runtime_checkable
class ConsoleBackend(Protocol):
    """Capability.CONSOLE: open the hypervisor's console viewer for a VM on this machine."""

    def console(self, vm: VMRef) -> Any:
        """Start the viewer; returns the started process."""
        ...


@runtime_checkable
class ForwardedPortBackend(Protocol):
    """Capability.FORWARDED_RDP: the guest's RDP port is reached through a port on this host."""

    def forwarded_port(self, vm: VMRef) -> int: ...


@runtime_checkable
class OtherHostsBackend(Protocol):
    """Capability.OTHER_HOSTS: the backend of another host of the fleet, by its name."""

    def for_host(self, host: str) -> Backend: ...


@runtime_checkable
class DescribedBackend(Protocol):
    """A backend with more to say about its host than its name (emulator, accelerator...)."""

    def describe(self) -> dict[str, Any]: ...


_FEATURES: dict[Capability, type] = {
    Capability.INPUT: InputBackend,
    Capability.CONSOLE: ConsoleBackend,
    Capability.FORWARDED_RDP: ForwardedPortBackend,
    Capability.OTHER_HOSTS: OtherHostsBackend,
}


def feature(backend: Backend, capability: Capability) -> Any:
    """The backend as the protocol of an optional feature it declares, or None: chosen by the
    capabilities a backend declares, never by its name or by probing its attributes."""
    protocol = _FEATURES[capability]
    if capability in backend.capabilities and isinstance(backend, protocol):
        return backend
    return None

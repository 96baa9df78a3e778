"""The qemu backend: real VMs on Linux with QEMU (KVM when it works, TCG otherwise).

One directory per VM under `qemu_dir` (default: `qemu-vms` beside the database). QEMU
processes run in their own session, so VMs outlive the engine; every state is read back
from a VM's files and its process, so a restarted engine finds them again. Every
operation takes a `VMRef` and acts only on the VM with the ref's id.

`QemuBackend` is a front over one module per concern:

    layout        a VM's files, atomic writes, runtime.json, direct-boot files
    marker        a VM's id and owner (marker.txt)
    registry      finding a VM's directory by ref; the per-VM lock
    process       the QEMU process: launch, monitor, end, run state
    cmdline       the QEMU command line
    network       user-mode networking and the forwarded port
    disks         qcow2 overlays with qemu-img
    saved         saving to and resuming from a file (migration)
    checkpoints   checkpoints with or without memory
    guest         readiness (ready marker, guest agent), serial console, VNC viewer
    screen_input  screendumps, keys, text and clicks over QMP (keys: key names)
    inventory     the VMs as HostVMs; the host's memory and CPUs
    lifecycle     create, start, pause, unpause, stop, remove
    accel         KVM or TCG (probed); qmp: the QMP client
"""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path
from typing import Any

from core.backends.base import Capability, VMRef
from core.backends.qemu.accel import AccelChoice, BootFiles, choose_accel
from core.backends.qemu.checkpoints import Checkpoints
from core.backends.qemu.disks import Disks
from core.backends.qemu.guest import VIEWERS, Guest, find_viewer
from core.backends.qemu.inventory import Inventory, host_capacity
from core.backends.qemu.keys import chord_for
from core.backends.qemu.layout import VMFiles, boot_files_for, default_test_guest
from core.backends.qemu.lifecycle import Lifecycle
from core.backends.qemu.network import GUEST_PORT, Network
from core.backends.qemu.process import QemuProcesses
from core.backends.qemu.registry import VMRegistry
from core.backends.qemu.saved import MAX_BANDWIDTH, SavedState
from core.backends.qemu.screen_input import SCREEN_SIZE, ScreenInput, check_typeable
from core.models import HostCapacity, HostVM
from core.settings import Settings


class QemuBackend:
    """VMs as QEMU processes, each operation handed to the module of its concern."""

    name = "qemu"
    simulated = False
    capabilities = frozenset(
        {
            Capability.SCREENSHOT,
            Capability.HEARTBEAT,
            Capability.PAUSE,
            Capability.CHECKPOINT_WITH_MEMORY,
            Capability.INPUT,
            Capability.CONSOLE,
            Capability.FORWARDED_RDP,
        }
    )

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        state_dir: str | os.PathLike[str] | None = None,
        binary: str = "qemu-system-x86_64",
        accel: str = "auto",
        op_timeout_s: float = 600.0,
        probe_guest: BootFiles | None = None,
    ) -> None:
        self.root = Path(root).absolute()
        self.root.mkdir(parents=True, exist_ok=True)
        self.state_dir = Path(state_dir) if state_dir is not None else self.root
        self.binary = binary
        self.accel_setting = accel
        self.op_timeout_s = op_timeout_s
        self.probe_guest = probe_guest
        self._accel: AccelChoice | None = None
        self._accel_lock = threading.Lock()
        self.viewer = find_viewer()
        if self.viewer is None:  # a console needs a viewer on this host
            self.capabilities = self.capabilities - {Capability.CONSOLE}
        self.registry = VMRegistry(self.root)
        self.lock_dir = self.registry.lock_dir
        self.processes = QemuProcesses(self.registry, binary, op_timeout_s)
        self.inventory = Inventory(self.registry, self.processes)
        self.disks = Disks(self.registry, op_timeout_s)
        self.saved = SavedState(self.registry, self.processes, op_timeout_s)
        self.lifecycle = Lifecycle(
            self.registry, self.processes, self.disks, self.saved, self.accel, op_timeout_s
        )
        self.checkpoints = Checkpoints(self.registry, self.processes, self.saved, op_timeout_s)
        self.network = Network(self.registry, self.processes)
        self.guest = Guest(self.registry, self.processes, self.viewer)
        self.screen_input = ScreenInput(self.registry, self.processes)

    # -- this host -----------------------------------------------------------------------------

    def files(self, name: str) -> VMFiles:
        return self.registry.files(name)

    def files_of(self, vm: VMRef) -> VMFiles:
        """The files of the VM with this ref's id (VMNotFoundInHost when there is none)."""
        return self.registry.resolve(vm, "files")[0]

    def accel(self, probe_guest: BootFiles | None = None) -> AccelChoice:
        """The accelerator new VMs get (probed once per host boot, then cached)."""
        with self._accel_lock:
            if self._accel is None:
                guest = probe_guest or self.probe_guest
                if guest is None:
                    guest = boot_files_for(default_test_guest())
                self._accel = choose_accel(self.accel_setting, self.binary, self.state_dir, guest)
            return self._accel

    def describe(self) -> dict[str, Any]:
        """What to show about this host: emulator, accelerator and why."""
        choice = self.accel()
        return {
            "backend": self.name,
            "binary": self.binary,
            "vm_dir": str(self.root),
            "accel": choice.accel,
            "accel_reason": choice.reason,
        }

    def capacity(self) -> HostCapacity:
        return host_capacity()

    def close(self) -> None:
        # QEMU processes are meant to outlive the engine; only reap children that ended.
        self.processes.reap()

    # -- reads ---------------------------------------------------------------------------------

    def list_vms(self, prefix: str | None = None) -> list[HostVM]:
        return self.inventory.list_vms(prefix)

    def find_vms(self, name: str) -> list[HostVM]:
        return self.inventory.find_vms(name)

    def get_vm(self, vm: VMRef) -> HostVM | None:
        return self.inventory.get_vm(vm)

    def checkpoint_names(self, vm: VMRef) -> list[str]:
        return self.inventory.checkpoint_names(vm)

    def saved_state_path(self, vm: VMRef) -> str | None:
        return self.saved.saved_state_path(vm)

    # -- disks ---------------------------------------------------------------------------------

    def disk_path_for(self, vm_name: str, template_disk: str) -> str:
        return self.disks.disk_path_for(vm_name, template_disk)

    def create_differencing_disk(self, parent_path: str, child_path: str) -> None:
        self.disks.create_differencing_disk(parent_path, child_path)

    def remove_disk(self, path: str) -> None:
        """Delete a disk no VM uses (see `Disks.remove_disk`)."""
        self.disks.remove_disk(path)

    # -- lifecycle -----------------------------------------------------------------------------

    def create_vm(
        self, name: str, disk_path: str, memory_mb: int, cpus: int, gpu: bool, owner: str
    ) -> HostVM:
        return self.lifecycle.create_vm(name, disk_path, memory_mb, cpus, gpu, owner)

    def start(self, vm: VMRef) -> None:
        self.lifecycle.start(vm)

    def save(self, vm: VMRef) -> None:
        self.saved.save(vm)

    def pause(self, vm: VMRef) -> None:
        self.lifecycle.pause(vm)

    def unpause(self, vm: VMRef) -> None:
        self.lifecycle.unpause(vm)

    def stop(self, vm: VMRef, force: bool = False) -> None:
        self.lifecycle.stop(vm, force)

    def remove(self, vm: VMRef) -> None:
        """Remove the VM; its disk stays (see `Lifecycle.remove`)."""
        self.lifecycle.remove(vm)

    # -- checkpoints ---------------------------------------------------------------------------

    def checkpoint(self, vm: VMRef, checkpoint: str) -> None:
        self.checkpoints.checkpoint(vm, checkpoint)

    def restore_checkpoint(self, vm: VMRef, checkpoint: str) -> None:
        self.checkpoints.restore_checkpoint(vm, checkpoint)

    def remove_checkpoint(self, vm: VMRef, checkpoint: str) -> None:
        self.checkpoints.remove_checkpoint(vm, checkpoint)

    # -- guest ---------------------------------------------------------------------------------

    def ip_address(self, vm: VMRef) -> str | None:
        return self.network.ip_address(vm)

    def forwarded_port(self, vm: VMRef) -> int:
        """The loopback port forwarded to the guest's RDP port (3389)."""
        return self.network.forwarded_port(vm)

    def heartbeat_ok(self, vm: VMRef) -> bool:
        return self.guest.heartbeat_ok(vm)

    def console(self, vm: VMRef) -> subprocess.Popen[bytes]:
        """Open a VNC viewer on the VM's screen."""
        return self.guest.console(vm)

    def console_exchange(self, vm: VMRef, line: str, expect: str, timeout_s: float = 10.0) -> str:
        """Send a line on the serial console and return what comes back until `expect`."""
        return self.guest.console_exchange(vm, line, expect, timeout_s)

    def screenshot(self, vm: VMRef) -> bytes:
        return self.screen_input.screenshot(vm)

    def send_key(self, vm: VMRef, key: str) -> None:
        """Press and release a key or a chord: a name (enter, f5, win), a character, or
        names joined by '+' (ctrl+alt+del)."""
        self.screen_input.send_key(vm, key)

    def send_text(self, vm: VMRef, text: str) -> None:
        """Type `text` on the emulated keyboard (US layout)."""
        self.screen_input.send_text(vm, text)

    def click(self, vm: VMRef, x: int, y: int, button: str = "left") -> None:
        """Move the (absolute, USB tablet) pointer to screen pixel (x, y) and click."""
        self.screen_input.click(vm, x, y, button)

    def move_mouse(self, vm: VMRef, x: int, y: int) -> None:
        self.screen_input.move_mouse(vm, x, y)

    def check_key(self, key: str) -> None:
        chord_for(key)

    def check_text(self, text: str) -> None:
        check_typeable(text)


def from_settings(settings: Settings) -> QemuBackend:
    root = Path(settings.qemu_dir) if settings.qemu_dir else settings.state_dir() / "qemu-vms"
    return QemuBackend(
        root,
        state_dir=settings.state_dir(),
        binary=settings.qemu_binary,
        accel=settings.qemu_accel,
        op_timeout_s=settings.op_timeout_s,
    )


__all__ = [
    "GUEST_PORT",
    "MAX_BANDWIDTH",
    "SCREEN_SIZE",
    "VIEWERS",
    "QemuBackend",
    "VMFiles",
    "boot_files_for",
    "default_test_guest",
    "from_settings",
]

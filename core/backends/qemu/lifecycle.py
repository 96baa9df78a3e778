"""A VM's lifecycle: made, started (cold or from its saved state), paused, stopped, removed.

Making a VM writes its folder: the marker first (see `marker`), then `vm.json` with the
QEMU command line (see `cmdline`), which every later launch uses as it is.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.backends.base import VMRef
from core.backends.qemu.accel import AccelChoice, BootFiles
from core.backends.qemu.cmdline import build_argv
from core.backends.qemu.disks import Disks
from core.backends.qemu.inventory import host_capacity
from core.backends.qemu.layout import (
    VMFiles,
    boot_files_for,
    now_iso,
    set_runtime,
    write_json,
    write_text,
)
from core.backends.qemu.marker import marker_text, new_id
from core.backends.qemu.network import free_port
from core.backends.qemu.process import QemuProcesses, require_state
from core.backends.qemu.registry import VMRegistry
from core.backends.qemu.saved import SavedState
from core.errors import (
    BackendError,
    HostObjectExists,
    InvalidInput,
    OperationTimeout,
    OutOfMemory,
    Unsupported,
)
from core.models import HostState, HostVM


class Lifecycle:
    """Making, starting, stopping and removing the VMs of a registry. `accel` gives the
    accelerator of a new VM (from the direct-boot files of its template, if any)."""

    def __init__(
        self,
        registry: VMRegistry,
        processes: QemuProcesses,
        disks: Disks,
        saved: SavedState,
        accel: Callable[[BootFiles | None], AccelChoice],
        op_timeout_s: float,
    ) -> None:
        self.registry = registry
        self.processes = processes
        self.disks = disks
        self.saved = saved
        self.accel = accel
        self.op_timeout_s = op_timeout_s

    def create_vm(
        self, name: str, disk_path: str, memory_mb: int, cpus: int, gpu: bool, owner: str
    ) -> HostVM:
        if gpu:
            raise Unsupported(
                "the qemu backend has no GPU passthrough", vm=name, operation="create_vm"
            )
        files = self.registry.files(name)
        vm_id = new_id()
        try:
            marker = marker_text(vm_id, owner)
        except ValueError as exc:
            raise InvalidInput(str(exc)) from None
        with self.registry.locked(name):
            for twin in self.registry.candidates(name):
                if twin.config.exists():
                    also = "" if twin.name == name else f" (names differ only in case: '{name}')"
                    raise HostObjectExists(
                        f"A virtual machine named '{twin.name}' already exists{also}.",
                        vm=name,
                        operation="create_vm",
                    )
            disk = Path(disk_path)
            if not disk.is_file():
                raise BackendError(
                    f"The virtual hard disk '{disk_path}' does not exist.",
                    vm=name,
                    operation="create_vm",
                )
            if disk.absolute() != files.disk:
                raise InvalidInput(
                    f"the disk of '{name}' must be {files.disk} (see disk_path_for), "
                    f"got {disk_path}"
                )
            info = self.disks.image_info(str(files.disk), "create_vm")
            template = info.get("full-backing-filename") or info.get("backing-filename")
            boot = boot_files_for(template) if template else None
            choice = self.accel(boot)
            port = free_port()
            files.dir.mkdir(parents=True, exist_ok=True)
            config = {
                "name": name,
                "template": template,
                "disk": str(files.disk),
                "memory_mb": memory_mb,
                "cpus": cpus,
                "accel": choice.accel,
                "accel_reason": choice.reason,
                "rdp_port": port,
                "boot": None if boot is None else boot.__dict__,
                "created_at": now_iso(),
                "argv": build_argv(files, memory_mb, cpus, choice.accel, port, boot),
            }
            # The marker first: a vm.json without one would read as someone else's VM.
            write_text(files.marker, marker)
            write_json(files.config, config)
        return HostVM(
            name=name,
            id=vm_id,
            owner=owner,
            state=HostState.OFF,
            raw_state="Off",
            memory_mb=memory_mb,
        )

    def check_memory(self, name: str, config: dict[str, Any]) -> None:
        """OutOfMemory when the host has less memory available than the VM needs."""
        need = int(config.get("memory_mb", 0))
        free = host_capacity().free_memory_mb
        if need > free:
            raise OutOfMemory(
                f"'{name}' needs {need} MB but the host has {free} MB available",
                vm=name,
                operation="start",
            )

    def start(self, vm: VMRef) -> None:
        name = vm.name
        with self.registry.operating(vm, "start") as (files, config):
            state, _ = self.processes.run_state(files)
            require_state(name, "start", state, {HostState.OFF, HostState.SAVED})
            self.check_memory(name, config)
            if state is HostState.SAVED:
                self.saved.resume(name, files, config)
            else:
                self.cold_boot(name, files, config)

    def cold_boot(self, name: str, files: VMFiles, config: dict[str, Any]) -> None:
        """Launch QEMU afresh (the caller holds the lock): a new serial log, not booted."""
        files.serial.write_bytes(b"")
        set_runtime(files, booted=False, booted_at=None, cold_boot_at=now_iso())
        self.processes.launch(name, files, config, [])

    def pause(self, vm: VMRef) -> None:
        name = vm.name
        with self.registry.operating(vm, "pause") as (files, _):
            state, _ = self.processes.run_state(files)
            require_state(name, "pause", state, {HostState.RUNNING})
            with self.processes.qmp(files) as qmp:
                qmp.execute("stop")

    def unpause(self, vm: VMRef) -> None:
        name = vm.name
        with self.registry.operating(vm, "unpause") as (files, _):
            state, _ = self.processes.run_state(files)
            require_state(name, "unpause", state, {HostState.PAUSED})
            with self.processes.qmp(files) as qmp:
                qmp.execute("cont")

    def stop(self, vm: VMRef, force: bool = False) -> None:
        name = vm.name
        with self.registry.operating(vm, "stop") as (files, _):
            state, _ = self.processes.run_state(files)
            if state is HostState.OFF:
                return
            if not force:
                require_state(name, "stop", state, {HostState.RUNNING})
                pid = self.processes.pid(files)
                with self.processes.qmp(files) as qmp:
                    qmp.execute("system_powerdown")
                if pid is not None and not self.processes.wait_exit(
                    files, pid, min(120.0, self.op_timeout_s)
                ):
                    raise OperationTimeout(
                        f"'{name}' did not shut down after the power button; turn it off instead",
                        vm=name,
                        operation="stop",
                    )
            self.processes.kill(files)
            # Turning off discards the saved state, as Stop-VM -TurnOff does on a Saved VM.
            with contextlib.suppress(FileNotFoundError):
                files.state.unlink()
            set_runtime(files, booted=False, booted_at=None)

    def remove(self, vm: VMRef) -> None:
        """Remove the VM: its process, definition, saved state and checkpoints. Its disk
        stays, as with Remove-VM; `remove_disk` deletes it (and then the folder)."""
        name = vm.name
        with self.registry.operating(vm, "remove") as (files, config):
            self.processes.kill(files)
            keep = {files.disk, Path(str(config.get("disk") or files.disk)).absolute()}
            # The definition first: from here on the folder holds no VM.
            files.config.unlink()
            for entry in files.dir.iterdir():
                if entry.absolute() in keep:
                    continue
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    with contextlib.suppress(FileNotFoundError):
                        entry.unlink()
            with contextlib.suppress(OSError):
                files.dir.rmdir()  # empty when the disk is elsewhere or already gone
            if files.sock_dir != files.dir:
                shutil.rmtree(files.sock_dir, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            self.registry.lock_file(name).unlink()

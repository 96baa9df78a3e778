"""Reading the host: its VMs as `HostVM`s, and its memory and CPUs."""

from __future__ import annotations

import contextlib
import os
import time

import psutil

from core.backends.base import VMRef
from core.backends.qemu.checkpoints import checkpoint_names
from core.backends.qemu.layout import VMFiles
from core.backends.qemu.process import QemuProcesses
from core.backends.qemu.registry import VMRegistry
from core.errors import BackendError, VMNotFoundInHost
from core.models import HostCapacity, HostState, HostVM


def host_capacity() -> HostCapacity:
    """This host's memory (total and available, from /proc/meminfo) and CPUs."""
    info: dict[str, int] = {}
    with open("/proc/meminfo") as fh:
        for line in fh:
            key, _, rest = line.partition(":")
            with contextlib.suppress(ValueError, IndexError):
                info[key] = int(rest.split()[0])  # kB
    total = info.get("MemTotal", 0) // 1024
    free = info.get("MemAvailable", info.get("MemFree", 0)) // 1024
    return HostCapacity(
        total_memory_mb=total, free_memory_mb=free, logical_cpus=os.cpu_count() or 1
    )


class Inventory:
    """The VMs of a registry as the engine sees them."""

    def __init__(self, registry: VMRegistry, processes: QemuProcesses) -> None:
        self.registry = registry
        self.processes = processes

    def host_vm(self, files: VMFiles, want_id: str | None = None) -> HostVM | None:
        """The VM in `files.dir` (None when there is none, it cannot be read, or its id is
        not `want_id`)."""
        with self.registry.locked(files.name, wait_s=2.0) as got:
            identity = self.registry.identity(files)
            if identity is None or (want_id is not None and identity[0] != want_id):
                return None
            vm_id, owner, config = identity
            state, raw = (
                self.processes.run_state(files) if got else self.processes.busy_state(files)
            )
            uptime = 0.0
            if state in {HostState.RUNNING, HostState.PAUSED}:
                pid = self.processes.pid(files)
                with contextlib.suppress(psutil.Error, TypeError):
                    uptime = max(0.0, time.time() - psutil.Process(pid).create_time())
            return HostVM(
                name=files.name,
                id=vm_id,
                owner=owner,
                state=state,
                raw_state=raw,
                memory_mb=int(config.get("memory_mb", 0)),
                uptime_s=uptime,
                checkpoints=checkpoint_names(files),
            )

    def readable(self, files: VMFiles) -> HostVM | None:
        """`host_vm`, with a VM whose files cannot be read left out instead of failing."""
        try:
            return self.host_vm(files)
        except (OSError, ValueError, TypeError, BackendError):
            return None

    def list_vms(self, prefix: str | None = None) -> list[HostVM]:
        folded = None if prefix is None else prefix.casefold()
        found: list[HostVM] = []
        for entry in sorted(self.registry.root.iterdir()):
            if entry.name.startswith(".") or not entry.is_dir():
                continue
            if folded is not None and not entry.name.casefold().startswith(folded):
                continue
            vm = self.readable(self.registry.files(entry.name))
            if vm is not None:
                found.append(vm)
        return found

    def find_vms(self, name: str) -> list[HostVM]:
        return [vm for files in self.registry.candidates(name) if (vm := self.readable(files))]

    def get_vm(self, vm: VMRef) -> HostVM | None:
        for files in self.registry.candidates(vm.name):
            found = self.host_vm(files, want_id=vm.id)
            if found is not None:
                return found
        return None

    def checkpoint_names(self, vm: VMRef) -> list[str]:
        found = self.get_vm(vm)
        if found is None:
            raise VMNotFoundInHost(f"{vm.name!r} is not on this host", vm=vm.name)
        return list(found.checkpoints)

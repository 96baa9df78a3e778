"""Saved state: a VM's memory written to `state.bin` by a migration, and read back.

Saving stops the VM, migrates it into a file and ends QEMU; `state.bin` with no QEMU
process means Saved. Starting a Saved VM launches QEMU waiting for an incoming
migration from that file, then deletes the file, as Hyper-V does on resume.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import time
from pathlib import Path
from typing import Any

from core.backends.base import VMRef
from core.backends.qemu.layout import VMFiles
from core.backends.qemu.process import QemuProcesses, require_state
from core.backends.qemu.qmp import QMPClient
from core.backends.qemu.registry import VMRegistry
from core.errors import BackendError, OperationTimeout, SavedStateCorrupt
from core.models import HostState

MAX_BANDWIDTH = 64 << 30  # bytes per second


class SavedState:
    """Saving VMs to files and resuming them; a migration takes at most `op_timeout_s`."""

    def __init__(self, registry: VMRegistry, processes: QemuProcesses, op_timeout_s: float) -> None:
        self.registry = registry
        self.processes = processes
        self.op_timeout_s = op_timeout_s

    def wait_migration(self, qmp: QMPClient, name: str, op: str) -> str:
        """Wait for the migration under way to end; its final status."""
        deadline = time.monotonic() + self.op_timeout_s
        delay = 0.005
        while True:
            status = str((qmp.execute("query-migrate") or {}).get("status", "none"))
            if status in {"completed", "failed", "cancelled"}:
                return status
            if time.monotonic() >= deadline:
                raise OperationTimeout(
                    f"'{name}': migration not done within {self.op_timeout_s:g} s ({status})",
                    vm=name,
                    operation=op,
                )
            time.sleep(delay)
            delay = min(0.1, delay * 2)

    def migrate_to(self, qmp: QMPClient, name: str, target: Path, op: str) -> None:
        """Write the stopped VM's state to `target` (through a temporary file)."""
        tmp = target.with_name(f".{target.name}.tmp")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        # The default bandwidth cap (128 MiB/s) is for live migration over a network; the
        # VM is stopped and the target is a local file, so let it go as fast as it can.
        qmp.execute("migrate-set-parameters", {"max-bandwidth": MAX_BANDWIDTH})
        qmp.execute("migrate", {"uri": f"exec:cat > {shlex.quote(str(tmp))}"})
        status = self.wait_migration(qmp, name, op)
        if status != "completed":
            info = qmp.execute("query-migrate") or {}
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise BackendError(
                f"'{name}': writing the memory state failed ({status}): "
                f"{info.get('error-desc', '')}",
                vm=name,
                operation=op,
            )
        os.replace(tmp, target)

    def resume(self, name: str, files: VMFiles, config: dict[str, Any]) -> None:
        """Start QEMU from the saved state (the caller holds the lock and checked it is
        Saved); SavedStateCorrupt when the state cannot be read back."""
        size = files.state.stat().st_size
        if size < 1024:
            raise SavedStateCorrupt(
                f"'{name}' could not restore its saved state: {files.state} is {size} bytes",
                vm=name,
                operation="start",
            )
        source = f"exec:cat {shlex.quote(str(files.state))}"
        try:
            self.processes.launch(name, files, config, ["-S", "-incoming", source])
            with self.processes.qmp(files, timeout_s=self.op_timeout_s) as qmp:
                status = self.wait_migration(qmp, name, "start")
                if status != "completed":
                    raise SavedStateCorrupt(
                        f"'{name}' could not restore its saved state (migration {status})",
                        vm=name,
                        operation="start",
                    )
                qmp.execute("cont")
        except SavedStateCorrupt:
            self.processes.kill(files)
            raise
        except BackendError as exc:
            tail = self.processes.log_tail(files)
            self.processes.kill(files)
            if "migrat" in tail or "savevm" in tail or "load" in tail:
                raise SavedStateCorrupt(
                    f"'{name}' could not restore its saved state: {tail}",
                    vm=name,
                    operation="start",
                    raw=tail,
                ) from None
            raise exc
        # Running now: the saved state has been consumed, as Hyper-V deletes it on resume.
        files.state.unlink()

    def save(self, vm: VMRef) -> None:
        name = vm.name
        with self.registry.operating(vm, "save") as (files, _):
            state, _ = self.processes.run_state(files)
            require_state(name, "save", state, {HostState.RUNNING, HostState.PAUSED})
            pid = self.processes.pid(files)
            with self.processes.qmp(files, timeout_s=self.op_timeout_s) as qmp:
                was_running = state is HostState.RUNNING
                qmp.execute("stop")
                try:
                    self.migrate_to(qmp, name, files.state, "save")
                except BackendError:
                    if was_running:
                        qmp.execute("cont")
                    raise
                qmp.execute("quit")
            if pid is not None and not self.processes.wait_exit(files, pid, 30.0):
                self.processes.kill(files)
            self.processes.cleanup_files(files)

    def saved_state_path(self, vm: VMRef) -> str | None:
        files, _ = self.registry.resolve(vm, "saved_state_path")
        state, _ = self.processes.state_for_read(files)
        return str(files.state) if state is HostState.SAVED else None

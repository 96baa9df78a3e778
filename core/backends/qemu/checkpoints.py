"""Checkpoints: a copy of a VM's disk, with its memory when it was not off.

Checkpoint C of a VM is `checkpoints/C.qcow2` (the overlay), `checkpoints/C.state` (the
memory, taken by a migration of the running or paused VM, or copied from a Saved one)
and `checkpoints/C.json` (what it holds). Restoring one turns the VM off and puts the
copies back: a checkpoint with memory leaves the VM Saved, one without leaves it Off.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from core.backends.base import VMRef
from core.backends.qemu.guest import guest_booted
from core.backends.qemu.layout import (
    VMFiles,
    copy_file,
    now_iso,
    read_json,
    set_runtime,
    write_json,
)
from core.backends.qemu.process import QemuProcesses, require_state
from core.backends.qemu.registry import VMRegistry
from core.backends.qemu.saved import SavedState
from core.errors import CheckpointNotFound, InvalidInput, SavedStateCorrupt
from core.models import HostState


def checkpoint_names(files: VMFiles) -> list[str]:
    """The names of the VM's checkpoints, sorted."""
    if not files.checkpoints.is_dir():
        return []
    return sorted(p.stem for p in files.checkpoints.glob("*.json"))


def checkpoint_files(files: VMFiles, checkpoint: str) -> tuple[Path, Path, Path]:
    """The files of checkpoint `checkpoint`: what it holds (.json), the disk, the memory."""
    if not checkpoint or "/" in checkpoint or checkpoint.startswith("."):
        raise InvalidInput(f"checkpoint name {checkpoint!r} cannot be a file name")
    base = files.checkpoints / checkpoint
    return (
        base.with_name(f"{checkpoint}.json"),
        base.with_name(f"{checkpoint}.qcow2"),
        base.with_name(f"{checkpoint}.state"),
    )


class Checkpoints:
    """Taking, restoring and removing checkpoints of the VMs in a registry."""

    def __init__(
        self,
        registry: VMRegistry,
        processes: QemuProcesses,
        saved: SavedState,
        op_timeout_s: float,
    ) -> None:
        self.registry = registry
        self.processes = processes
        self.saved = saved
        self.op_timeout_s = op_timeout_s

    def checkpoint(self, vm: VMRef, checkpoint: str) -> None:
        name = vm.name
        with self.registry.operating(vm, "checkpoint") as (files, _):
            meta_path, disk_copy, state_copy = checkpoint_files(files, checkpoint)
            files.checkpoints.mkdir(exist_ok=True)
            state, raw = self.processes.run_state(files)
            require_state(
                name,
                "checkpoint",
                state,
                {HostState.RUNNING, HostState.PAUSED, HostState.SAVED, HostState.OFF},
            )
            booted = guest_booted(files)
            with_memory = state is not HostState.OFF
            if state in {HostState.RUNNING, HostState.PAUSED}:
                with self.processes.qmp(files, timeout_s=self.op_timeout_s) as qmp:
                    qmp.execute("stop")
                    try:
                        self.saved.migrate_to(qmp, name, state_copy, "checkpoint")
                        # The migration flushed the disk and released it: copy it now.
                        copy_file(files.disk, disk_copy)
                    finally:
                        # `cont` takes the disk back; a VM that was paused stays paused.
                        qmp.execute("cont")
                        if state is HostState.PAUSED:
                            qmp.execute("stop")
            else:
                copy_file(files.disk, disk_copy)
                if state is HostState.SAVED:
                    copy_file(files.state, state_copy)
                else:
                    with contextlib.suppress(FileNotFoundError):
                        state_copy.unlink()
            write_json(
                meta_path,
                {
                    "name": checkpoint,
                    "with_memory": with_memory,
                    "booted": booted,
                    "taken_in": raw,
                    "created_at": now_iso(),
                },
            )

    def restore_checkpoint(self, vm: VMRef, checkpoint: str) -> None:
        name = vm.name
        with self.registry.operating(vm, "restore") as (files, _):
            meta_path, disk_copy, state_copy = checkpoint_files(files, checkpoint)
            meta = read_json(meta_path)
            if meta is None or not disk_copy.is_file():
                raise CheckpointNotFound(
                    f"'{name}' has no checkpoint named '{checkpoint}'", vm=name, operation="restore"
                )
            if meta.get("with_memory") and not state_copy.is_file():
                raise SavedStateCorrupt(
                    f"'{name}': the memory of checkpoint '{checkpoint}' is missing",
                    vm=name,
                    operation="restore",
                )
            self.processes.kill(files)
            copy_file(disk_copy, files.disk)
            if meta.get("with_memory"):
                copy_file(state_copy, files.state)
            else:
                with contextlib.suppress(FileNotFoundError):
                    files.state.unlink()
            set_runtime(files, booted=bool(meta.get("booted")), restored=checkpoint)

    def remove_checkpoint(self, vm: VMRef, checkpoint: str) -> None:
        with self.registry.operating(vm, "remove_checkpoint", record=False) as (files, _):
            for path in checkpoint_files(files, checkpoint):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()

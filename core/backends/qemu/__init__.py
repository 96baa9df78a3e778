"""The qemu backend: real VMs on Linux with QEMU (KVM when it works, TCG otherwise).

One directory per VM under `qemu_dir` (default: `qemu-vms` beside the database); see
`layout` for its files.

QEMU processes run in their own session, so VMs outlive the engine; every state is
read back from these files and the process, so a restarted engine finds them again.

A directory holding `vm.json` is a VM. Its id is in `marker.txt` (see `marker`): every
operation takes a `VMRef` and acts only on the directory whose id is the ref's, so a VM
made again under the same name, or someone else's, is never touched. A directory
without a marker (made by hand or by an older hvkube) is listed with owner None and an
id derived from its `vm.json`; one whose marker cannot be read, or whose `vm.json` is
not a definition, is left out of listings and cannot be addressed.

Names compare ignoring case, as on Hyper-V: `WEB-001` is not created beside `web-001`,
and a VM's lock is keyed by its case-folded name.

Templates are qcow2 files (see `layout` for direct kernel boot). Readiness: the guest
prints `HVKUBE-READY` on its serial console, or a QEMU guest agent answers.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shlex
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from core.backends.base import Capability, VMRef
from core.backends.qemu.accel import READY_MARKER, AccelChoice, BootFiles, choose_accel
from core.backends.qemu.cmdline import build_argv
from core.backends.qemu.keys import chord_for, qcode_for
from core.backends.qemu.layout import (
    VMFiles,
    boot_files_for,
    copy_file,
    default_test_guest,
    now_iso,
    read_json,
    read_runtime,
    set_runtime,
    write_json,
    write_text,
)
from core.backends.qemu.marker import marker_text, new_id
from core.backends.qemu.network import GUEST_PORT, Network, free_port
from core.backends.qemu.process import QemuProcesses, require_state
from core.backends.qemu.qmp import QMPClient
from core.backends.qemu.registry import VMRegistry
from core.errors import (
    BackendError,
    CheckpointNotFound,
    FileInUse,
    HostObjectExists,
    InvalidInput,
    OperationTimeout,
    OutOfMemory,
    SavedStateCorrupt,
    Unsupported,
    VMNotFoundInHost,
)
from core.imaging import text_card
from core.models import HostCapacity, HostState, HostVM
from core.settings import Settings

MAX_BANDWIDTH = 64 << 30  # bytes per second
VIEWERS = ("remote-viewer", "vncviewer")
SCREEN_SIZE = (720, 400)  # VGA text mode, used for cards of VMs that have no screen


class QemuBackend:
    """VMs as QEMU processes; see the module docstring for the files of a VM."""

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
        self.viewer = next((v for v in VIEWERS if shutil.which(v)), None)
        if self.viewer is None:  # a console needs a viewer on this host
            self.capabilities = self.capabilities - {Capability.CONSOLE}
        self.registry = VMRegistry(self.root)
        self.lock_dir = self.registry.lock_dir
        self.processes = QemuProcesses(self.registry, binary, op_timeout_s)
        self.network = Network(self.registry, self.processes)

    # -- plumbing ------------------------------------------------------------------------------

    def files(self, name: str) -> VMFiles:
        return self.registry.files(name)

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

    def files_of(self, vm: VMRef) -> VMFiles:
        """The files of the VM with this ref's id (VMNotFoundInHost when there is none)."""
        return self.registry.resolve(vm, "files")[0]

    # -- Backend protocol: reads ---------------------------------------------------------------

    def _host_vm(self, files: VMFiles, want_id: str | None = None) -> HostVM | None:
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
                checkpoints=self._checkpoint_names(files),
            )

    def _readable(self, files: VMFiles) -> HostVM | None:
        """`_host_vm`, with a VM whose files cannot be read left out instead of failing."""
        try:
            return self._host_vm(files)
        except (OSError, ValueError, TypeError, BackendError):
            return None

    def list_vms(self, prefix: str | None = None) -> list[HostVM]:
        folded = None if prefix is None else prefix.casefold()
        found: list[HostVM] = []
        for entry in sorted(self.root.iterdir()):
            if entry.name.startswith(".") or not entry.is_dir():
                continue
            if folded is not None and not entry.name.casefold().startswith(folded):
                continue
            vm = self._readable(self.files(entry.name))
            if vm is not None:
                found.append(vm)
        return found

    def find_vms(self, name: str) -> list[HostVM]:
        return [vm for files in self.registry.candidates(name) if (vm := self._readable(files))]

    def get_vm(self, vm: VMRef) -> HostVM | None:
        for files in self.registry.candidates(vm.name):
            found = self._host_vm(files, want_id=vm.id)
            if found is not None:
                return found
        return None

    def disk_path_for(self, vm_name: str, template_disk: str) -> str:
        return str(self.files(vm_name).disk)

    def saved_state_path(self, vm: VMRef) -> str | None:
        files, _ = self.registry.resolve(vm, "saved_state_path")
        state, _ = self.processes.state_for_read(files)
        return str(files.state) if state is HostState.SAVED else None

    def capacity(self) -> HostCapacity:
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

    # -- disks ---------------------------------------------------------------------------------

    def _qemu_img(self, *args: str, op: str) -> str:
        try:
            done = subprocess.run(
                ["qemu-img", *args],
                capture_output=True,
                text=True,
                timeout=self.op_timeout_s,
                check=False,
            )
        except FileNotFoundError:
            raise BackendError(
                "qemu-img is not installed (Debian package qemu-utils)", operation=op
            ) from None
        except subprocess.TimeoutExpired:
            raise OperationTimeout(f"qemu-img {args[0]} timed out", operation=op) from None
        if done.returncode != 0:
            raise BackendError(
                f"qemu-img {args[0]} failed: {done.stderr.strip()}", operation=op, raw=done.stderr
            )
        return done.stdout

    def _image_info(self, path: str, op: str) -> dict[str, Any]:
        info: dict[str, Any] = json.loads(
            self._qemu_img("info", "-U", "--output=json", path, op=op)
        )
        return info

    def create_differencing_disk(self, parent_path: str, child_path: str) -> None:
        parent = Path(parent_path)
        child = Path(child_path)
        if not parent.is_file():
            raise BackendError(
                f"the template disk '{parent_path}' does not exist", operation="create_disk"
            )
        if child.exists():
            raise HostObjectExists(
                f"The file '{child_path}' already exists.", operation="create_disk"
            )
        fmt = str(self._image_info(str(parent.absolute()), "create_disk").get("format", "qcow2"))
        child.parent.mkdir(parents=True, exist_ok=True)
        self._qemu_img(
            "create",
            "-q",
            "-f",
            "qcow2",
            "-F",
            fmt,
            "-b",
            str(parent.absolute()),
            str(child),
            op="create_disk",
        )

    def remove_disk(self, path: str) -> None:
        """Delete a disk no VM uses: FileInUse when the VM of its folder still does. A VM
        folder left with no VM in it (a removed or half-made VM) goes too."""
        disk = Path(path).absolute()
        folder = disk.parent
        if folder.parent != self.root or folder.name.startswith("."):
            with contextlib.suppress(FileNotFoundError):
                disk.unlink()
            return
        with self.registry.locked(folder.name):
            config = read_json(folder / "vm.json")
            if config is not None:
                used = Path(str(config.get("disk") or folder / "disk.qcow2")).absolute()
                if used == disk:
                    raise FileInUse(
                        f"The file '{path}' is in use by the virtual machine '{folder.name}'.",
                        vm=folder.name,
                        operation="remove_disk",
                    )
            with contextlib.suppress(FileNotFoundError):
                disk.unlink()
            if config is None and not (folder / "vm.json").exists():
                shutil.rmtree(folder, ignore_errors=True)

    # -- lifecycle -----------------------------------------------------------------------------

    def create_vm(
        self, name: str, disk_path: str, memory_mb: int, cpus: int, gpu: bool, owner: str
    ) -> HostVM:
        if gpu:
            raise Unsupported(
                "the qemu backend has no GPU passthrough", vm=name, operation="create_vm"
            )
        files = self.files(name)
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
            info = self._image_info(str(files.disk), "create_vm")
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

    def _check_memory(self, name: str, config: dict[str, Any]) -> None:
        need = int(config.get("memory_mb", 0))
        free = self.capacity().free_memory_mb
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
            self._check_memory(name, config)
            if state is HostState.SAVED:
                self._resume(name, files, config)
            else:
                self._cold_boot(name, files, config)

    def _cold_boot(self, name: str, files: VMFiles, config: dict[str, Any]) -> None:
        files.serial.write_bytes(b"")
        set_runtime(files, booted=False, booted_at=None, cold_boot_at=now_iso())
        self.processes.launch(name, files, config, [])

    def _resume(self, name: str, files: VMFiles, config: dict[str, Any]) -> None:
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
                status = self._wait_migration(qmp, name, "start")
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

    def _wait_migration(self, qmp: QMPClient, name: str, op: str) -> str:
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

    def _migrate_to(self, qmp: QMPClient, name: str, target: Path, op: str) -> None:
        """Write the stopped VM's state to `target` (through a temporary file)."""
        tmp = target.with_name(f".{target.name}.tmp")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        # The default bandwidth cap (128 MiB/s) is for live migration over a network; the
        # VM is stopped and the target is a local file, so let it go as fast as it can.
        qmp.execute("migrate-set-parameters", {"max-bandwidth": MAX_BANDWIDTH})
        qmp.execute("migrate", {"uri": f"exec:cat > {shlex.quote(str(tmp))}"})
        status = self._wait_migration(qmp, name, op)
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
                    self._migrate_to(qmp, name, files.state, "save")
                except BackendError:
                    if was_running:
                        qmp.execute("cont")
                    raise
                qmp.execute("quit")
            if pid is not None and not self.processes.wait_exit(files, pid, 30.0):
                self.processes.kill(files)
            self.processes.cleanup_files(files)

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

    # -- checkpoints ---------------------------------------------------------------------------

    def _checkpoint_names(self, files: VMFiles) -> list[str]:
        if not files.checkpoints.is_dir():
            return []
        return sorted(p.stem for p in files.checkpoints.glob("*.json"))

    def _checkpoint_files(self, files: VMFiles, checkpoint: str) -> tuple[Path, Path, Path]:
        if not checkpoint or "/" in checkpoint or checkpoint.startswith("."):
            raise InvalidInput(f"checkpoint name {checkpoint!r} cannot be a file name")
        base = files.checkpoints / checkpoint
        return (
            base.with_name(f"{checkpoint}.json"),
            base.with_name(f"{checkpoint}.qcow2"),
            base.with_name(f"{checkpoint}.state"),
        )

    def _guest_booted(self, files: VMFiles) -> bool:
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

    def checkpoint(self, vm: VMRef, checkpoint: str) -> None:
        name = vm.name
        with self.registry.operating(vm, "checkpoint") as (files, _):
            meta_path, disk_copy, state_copy = self._checkpoint_files(files, checkpoint)
            files.checkpoints.mkdir(exist_ok=True)
            state, raw = self.processes.run_state(files)
            require_state(
                name,
                "checkpoint",
                state,
                {HostState.RUNNING, HostState.PAUSED, HostState.SAVED, HostState.OFF},
            )
            booted = self._guest_booted(files)
            with_memory = state is not HostState.OFF
            if state in {HostState.RUNNING, HostState.PAUSED}:
                with self.processes.qmp(files, timeout_s=self.op_timeout_s) as qmp:
                    qmp.execute("stop")
                    try:
                        self._migrate_to(qmp, name, state_copy, "checkpoint")
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

    def checkpoint_names(self, vm: VMRef) -> list[str]:
        found = self.get_vm(vm)
        if found is None:
            raise VMNotFoundInHost(f"{vm.name!r} is not on this host", vm=vm.name)
        return list(found.checkpoints)

    def restore_checkpoint(self, vm: VMRef, checkpoint: str) -> None:
        name = vm.name
        with self.registry.operating(vm, "restore") as (files, _):
            meta_path, disk_copy, state_copy = self._checkpoint_files(files, checkpoint)
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
            for path in self._checkpoint_files(files, checkpoint):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()

    # -- guest ---------------------------------------------------------------------------------

    def ip_address(self, vm: VMRef) -> str | None:
        return self.network.ip_address(vm)

    def forwarded_port(self, vm: VMRef) -> int:
        """The loopback port forwarded to the guest's RDP port (3389)."""
        return self.network.forwarded_port(vm)

    def _agent_ping(self, files: VMFiles, timeout_s: float = 0.3) -> bool:
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
                    data += chunk
                    if f'"return": {token}'.encode() in data.replace(b'":', b'": '):
                        return True
        except OSError:
            return False
        return False

    def heartbeat_ok(self, vm: VMRef) -> bool:
        with self.registry.trying(vm, "heartbeat", wait_s=2.0) as held:
            if held is None:
                return False
            files, _ = held
            state, _ = self.processes.run_state(files)
            if state is not HostState.RUNNING:
                return False
            return self._guest_booted(files) or self._agent_ping(files)

    def screenshot(self, vm: VMRef) -> bytes:
        with self.registry.trying(vm, "screenshot", wait_s=10.0) as held:
            state, raw = (
                (HostState.OTHER, "Busy") if held is None else self.processes.run_state(held[0])
            )
            if held is not None and state in {HostState.RUNNING, HostState.PAUSED}:
                files = held[0]
                tmp = files.screen.with_name(f".screen.{os.getpid()}.png")
                try:
                    with self.processes.qmp(files) as qmp:
                        qmp.execute("screendump", {"filename": str(tmp), "format": "png"})
                    return tmp.read_bytes()
                finally:
                    with contextlib.suppress(FileNotFoundError):
                        tmp.unlink()
        return text_card([vm.name, raw], size=SCREEN_SIZE, background=(0, 0, 0))

    def _send_events(
        self, vm: VMRef, groups: list[list[dict[str, Any]]], pace_s: float = 0.02
    ) -> None:
        with self.registry.operating(vm, "input", record=False) as (files, _):
            state, _ = self.processes.run_state(files)
            require_state(vm.name, "send input", state, {HostState.RUNNING})
            with self.processes.qmp(files) as qmp:
                for group in groups:
                    qmp.execute("input-send-event", {"events": group})
                    # The PS/2 controller queues only a few scancodes: let the guest drain it.
                    time.sleep(pace_s)

    @staticmethod
    def _key(qcode: str, down: bool) -> dict[str, Any]:
        return {"type": "key", "data": {"down": down, "key": {"type": "qcode", "data": qcode}}}

    def send_key(self, vm: VMRef, key: str) -> None:
        """Press and release a key or a chord: a name (enter, f5, win), a character, or
        names joined by '+' (ctrl+alt+del)."""
        chord = chord_for(key)
        events = [self._key(k, True) for k in chord] + [
            self._key(k, False) for k in reversed(chord)
        ]
        self._send_events(vm, [events])

    def send_text(self, vm: VMRef, text: str) -> None:
        """Type `text` on the emulated keyboard (US layout)."""
        if not isinstance(text, str) or text == "":
            raise InvalidInput("text to type is empty")
        groups: list[list[dict[str, Any]]] = []
        for char in text:
            qcode, shift = qcode_for(char)
            events = [self._key(qcode, True), self._key(qcode, False)]
            if shift:
                events = [self._key("shift", True), *events, self._key("shift", False)]
            groups.append(events)
        self._send_events(vm, groups)

    def _screen_size(self, vm: VMRef) -> tuple[int, int]:
        from PIL import Image

        with Image.open(io.BytesIO(self.screenshot(vm))) as image:
            return image.size

    def click(self, vm: VMRef, x: int, y: int, button: str = "left") -> None:
        """Move the (absolute, USB tablet) pointer to screen pixel (x, y) and click."""
        if button not in {"left", "right", "middle"}:
            raise InvalidInput(f"--button {button!r} is not one of left, right, middle")
        for value, what in ((x, "X"), (y, "Y")):
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 16384:
                raise InvalidInput(f"{what} must be a pixel from 0 to 16384, got {value!r}")
        width, height = self._screen_size(vm)
        ax = max(0, min(0x7FFF, x * 0x7FFF // max(1, width - 1)))
        ay = max(0, min(0x7FFF, y * 0x7FFF // max(1, height - 1)))
        events = [
            {"type": "abs", "data": {"axis": "x", "value": ax}},
            {"type": "abs", "data": {"axis": "y", "value": ay}},
            {"type": "btn", "data": {"down": True, "button": button}},
            {"type": "btn", "data": {"down": False, "button": button}},
        ]
        self._send_events(vm, [events])

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

    def close(self) -> None:
        # QEMU processes are meant to outlive the engine; only reap children that ended.
        self.processes.reap()


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
    "QemuBackend",
    "VMFiles",
    "boot_files_for",
    "default_test_guest",
    "from_settings",
]

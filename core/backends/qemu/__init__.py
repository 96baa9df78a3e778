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
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from core.backends.base import Capability, VMRef
from core.backends.qemu.accel import AccelChoice, BootFiles, choose_accel
from core.backends.qemu.checkpoints import Checkpoints, checkpoint_names
from core.backends.qemu.cmdline import build_argv
from core.backends.qemu.disks import Disks
from core.backends.qemu.guest import VIEWERS, Guest, find_viewer
from core.backends.qemu.keys import chord_for, qcode_for
from core.backends.qemu.layout import (
    VMFiles,
    boot_files_for,
    default_test_guest,
    now_iso,
    set_runtime,
    write_json,
    write_text,
)
from core.backends.qemu.marker import marker_text, new_id
from core.backends.qemu.network import GUEST_PORT, Network, free_port
from core.backends.qemu.process import QemuProcesses, require_state
from core.backends.qemu.registry import VMRegistry
from core.backends.qemu.saved import MAX_BANDWIDTH, SavedState
from core.errors import (
    BackendError,
    HostObjectExists,
    InvalidInput,
    OperationTimeout,
    OutOfMemory,
    Unsupported,
    VMNotFoundInHost,
)
from core.imaging import text_card
from core.models import HostCapacity, HostState, HostVM
from core.settings import Settings

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
        self.viewer = find_viewer()
        if self.viewer is None:  # a console needs a viewer on this host
            self.capabilities = self.capabilities - {Capability.CONSOLE}
        self.registry = VMRegistry(self.root)
        self.lock_dir = self.registry.lock_dir
        self.processes = QemuProcesses(self.registry, binary, op_timeout_s)
        self.network = Network(self.registry, self.processes)
        self.disks = Disks(self.registry, op_timeout_s)
        self.saved = SavedState(self.registry, self.processes, op_timeout_s)
        self.checkpoints = Checkpoints(self.registry, self.processes, self.saved, op_timeout_s)
        self.guest = Guest(self.registry, self.processes, self.viewer)

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
                checkpoints=checkpoint_names(files),
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
        return self.disks.disk_path_for(vm_name, template_disk)

    def saved_state_path(self, vm: VMRef) -> str | None:
        return self.saved.saved_state_path(vm)

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

    def create_differencing_disk(self, parent_path: str, child_path: str) -> None:
        self.disks.create_differencing_disk(parent_path, child_path)

    def remove_disk(self, path: str) -> None:
        """Delete a disk no VM uses (see `Disks.remove_disk`)."""
        self.disks.remove_disk(path)

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
                self.saved.resume(name, files, config)
            else:
                self._cold_boot(name, files, config)

    def _cold_boot(self, name: str, files: VMFiles, config: dict[str, Any]) -> None:
        files.serial.write_bytes(b"")
        set_runtime(files, booted=False, booted_at=None, cold_boot_at=now_iso())
        self.processes.launch(name, files, config, [])

    def save(self, vm: VMRef) -> None:
        self.saved.save(vm)

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

    def checkpoint(self, vm: VMRef, checkpoint: str) -> None:
        self.checkpoints.checkpoint(vm, checkpoint)

    def checkpoint_names(self, vm: VMRef) -> list[str]:
        found = self.get_vm(vm)
        if found is None:
            raise VMNotFoundInHost(f"{vm.name!r} is not on this host", vm=vm.name)
        return list(found.checkpoints)

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
        """Open a VNC viewer on the VM's screen."""
        return self.guest.console(vm)

    def console_exchange(self, vm: VMRef, line: str, expect: str, timeout_s: float = 10.0) -> str:
        """Send a line on the serial console and return what comes back until `expect`."""
        return self.guest.console_exchange(vm, line, expect, timeout_s)

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
    "MAX_BANDWIDTH",
    "VIEWERS",
    "QemuBackend",
    "VMFiles",
    "boot_files_for",
    "default_test_guest",
    "from_settings",
]

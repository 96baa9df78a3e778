"""A VM's QEMU process: launching it, talking to its monitor, ending it, and its state.

QEMU processes run in their own session, so VMs outlive the engine; every state is
read back from the VM's files and its process, so a restarted engine finds them again.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from typing import Any

import psutil

from core.backends.qemu.layout import VMFiles, now_iso, read_json
from core.backends.qemu.qmp import QMPClient
from core.backends.qemu.registry import VMRegistry
from core.errors import BackendError, InvalidVMState, OperationTimeout
from core.models import HostState

# QMP run states mapped to host states by name.
RUN_STATES = {
    "running": HostState.RUNNING,
    "paused": HostState.PAUSED,
    "postmigrate": HostState.PAUSED,  # stopped after a migration: memory is still in RAM
    "suspended": HostState.PAUSED,
    "inmigrate": HostState.RESUMING,
    "prelaunch": HostState.STARTING,
    "finish-migrate": HostState.SAVING,
    "save-vm": HostState.SAVING,
    "restore-vm": HostState.RESUMING,
    "shutdown": HostState.STOPPING,
}
# What a VM is doing, by the operation recorded in its op.json.
OP_STATES = {
    "start": "Starting",
    "save": "Saving",
    "pause": "Pausing",
    "unpause": "Resuming",
    "stop": "Stopping",
    "remove": "Stopping",
    "checkpoint": "Saving",
    "restore": "Stopping",
}


def require_state(name: str, op: str, state: HostState, allowed: set[HostState]) -> None:
    """InvalidVMState unless `state` is one `op` is allowed in."""
    if state not in allowed:
        raise InvalidVMState(
            f"'{name}' failed to {op}: the operation cannot be performed while the "
            f"virtual machine is in its current state ({state.value})",
            vm=name,
            operation=op,
        )


class QemuProcesses:
    """The QEMU processes of the VMs in a registry (children of this one reaped here)."""

    def __init__(self, registry: VMRegistry, binary: str, op_timeout_s: float) -> None:
        self.registry = registry
        self.binary = binary
        self.op_timeout_s = op_timeout_s
        self._children: dict[int, subprocess.Popen[bytes]] = {}
        self._children_lock = threading.Lock()

    def pid(self, files: VMFiles) -> int | None:
        """The pid of this VM's live QEMU process, or None (stale pidfiles are ignored)."""
        try:
            pid = int(files.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        with self._children_lock:
            child = self._children.get(pid)
            if child is not None and child.poll() is not None:
                del self._children[pid]
                return None
        try:
            proc = psutil.Process(pid)
            if proc.status() == psutil.STATUS_ZOMBIE:
                return None
            if str(files.qmp) not in " ".join(proc.cmdline()):
                return None  # the pid was reused by another process
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return None
        return pid

    def process_gone(self, pid: int) -> bool:
        """Has process `pid` exited? Our own children are reaped here."""
        with self._children_lock:
            child = self._children.get(pid)
            if child is not None:
                if child.poll() is None:
                    return False
                del self._children[pid]
                return True
        try:
            return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True
        except psutil.Error:
            return False

    def wait_exit(self, files: VMFiles, pid: int, timeout_s: float) -> bool:
        """Wait until the process has really exited (QEMU drops its pidfile a bit earlier,
        and only an exited process has released the disk image's locks)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process_gone(pid):
                return True
            time.sleep(0.01)
        return self.process_gone(pid)

    def kill(self, files: VMFiles) -> None:
        """End the VM's QEMU process: `quit` over QMP, then SIGKILL."""
        pid = self.pid(files)
        if pid is None:
            return
        with contextlib.suppress(BackendError), self.qmp(files, timeout_s=3.0) as qmp:
            qmp.execute("quit")
        if not self.wait_exit(files, pid, 5.0):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            self.wait_exit(files, pid, 10.0)
        self.cleanup_files(files)

    def cleanup_files(self, files: VMFiles) -> None:
        """Remove what a QEMU process leaves behind: its pidfile and sockets."""
        for path in (files.pidfile, files.qmp, files.console, files.qga, files.vnc):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def qmp(self, files: VMFiles, timeout_s: float = 10.0) -> QMPClient:
        """A QMP client for the VM's monitor (connected when entered)."""
        return QMPClient(str(files.qmp), vm=files.name, timeout_s=timeout_s)

    def log_tail(self, files: VMFiles, lines: int = 5) -> str:
        """QEMU's last messages since its latest launch."""
        try:
            text = files.log.read_text(errors="replace")
        except OSError:
            return ""
        last = text.rsplit("\n--- ", 1)[-1].splitlines()[1:]
        return " | ".join(line.strip() for line in last[-lines:] if line.strip())

    def launch(self, name: str, files: VMFiles, config: dict[str, Any], extra: list[str]) -> None:
        """Start QEMU with the VM's stored command line plus `extra`; wait for its monitor."""
        self.cleanup_files(files)
        files.sock_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        argv = [self.binary, *config["argv"], *extra]
        with open(files.log, "ab") as log:
            log.write(f"--- {now_iso()} launch {' '.join(extra) or 'cold boot'}\n".encode())
            log.flush()
            try:
                proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    start_new_session=True,  # outlives the engine and its signals
                    close_fds=True,
                    cwd=files.dir,
                )
            except OSError as exc:
                raise BackendError(
                    f"cannot run {self.binary}: {exc.strerror}", vm=name, operation="start"
                ) from None
        with self._children_lock:
            self._children[proc.pid] = proc
        deadline = time.monotonic() + min(60.0, self.op_timeout_s)
        while True:
            if proc.poll() is not None:
                with self._children_lock:
                    self._children.pop(proc.pid, None)
                self.cleanup_files(files)
                raise BackendError(
                    f"QEMU for '{name}' exited at once ({proc.returncode}): {self.log_tail(files)}",
                    vm=name,
                    operation="start",
                    raw=self.log_tail(files, 20),
                )
            if files.qmp.exists() and files.pidfile.exists():
                try:
                    with self.qmp(files, timeout_s=2.0):
                        return
                except BackendError:
                    pass
            if time.monotonic() >= deadline:
                proc.kill()
                raise OperationTimeout(
                    f"QEMU for '{name}' did not open its monitor", vm=name, operation="start"
                )
            time.sleep(0.02)

    def reap(self) -> None:
        """Forget the children that ended (the others are meant to outlive the engine)."""
        with self._children_lock:
            for pid, child in list(self._children.items()):
                if child.poll() is not None:
                    del self._children[pid]

    # -- state ---------------------------------------------------------------------------------

    def run_state(self, files: VMFiles) -> tuple[HostState, str]:
        """The VM's state from its process and files (the caller holds the lock)."""
        pid = self.pid(files)
        if pid is None:
            if files.state.is_file():
                return HostState.SAVED, "Saved"
            return HostState.OFF, "Off"
        try:
            with self.qmp(files, timeout_s=5.0) as qmp:
                status = str(qmp.execute("query-status").get("status", "unknown"))
        except BackendError:
            return HostState.UNKNOWN, "Unresponsive"
        return RUN_STATES.get(status, HostState.UNKNOWN), status

    def busy_state(self, files: VMFiles) -> tuple[HostState, str]:
        """The state of a VM whose lock another operation holds, from its op.json."""
        op = read_json(files.op) or {}
        with contextlib.suppress(psutil.Error, TypeError, ValueError):
            if psutil.pid_exists(int(op["pid"])):
                raw = OP_STATES.get(str(op.get("op")), "Other")
                return HostState.from_name(raw), raw
        return HostState.OTHER, "Busy"

    def state_for_read(self, files: VMFiles) -> tuple[HostState, str]:
        """The VM's state without holding its lock for long: from op.json when busy."""
        with self.registry.locked(files.name, wait_s=2.0) as got:
            if got:
                return self.run_state(files)
        return self.busy_state(files)

"""The Hyper-V backend: every operation goes to the dispatcher script in a PowerShell session.

Values (names, paths, text to type) travel only as JSON data in a request to
the fixed dispatcher (dispatcher.ps1); no PowerShell source is ever built
from them. See transport.py for the protocol and errors.py for error mapping.
"""

from __future__ import annotations

import base64
import binascii
import subprocess
from pathlib import Path
from typing import Any

from core.backends.base import Capability
from core.backends.hyperv.errors import to_error
from core.backends.hyperv.keys import CTRL_ALT_DEL, MOUSE_BUTTONS, key_code, text_chunks
from core.backends.hyperv.parsing import (
    HEARTBEAT_NAMES,
    VM_STATE_NAMES,
    as_list,
    enum_name,
    parse_int,
    parse_vm,
    pick_ipv4,
)
from core.backends.hyperv.transport import (
    DISPATCHER,
    RemoteError,
    SessionPool,
    dispatcher_argv,
)
from core.errors import BackendError, InvalidInput
from core.imaging import rgb565_to_png
from core.models import HostCapacity, HostVM
from core.remote import vmconnect_command
from core.settings import Settings

DEFAULT_VM_DIR = "C:\\ProgramData\\hvkube\\vms"
HEARTBEAT_OK = {"OkApplicationsHealthy", "OkApplicationsUnknown", "OkApplicationsCritical"}


def _vm_key(name: str) -> str:
    return f"vm:{name.lower()}"


def _disk_key(path: str) -> str:
    return f"disk:{path.replace('/', chr(92)).lower()}"


class HyperVBackend:
    """A Hyper-V host driven through persistent PowerShell sessions."""

    name = "hyperv"
    simulated = False
    capabilities = frozenset(
        {
            Capability.GPU,
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
        powershell: str,
        *,
        vm_dir: str = "",
        switch: str = "",
        dynamic_memory: bool = False,
        enhanced_session: bool = True,
        sessions: int = 4,
        op_timeout_s: float = 600.0,
        startup_timeout_s: float = 120.0,
        script: Path = DISPATCHER,
    ) -> None:
        self.vm_dir = vm_dir.rstrip("\\/")
        self.switch = switch
        self.dynamic_memory = dynamic_memory
        self.enhanced_session = enhanced_session
        self.op_timeout_s = op_timeout_s
        self.pool = SessionPool(
            dispatcher_argv(powershell, script),
            size=sessions,
            op_timeout_s=op_timeout_s,
            startup_timeout_s=startup_timeout_s,
        )
        self._host_info: dict[str, Any] | None = None

    # -- plumbing ------------------------------------------------------------------------------

    def call(
        self,
        op: str,
        data: dict[str, Any] | None = None,
        *,
        vm: str | None = None,
        read_only: bool = False,
        locks: tuple[str, ...] = (),
        timeout_s: float | None = None,
    ) -> Any:
        """Run one dispatcher operation; an error record becomes the matching core error."""
        try:
            return self.pool.call(op, data, read_only=read_only, locks=locks, timeout_s=timeout_s)
        except RemoteError as exc:
            raise to_error(exc.record, op, vm) from None
        except BackendError as exc:
            if exc.vm is None and vm is not None:
                exc.vm = vm
            raise

    def _vm_op(self, op: str, name: str, **data: Any) -> Any:
        return self.call(op, {"Name": name, **data}, vm=name, locks=(_vm_key(name),))

    def host_info(self) -> dict[str, Any]:
        info = self.call("host_info", read_only=True)
        if not isinstance(info, dict):
            raise BackendError(f"host_info returned {type(info).__name__}, not an object")
        self._host_info = info
        return info

    def close(self) -> None:
        self.pool.close()

    # -- inventory -----------------------------------------------------------------------------

    def list_vms(self, prefix: str | None = None) -> list[HostVM]:
        items = as_list(self.call("vm_list", {"Prefix": prefix or ""}, read_only=True))
        vms = [parse_vm(item) for item in items]
        # The dispatcher filters too; filter again so the contract never depends on it.
        return sorted(
            (vm for vm in vms if prefix is None or vm.name.startswith(prefix)),
            key=lambda vm: vm.name,
        )

    def get_vm(self, name: str) -> HostVM | None:
        item = self.call("vm_get", {"Name": name}, vm=name, read_only=True)
        if item is None:
            return None
        # PowerShell 5.1 may hand back a one-element list where one object was meant.
        items = as_list(item)
        if not items:
            return None
        vm = parse_vm(items[0])
        return vm if vm.name == name else None

    def capacity(self) -> HostCapacity:
        info = self.host_info()
        return HostCapacity(
            total_memory_mb=parse_int(info.get("TotalMemoryBytes")) // (1024 * 1024),
            free_memory_mb=parse_int(info.get("FreeMemoryKB")) // 1024,
            logical_cpus=parse_int(info.get("LogicalProcessorCount"), 1),
        )

    # -- disks ---------------------------------------------------------------------------------

    def _vm_root(self) -> str:
        if self.vm_dir:
            return self.vm_dir
        info = self._host_info or self.host_info()
        base = str(info.get("VirtualHardDiskPath") or "").rstrip("\\/")
        return f"{base}\\hvkube" if base else DEFAULT_VM_DIR

    def disk_path_for(self, vm_name: str, template_disk: str) -> str:
        suffix = Path(template_disk.replace("\\", "/")).suffix or ".vhdx"
        return f"{self._vm_root()}\\{vm_name}\\{vm_name}{suffix}"

    def create_differencing_disk(self, parent_path: str, child_path: str) -> None:
        self.call(
            "disk_new_diff",
            {"Path": child_path, "ParentPath": parent_path},
            locks=(_disk_key(child_path), _disk_key(parent_path)),
        )

    def remove_disk(self, path: str) -> None:
        self.call("disk_remove", {"Path": path}, locks=(_disk_key(path),))

    # -- lifecycle -----------------------------------------------------------------------------

    def create_vm(self, name: str, disk_path: str, memory_mb: int, cpus: int, gpu: bool) -> None:
        data = {
            "Name": name,
            "DiskPath": disk_path,
            "MemoryBytes": int(memory_mb) * 1024 * 1024,
            "Cpus": int(cpus),
            "DynamicMemory": self.dynamic_memory,
            "SwitchName": self.switch,
            "Path": self._vm_root(),
            "Gpu": bool(gpu),
            "EnhancedSession": self.enhanced_session,
        }
        self.call("vm_new", data, vm=name, locks=(_vm_key(name), _disk_key(disk_path)))

    def start(self, name: str) -> None:
        self._vm_op("vm_start", name)

    def save(self, name: str) -> None:
        self._vm_op("vm_save", name)

    def pause(self, name: str) -> None:
        self._vm_op("vm_pause", name)

    def unpause(self, name: str) -> None:
        self._vm_op("vm_unpause", name)

    def stop(self, name: str, force: bool = False) -> None:
        self._vm_op("vm_stop", name, Force=bool(force))

    def remove(self, name: str) -> None:
        locks = (_vm_key(name), _disk_key(self.disk_path_for(name, ".vhdx")))
        self.call("vm_remove", {"Name": name}, vm=name, locks=locks)

    def checkpoint(self, name: str, checkpoint: str) -> None:
        self._vm_op("checkpoint_new", name, Checkpoint=checkpoint)

    def restore_checkpoint(self, name: str, checkpoint: str) -> None:
        self._vm_op("checkpoint_restore", name, Checkpoint=checkpoint)

    def remove_checkpoint(self, name: str, checkpoint: str) -> None:
        self._vm_op("checkpoint_remove", name, Checkpoint=checkpoint)

    # -- guest facts ---------------------------------------------------------------------------

    def ip_address(self, name: str) -> str | None:
        info = self.call("vm_ip", {"Name": name}, vm=name, read_only=True)
        if not isinstance(info, dict):
            return None
        return pick_ipv4(info.get("Addresses")) or pick_ipv4(
            str(info.get("KvpIPv4") or "").split(";")
        )

    def heartbeat_ok(self, name: str) -> bool:
        info = self.call("vm_heartbeat", {"Name": name}, vm=name, read_only=True)
        if not isinstance(info, dict) or enum_name(info.get("State"), VM_STATE_NAMES) != "Running":
            return False
        if enum_name(info.get("Heartbeat"), HEARTBEAT_NAMES) in HEARTBEAT_OK:
            return True
        return bool(info.get("Found") and info.get("Enabled") and info.get("PrimaryStatus") == "Ok")

    def saved_state_path(self, name: str) -> str | None:
        path = self.call("vm_saved_state", {"Name": name}, vm=name, read_only=True)
        return path if isinstance(path, str) and path else None

    def screenshot(self, name: str) -> bytes:
        info = self.call("vm_screenshot", {"Name": name}, vm=name, read_only=True)
        if not isinstance(info, dict):
            raise BackendError("the screenshot came back empty", vm=name, operation="screenshot")
        width, height = parse_int(info.get("Width")), parse_int(info.get("Height"))
        try:
            data = base64.b64decode(str(info.get("Data") or ""), validate=True)
            if not (0 < width <= 8192 and 0 < height <= 8192):
                raise ValueError(f"bad size {width}x{height}")
            return rgb565_to_png(data, width, height)
        except (ValueError, binascii.Error) as exc:
            raise BackendError(
                f"the screenshot of {name!r} could not be decoded: {exc}",
                vm=name,
                operation="screenshot",
            ) from None

    # -- input and consoles (Capability.INPUT / CONSOLE) ---------------------------------------

    def send_text(self, name: str, text: str) -> None:
        for chunk in text_chunks(text):
            self._vm_op("vm_type_text", name, Text=chunk)

    def send_key(self, name: str, key: str) -> None:
        if key.strip().lower() in {CTRL_ALT_DEL, "ctrl-alt-del", "cad"}:
            self._vm_op("vm_ctrl_alt_del", name)
            return
        self._vm_op("vm_type_key", name, KeyCode=key_code(key))

    def click(self, name: str, x: int, y: int, button: str = "left") -> None:
        if button not in MOUSE_BUTTONS:
            raise InvalidInput(f"--button {button!r} is not one of {', '.join(MOUSE_BUTTONS)}")
        for value, what in ((x, "X"), (y, "Y")):
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 16384:
                raise InvalidInput(f"{what} must be a pixel from 0 to 16384, got {value!r}")
        self._vm_op("vm_mouse_click", name, X=x, Y=y, Button=MOUSE_BUTTONS[button])

    def console(self, name: str) -> subprocess.Popen[bytes]:
        """Open Hyper-V's console window for the VM (vmconnect.exe, Windows only)."""
        return subprocess.Popen(vmconnect_command(name))


def from_settings(settings: Settings) -> HyperVBackend:
    return HyperVBackend(
        settings.powershell,
        vm_dir=settings.vm_dir,
        switch=settings.hyperv_switch,
        dynamic_memory=settings.hyperv_dynamic_memory,
        sessions=settings.hyperv_sessions,
        op_timeout_s=settings.op_timeout_s,
    )


__all__ = ["HyperVBackend", "from_settings"]

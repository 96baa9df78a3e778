"""The Hyper-V backend: every operation goes to the dispatcher script in a PowerShell session.

Values (names, paths, text to type) travel only as JSON data in a request to
the fixed dispatcher (dispatcher.ps1); no PowerShell source is ever built
from them. See transport.py for the protocol and errors.py for error mapping.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
import subprocess
import time
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from core.backends.base import Capability, VMRef
from core.backends.hyperv.errors import ErrorRecord, to_error
from core.backends.hyperv.keys import CTRL_ALT_DEL, MOUSE_BUTTONS, key_code, text_chunks
from core.backends.hyperv.parsing import (
    VM_STATE_NAMES,
    Checkpoint,
    as_list,
    enum_name,
    parse_checkpoints,
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
from core.errors import (
    BackendError,
    CheckpointNotFound,
    InvalidInput,
    InvalidVMState,
    OperationTimeout,
    PermissionDenied,
    VMNotFoundInHost,
)
from core.imaging import rgb565_to_png
from core.models import HostCapacity, HostState, HostVM
from core.names import check_pixel
from core.ownership import owner_mark, same_name
from core.remote import vmconnect_command
from core.reported import MAX_TEXT_CHARS, bounded, screen_request
from core.settings import Settings

log = logging.getLogger("hvkube.hyperv")

DEFAULT_VM_DIR = "C:\\ProgramData\\hvkube\\vms"
# The Heartbeat integration service, matched by id (its name is localised).
HEARTBEAT_SERVICE_ID = "84EAAE65-2F2E-45F5-9BB5-0E857DC8EB47"
WMI_JOB_STARTED = 4096
JOB_RUNNING = frozenset({2, 3, 4})  # new, starting, running
JOB_COMPLETED = 7
MAX_KVP_ITEM_CHARS = 16384


def _vm_key(vm_id: str) -> str:
    return f"vm:{vm_id.lower()}"


def kvp_value(items: list[Any], key: str) -> str:
    """The Data of the KVP exchange item named `key` (Msvm_KvpExchangeDataItem XML texts).

    The items are the guest's own words: an item too long for a KVP record (whose name and
    data are at most 512 and 2048 bytes) is skipped unread, and the data is bounded."""
    for item in items[:256]:
        text = str(item)
        if len(text) > MAX_KVP_ITEM_CHARS:
            continue
        try:
            root = ElementTree.fromstring(text)
        except ElementTree.ParseError:
            continue
        values = {
            prop.get("NAME"): (prop.findtext("VALUE") or "") for prop in root.iter("PROPERTY")
        }
        if values.get("Name") == key:
            return bounded(values.get("Data", ""), MAX_TEXT_CHARS)
    return ""


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

    def _vm_op(self, op: str, vm: VMRef, **data: Any) -> Any:
        return self.call(op, {"Id": vm.id, **data}, vm=vm.name, locks=(_vm_key(vm.id),))

    def _read_op(self, op: str, vm: VMRef, **data: Any) -> Any:
        return self.call(op, {"Id": vm.id, **data}, vm=vm.name, read_only=True)

    def _wmi(self, outcome: Any, what: str, vm: VMRef, timeout_s: float = 120.0) -> None:
        """Finish a WMI method call: 0 done, 4096 a job to wait for, anything else an error.
        The waiting happens here, in Python, where tests run it."""
        if not isinstance(outcome, dict):
            raise BackendError(f"{what} answered {outcome!r}", vm=vm.name, operation=what)
        code = parse_int(outcome.get("ReturnValue"), -1)
        if code == WMI_JOB_STARTED:
            code = self._wait_job(str(outcome.get("Job") or ""), what, vm, timeout_s)
        if code != 0:
            record = ErrorRecord(
                message=f"{what} failed with WMI return value {code}",
                fqid=f"HvkubeWmi{code}",
                category="NotSpecified",
                extra={"wmiCode": code},
            )
            raise to_error(record, what, vm.name)

    def _wait_job(self, instance_id: str, what: str, vm: VMRef, timeout_s: float) -> int:
        deadline = time.monotonic() + timeout_s
        delay = 0.05
        while True:
            job = self.call("wmi_job", {"InstanceId": instance_id}, vm=vm.name, read_only=True)
            state = parse_int(job.get("JobState") if isinstance(job, dict) else None, -1)
            if state not in JOB_RUNNING:
                if state == JOB_COMPLETED:
                    return 0
                assert isinstance(job, dict)
                return parse_int(job.get("ErrorCode"), 32768) or 32768
            if time.monotonic() >= deadline:
                raise OperationTimeout(
                    f"{what} did not finish within {timeout_s:g} s", vm=vm.name, operation=what
                )
            time.sleep(delay)
            delay = min(0.5, delay * 2)

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
        answer = self.call("vm_list", read_only=True)
        items = as_list(answer.get("Items")) if isinstance(answer, dict) else as_list(answer)
        unreadable = as_list(answer.get("Errors")) if isinstance(answer, dict) else []
        for error in unreadable:
            problem = to_error(ErrorRecord.from_json(error), "vm_list", None)
            if isinstance(problem, PermissionDenied):
                raise problem  # no rights: not "no VMs"
            # A VM whose files are gone: shown in the log, never fatal to the rest.
            log.warning("Hyper-V could not read a VM: %s", problem.message[:300])
        vms = [parse_vm(item) for item in items]
        folded = None if prefix is None else prefix.casefold()
        return sorted(
            (vm for vm in vms if folded is None or vm.name.casefold().startswith(folded)),
            key=lambda vm: (vm.name, vm.id),
        )

    def find_vms(self, name: str) -> list[HostVM]:
        if any(c in name for c in "*?[]`"):
            raise InvalidInput(f"VM name {name!r} holds a wildcard character")
        answer = self.call("vm_find", {"Name": name}, vm=name, read_only=True)
        if not isinstance(answer, dict):
            raise BackendError(f"vm_find answered {answer!r}"[:300], vm=name)
        for error in as_list(answer.get("Errors")):
            problem = to_error(ErrorRecord.from_json(error), "vm_find", name)
            if not isinstance(problem, VMNotFoundInHost):  # no VM of that name: an empty list
                raise problem
        vms = [parse_vm(item) for item in as_list(answer.get("Items"))]
        return sorted((vm for vm in vms if same_name(vm.name, name)), key=lambda vm: vm.id)

    def get_vm(self, vm: VMRef) -> HostVM | None:
        try:
            item = self._read_op("vm_get", vm)
        except VMNotFoundInHost:
            return None
        found = parse_vm(as_list(item)[0]) if as_list(item) else None
        return found if found is not None and found.id == vm.id.lower() else None

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
        folder = child_path.replace("/", "\\").rsplit("\\", 1)[0]
        self.call(
            "disk_new_diff",
            {"Path": child_path, "ParentPath": parent_path, "Folder": folder},
            locks=(_disk_key(child_path), _disk_key(parent_path)),
        )

    def remove_disk(self, path: str) -> None:
        found = self.call("disk_exists", {"Path": path}, read_only=True)
        if isinstance(found, dict) and found.get("Exists") is False:
            return  # not there: nothing to remove
        self.call("disk_remove", {"Path": path}, locks=(_disk_key(path),))

    # -- lifecycle -----------------------------------------------------------------------------

    def create_vm(
        self, name: str, disk_path: str, memory_mb: int, cpus: int, gpu: bool, owner: str
    ) -> HostVM:
        memory, root = int(memory_mb) * 1024 * 1024, self._vm_root()
        locks = (_vm_key(name), _disk_key(disk_path))
        if self.switch:
            answer = self.call(
                "vm_new_on_switch",
                {
                    "Name": name,
                    "DiskPath": disk_path,
                    "MemoryBytes": memory,
                    "Path": root,
                    "SwitchName": self.switch,
                },
                vm=name,
                locks=locks,
            )
        else:  # New-VM refuses an empty -SwitchName: no switch is another operation
            answer = self.call(
                "vm_new",
                {
                    "Name": name,
                    "DiskPath": disk_path,
                    "MemoryBytes": memory,
                    "Path": self._vm_root(),
                },
                vm=name,
                locks=locks,
            )
        made = parse_vm(answer)
        ref = VMRef(name, made.id)
        try:
            # A VM with a GPU partition cannot be saved: it is turned off when the host stops.
            stop_action = "TurnOff" if gpu else "Save"
            self._vm_op(
                "vm_configure", ref, Notes=owner_mark(owner), Cpus=int(cpus), StopAction=stop_action
            )
            if self.dynamic_memory:
                self._vm_op("vm_dynamic_memory", ref)
            if self.enhanced_session:
                self._vm_op("vm_enhanced_session", ref)
            if gpu:
                self._vm_op("vm_add_gpu", ref)
        except BackendError:
            # Made by us a moment ago (its id came back from New-VM), but not yet marked: remove
            # it now, or nothing would ever know it is ours.
            with contextlib.suppress(BackendError):
                self._vm_op("vm_remove", ref)
            raise
        return made.model_copy(update={"owner": owner})

    def start(self, vm: VMRef) -> None:
        self._vm_op("vm_start", vm)

    def save(self, vm: VMRef) -> None:
        self._vm_op("vm_save", vm)

    def pause(self, vm: VMRef) -> None:
        self._vm_op("vm_pause", vm)

    def unpause(self, vm: VMRef) -> None:
        self._vm_op("vm_unpause", vm)

    def stop(self, vm: VMRef, force: bool = False) -> None:
        try:
            self._vm_op("vm_turn_off" if force else "vm_shutdown", vm)
        except InvalidVMState:
            found = self.get_vm(vm)
            if found is None or found.state is not HostState.OFF:
                raise  # Stop-VM refuses an Off VM: already where it was asked to be

    def remove(self, vm: VMRef) -> None:
        found = self.get_vm(vm)
        if found is None:
            raise VMNotFoundInHost(f"Hyper-V has no VM with id {vm.id}", vm=vm.name)
        if found.state is not HostState.OFF:
            self._vm_op("vm_turn_off", vm)
        # Remove-VMSnapshot merges differencing checkpoint disks; never delete .avhdx by hand.
        for checkpoint in reversed(self.checkpoints(vm)):
            self.call(
                "checkpoint_remove",
                {"CheckpointId": checkpoint.id},
                vm=vm.name,
                locks=(_vm_key(vm.id),),
            )
        self._vm_op("vm_remove", vm)

    def checkpoints(self, vm: VMRef) -> list[Checkpoint]:
        answer = self._read_op("checkpoint_list", vm)
        return parse_checkpoints(answer.get("Items") if isinstance(answer, dict) else answer)

    def checkpoint_names(self, vm: VMRef) -> list[str]:
        return [c.name for c in self.checkpoints(vm)]

    def checkpoint(self, vm: VMRef, checkpoint: str) -> None:
        older = [c for c in self.checkpoints(vm) if c.name == checkpoint]
        self._vm_op("checkpoint_new", vm, Checkpoint=checkpoint)
        # One checkpoint per name: the older ones of that name go once the new one exists.
        for old in older:
            self.call(
                "checkpoint_remove", {"CheckpointId": old.id}, vm=vm.name, locks=(_vm_key(vm.id),)
            )

    def restore_checkpoint(self, vm: VMRef, checkpoint: str) -> None:
        matching = [c for c in self.checkpoints(vm) if c.name == checkpoint]
        if not matching:
            raise CheckpointNotFound(
                f"{vm.name!r} has no checkpoint named {checkpoint!r}",
                vm=vm.name,
                operation="checkpoint_restore",
            )
        newest = matching[-1]
        self.call(
            "checkpoint_restore",
            {"CheckpointId": newest.id},
            vm=vm.name,
            locks=(_vm_key(vm.id),),
        )

    def remove_checkpoint(self, vm: VMRef, checkpoint: str) -> None:
        for old in [c for c in self.checkpoints(vm) if c.name == checkpoint]:
            self.call(
                "checkpoint_remove", {"CheckpointId": old.id}, vm=vm.name, locks=(_vm_key(vm.id),)
            )

    # -- guest facts ---------------------------------------------------------------------------

    def ip_address(self, vm: VMRef) -> str | None:
        info = self._read_op("vm_ip", vm)
        if not isinstance(info, dict):
            return None
        found = pick_ipv4(info.get("Addresses"))
        if found or enum_name(info.get("State"), VM_STATE_NAMES) != "Running":
            return found
        # Fallback: the guest's own report through the KVP exchange.
        try:
            kvp = self._read_op("vm_kvp", vm)
        except BackendError:
            return None
        items = as_list(kvp.get("Items")) if isinstance(kvp, dict) else []
        return pick_ipv4(kvp_value(items, "NetworkAddressIPv4").split(";"))

    def heartbeat_ok(self, vm: VMRef) -> bool:
        info = self._read_op("vm_heartbeat", vm)
        if not isinstance(info, dict) or enum_name(info.get("State"), VM_STATE_NAMES) != "Running":
            return False
        for service in as_list(info.get("Items")):
            # Match the service by its id: its name is localised.
            if isinstance(service, dict) and str(service.get("Id", "")).upper().endswith(
                HEARTBEAT_SERVICE_ID
            ):
                return bool(service.get("Enabled")) and service.get("PrimaryStatus") == "Ok"
        return False

    def saved_state_path(self, vm: VMRef) -> str | None:
        try:
            item = as_list(self._read_op("vm_get", vm))[0]
        except (VMNotFoundInHost, IndexError):
            return None
        path = str(item.get("Path") or "").rstrip("\\") if isinstance(item, dict) else ""
        if not path or enum_name(item.get("State"), VM_STATE_NAMES) != "Saved":
            return None
        # Configuration version 6+ keeps the runtime state beside the configuration.
        return f"{path}\\Virtual Machines\\{vm.id.upper()}.vmrs"

    def screenshot(self, vm: VMRef) -> bytes:
        # The guest sets its screen size: the host is asked for a thumbnail of bounded size
        # (it scales the screen down itself), so a 4K or 8K guest costs no more to decode.
        head = self._read_op("vm_video_head", vm)
        width = parse_int(head.get("Width")) if isinstance(head, dict) else 0
        height = parse_int(head.get("Height")) if isinstance(head, dict) else 0
        width, height = screen_request(width, height)
        info = self._read_op("vm_thumbnail", vm, Width=width, Height=height)
        self._wmi(info, "GetVirtualSystemThumbnailImage", vm)
        encoded = str(info.get("Data") or "")
        expected = width * height * 2
        try:
            if len(encoded) > (expected + 2) // 3 * 4 + 4:
                raise ValueError(f"{len(encoded)} characters for a {width}x{height} image")
            data = base64.b64decode(encoded, validate=True)
            return rgb565_to_png(data, width, height)
        except (ValueError, binascii.Error) as exc:
            raise BackendError(
                f"the screenshot of {vm.name!r} could not be decoded: {bounded(exc, 200)}",
                vm=vm.name,
                operation="screenshot",
            ) from None

    # -- input and consoles (Capability.INPUT / CONSOLE) ---------------------------------------

    def send_text(self, vm: VMRef, text: str) -> None:
        for chunk in text_chunks(text):
            encoded = base64.b64encode(chunk.encode("ascii")).decode("ascii")
            self._wmi(self._vm_op("vm_type_text", vm, TextBase64=encoded), "TypeText", vm)

    def send_key(self, vm: VMRef, key: str) -> None:
        if key.strip().lower() in {CTRL_ALT_DEL, "ctrl-alt-del", "cad"}:
            self._wmi(self._vm_op("vm_ctrl_alt_del", vm), "TypeCtrlAltDel", vm)
            return
        self._wmi(self._vm_op("vm_type_key", vm, KeyCode=key_code(key)), "TypeKey", vm)

    def click(self, vm: VMRef, x: int, y: int, button: str = "left") -> None:
        if button not in MOUSE_BUTTONS:
            raise InvalidInput(f"--button {button!r} is not one of {', '.join(MOUSE_BUTTONS)}")
        self.move_mouse(vm, x, y)
        self._wmi(
            self._vm_op("vm_mouse_click", vm, Button=MOUSE_BUTTONS[button]), "ClickButton", vm
        )

    def move_mouse(self, vm: VMRef, x: int, y: int) -> None:
        check_pixel(x, y)
        self._wmi(self._vm_op("vm_mouse_move", vm, X=x, Y=y), "SetAbsolutePosition", vm)

    def check_key(self, key: str) -> None:
        if key.strip().lower() not in {CTRL_ALT_DEL, "ctrl-alt-del", "cad"}:
            key_code(key)

    def check_text(self, text: str) -> None:
        text_chunks(text)

    def console(self, vm: VMRef) -> subprocess.Popen[bytes]:
        """Open Hyper-V's console window for the VM (vmconnect.exe, Windows only)."""
        return subprocess.Popen(vmconnect_command(vm.name))


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

"""A fake PowerShell host: speaks the dispatcher's protocol and answers from the simulated host.

    HVKUBE_POWERSHELL="python -m tests.fakes.fakeps" hvkube --backend hyperv ...

in a checkout's root folder (`python_fake_command` gives a command line for any folder)
runs the whole Hyper-V code path (sessions, framing, parsing, error mapping) on
a machine without Hyper-V. It is started exactly like the real session (the
backend appends `-File <dispatcher.ps1>`), reads the dispatcher's allow-list
and parameter names from that file and refuses anything else, as PowerShell
would. It answers from the SimHost whose state lives in --state-dir (default:
HVKUBE_FAKEPS_STATE, else the folder of the configured database).

It can imitate Windows PowerShell 5.1 (`--ps51`: a BOM, CLIXML noise on
stderr, enums as integers, `\\/Date(ms)\\/` dates, a bare object where a list
was expected), localised messages (`--localized`), and faults: `--fault
KIND[:OP]` on every matching call, or one-shot faults queued with `inject()`.
Fault kinds: die (exit mid-call), die-after (exit once the operation is done, before
answering: the host changed and the caller cannot know), hang (never answer), garbage (a broken
frame), noise (stray lines and a forged frame before the real answer).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import io
import json
import os
import re
import shlex
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from core.backends.base import VMRef
from core.backends.hyperv import HEARTBEAT_SERVICE_ID
from core.backends.hyperv.parsing import VM_STATE_NAMES
from core.backends.sim import SimHost
from core.errors import (
    BackendError,
    CheckpointNotFound,
    HvkubeError,
    InvalidVMState,
    PermissionDenied,
    Unsupported,
    VMNotFoundInHost,
)
from core.ownership import same_name
from tests.fakes import fakeps_errors

FAULT_KINDS = ("die", "die-after", "hang", "garbage", "noise")
FAULTS_FILE = "fakeps-faults.json"
INPUT_FILE = "fakeps-input.jsonl"

# What Windows PowerShell 5.1 prints for a VM state: the enum's number (stable ones only).
STATE_NUMBERS = {name: number for number, name in VM_STATE_NAMES.items()}

# Which cmdlet class a dispatcher operation would fail in (for FullyQualifiedErrorId).


# -- reading the dispatcher script -------------------------------------------------------------


def matching_brace(text: str, start: int) -> int:
    """Index just after the `}` matching the `{` at `start` (strings and comments skipped)."""
    depth = 0
    i = start
    while i < len(text):
        c = text[i]
        if c == "#":
            i = text.find("\n", i)
            if i < 0:
                break
            continue
        if c in "'\"":
            end = i + 1
            while end < len(text) and text[end] != c:
                end += 2 if c == '"' and text[end] == "`" else 1
            i = end + 1
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    raise ValueError("unbalanced braces in the dispatcher script")


def dispatcher_ops(text: str) -> dict[str, list[str]]:
    """The `$Ops = @{ 'name' = { param(...) ... } }` allow-list: op name -> parameter names."""
    match = re.search(r"^\$Ops\s*=\s*@\{", text, re.M)
    if match is None:
        raise ValueError("the dispatcher script has no `$Ops = @{` allow-list")
    table_end = matching_brace(text, match.end() - 1)
    body = text[match.end() : table_end - 1]
    ops: dict[str, list[str]] = {}
    pos = 0
    entry = re.compile(r"\s*'([a-z0-9_]+)'\s*=\s*\{")
    while True:
        found = entry.match(body, pos)
        if found is None:
            if body[pos:].strip():
                raise ValueError(f"unexpected text in the allow-list: {body[pos : pos + 80]!r}")
            break
        end = matching_brace(body, found.end() - 1)
        block = body[found.end() : end - 1]
        params: list[str] = []
        # Comments may come before `param(...)`, as PowerShell allows.
        declared = re.match(r"(?:\s*#[^\n]*\n)*\s*param\s*\((.*?)\)\s*\n", block, re.S)
        if declared:
            # Every parameter is typed: `[string]$Name`, `[bool]$Click = $true`.
            params = re.findall(r"\[[A-Za-z.]+\]\s*\$([A-Za-z_][A-Za-z0-9_]*)", declared.group(1))
        ops[found.group(1)] = params
        pos = end
    return ops


# -- faults ------------------------------------------------------------------------------------


@contextlib.contextmanager
def _fault_file(state_dir: Path) -> Iterator[list[dict[str, Any]]]:
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / FAULTS_FILE
    fd = os.open(state_dir / "fakeps-faults.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        faults: list[dict[str, Any]] = json.loads(path.read_text()) if path.exists() else []
        before = list(faults)
        yield faults
        if faults != before:
            path.write_text(json.dumps(faults))
    finally:
        os.close(fd)


def inject(state_dir: str | os.PathLike[str], kind: str, op: str | None = None) -> None:
    """Queue a one-shot fault for the next matching call of any fake host on this state dir."""
    if kind not in FAULT_KINDS:
        raise ValueError(f"unknown fault {kind!r}; choose from {', '.join(FAULT_KINDS)}")
    with _fault_file(Path(state_dir)) as faults:
        faults.append({"kind": kind, "op": op})


def _take_fault(state_dir: Path, op: str, fixed: list[tuple[str, str | None]]) -> str | None:
    for kind, fault_op in fixed:
        if fault_op in (None, op):
            return kind
    if not (state_dir / FAULTS_FILE).exists():
        return None
    with _fault_file(state_dir) as faults:
        for fault in faults:
            if fault.get("op") in (None, op):
                faults.remove(fault)
                return str(fault["kind"])
    return None


def read_input_log(state_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """What the fake host was asked to type or click, in order."""
    path = Path(state_dir) / INPUT_FILE
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def set_screen(state_dir: str | os.PathLike[str], vm_id: str, width: int, height: int) -> None:
    """What a guest does when it changes its display resolution."""
    (Path(state_dir) / f"fakeps-screen-{vm_id}.json").write_text(json.dumps([width, height]))


def read_thumbnail_sizes(state_dir: str | os.PathLike[str]) -> list[tuple[int, int]]:
    """The thumbnail sizes the host was asked for, in order."""
    path = Path(state_dir) / "fakeps-thumbnails.log"
    if not path.exists():
        return []
    return [tuple(json.loads(line)) for line in path.read_text().splitlines() if line.strip()]


# -- the host ----------------------------------------------------------------------------------


class FakeHost:
    def __init__(self, sim: SimHost, state_dir: Path, *, ps51: bool, localized: bool) -> None:
        self.sim = sim
        self.state_dir = state_dir
        self.ps51 = ps51
        self.localized = localized
        # The VM the current operation looked up: its state goes into error records.
        self.op_vm: dict[str, Any] | None = None

    # shapes --------------------------------------------------------------------------------

    def _enum(self, name: str, numbers: dict[str, int]) -> Any:
        return numbers.get(name, name) if self.ps51 else name

    def _date(self, iso: str | None) -> str | None:
        if not iso:
            return None
        stamp = datetime.fromisoformat(iso)
        if self.ps51:
            return f"/Date({int(stamp.timestamp() * 1000)})/"
        return stamp.astimezone(UTC).isoformat()

    def _list(self, items: list[Any]) -> Any:
        """PowerShell 5.1 unrolls a one-element array and writes nothing for an empty one."""
        if self.ps51 and len(items) == 1:
            return items[0]
        if self.ps51 and not items:
            return None
        return items

    def _record(self, raw: dict[str, Any]) -> dict[str, Any]:
        """What the dispatcher's ConvertTo-HvRecord projects from a VirtualMachine."""
        return {
            "Name": raw["name"],
            "Id": raw["id"],
            "State": self._enum(self.sim.final_state(raw), STATE_NUMBERS),
            "Notes": raw.get("notes") or "",
            "MemoryStartup": raw["memory_mb"] * 1024 * 1024,
            "CreationTime": self._date(raw.get("created_at")),
            "Generation": 2,
            "Path": self.sim.vm_dir,
        }

    def _ref(self, p: dict[str, Any]) -> VMRef:
        """The VM with the request's Id, as Get-VM -Id finds it; a real host's error when none."""
        vm_id = str(uuid.UUID(str(p["Id"])))
        raw = self.sim.raw_state()["vms"].get(vm_id)
        if raw is None:
            raise _NoVM(vm_id)
        if raw.get("broken"):
            raise BackendError(
                f"The virtual machine '{raw['name']}' could not be read: its configuration "
                "file was not found (0x80070002).",
                vm=raw["name"],
            )
        self.op_vm = raw
        return VMRef(raw["name"], vm_id)

    def _checkpoints(self, raw: dict[str, Any]) -> list[dict[str, Any]]:
        return [
            {"Id": c["id"], "Name": c["name"], "CreationTime": self._date(c["at"])}
            for c in raw["checkpoints"]
        ]

    def _find_checkpoint(self, checkpoint_id: str) -> VMRef:
        """Get-VMSnapshot -Id: the VM that has the checkpoint."""
        wanted = str(uuid.UUID(checkpoint_id))
        for raw in self.sim.raw_state()["vms"].values():
            if any(c["id"] == wanted for c in raw["checkpoints"]):
                return VMRef(raw["name"], raw["id"])
        raise _NoCheckpoint(checkpoint_id)

    def _wmi_result(self, ref: VMRef, log: dict[str, Any] | None) -> dict[str, Any]:
        """A keyboard or mouse method: 32775 (invalid state) unless the VM runs."""
        if self.sim.raw_vm(ref)["state"] != "Running":
            return {"ReturnValue": 32775, "Job": ""}
        if log is not None:
            self._log_input({"vm": ref.name, **log})
        return {"ReturnValue": 0, "Job": ""}

    # operations ----------------------------------------------------------------------------

    def _log_input(self, entry: dict[str, Any]) -> None:
        with (self.state_dir / INPUT_FILE).open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(entry) + "\n")

    def run(self, op: str, p: dict[str, Any]) -> Any:
        sim = self.sim
        self.op_vm = None
        if op == "ping":
            return {"pong": True, "ps": "5.1.fake" if self.ps51 else "7.4.fake"}
        if op == "host_info":
            cap = sim.capacity()
            return {
                "TotalMemoryBytes": cap.total_memory_mb * 1024 * 1024,
                "FreeMemoryKB": cap.free_memory_mb * 1024,
                "LogicalProcessorCount": cap.logical_cpus,
                "VirtualHardDiskPath": sim.vm_dir,
                "VirtualMachinePath": sim.vm_dir,
            }
        if op == "vm_list":
            vms = sim.raw_state()["vms"].values()
            return {
                "Items": self._list([self._record(vm) for vm in vms if not vm.get("broken")]),
                "Errors": [
                    self.error_record(
                        BackendError(
                            f"The virtual machine '{vm['name']}' could not be read: its "
                            "configuration file was not found. (0x80070002)"
                        ),
                        op,
                    )
                    for vm in vms
                    if vm.get("broken")
                ],
            }
        if op == "vm_find":
            found = [
                vm for vm in sim.raw_state()["vms"].values() if same_name(vm["name"], p["Name"])
            ]
            errors = [] if found else [self.error_record(_NoVM(p["Name"], by_name=True), op)]
            return {"Items": self._list([self._record(vm) for vm in found]), "Errors": errors}
        if op == "vm_get":
            return self._record(sim.raw_vm(self._ref(p)))
        if op == "disk_new_diff":
            sim.create_differencing_disk(p["ParentPath"], p["Path"])
            return None
        if op == "disk_exists":
            return {"Exists": sim.disk_exists(p["Path"])}
        if op == "disk_remove":
            if not sim.disk_exists(p["Path"]):
                raise _NoFile(p["Path"])
            sim.remove_disk(p["Path"])
            return None
        if op in {"vm_new", "vm_new_on_switch"}:
            memory_mb = int(p["MemoryBytes"]) // (1024 * 1024)
            made = sim.new_vm(p["Name"], p["DiskPath"], memory_mb, 2, False, notes=None)
            return self._record(sim.raw_vm(VMRef(made.name, made.id)))
        if op == "vm_configure":
            sim.configure(self._ref(p), notes=str(p["Notes"]))
            return None
        if op == "vm_add_gpu":
            sim.configure(self._ref(p), gpu=True)
            return None
        if op in {"vm_dynamic_memory", "vm_enhanced_session"}:
            self._ref(p)
            return None
        simple = {
            "vm_start": sim.start,
            "vm_save": sim.save,
            "vm_pause": sim.pause,
            "vm_unpause": sim.unpause,
            "vm_remove": sim.remove,
        }
        if op in simple:
            simple[op](self._ref(p))
            return None
        if op in {"vm_shutdown", "vm_turn_off"}:
            ref = self._ref(p)
            if sim.raw_vm(ref)["state"] == "Off":
                raise InvalidVMState(f"'{ref.name}' is already turned off", vm=ref.name)
            sim.stop(ref, force=op == "vm_turn_off")
            return None
        if op == "checkpoint_list":
            return {"Items": self._list(self._checkpoints(sim.raw_vm(self._ref(p))))}
        if op == "checkpoint_new":
            taken = sim.add_checkpoint(self._ref(p), p["Checkpoint"])
            return {
                "Id": taken["id"],
                "Name": taken["name"],
                "CreationTime": self._date(taken["at"]),
            }
        if op == "checkpoint_restore":
            checkpoint_id = str(uuid.UUID(str(p["CheckpointId"])))
            sim.restore_checkpoint_id(self._find_checkpoint(checkpoint_id), checkpoint_id)
            return None
        if op == "checkpoint_remove":
            checkpoint_id = str(uuid.UUID(str(p["CheckpointId"])))
            sim.remove_checkpoint_id(self._find_checkpoint(checkpoint_id), checkpoint_id)
            return None
        if op == "vm_ip":
            ref = self._ref(p)
            ip = sim.ip_address(ref)
            addresses = [] if ip is None else ["fe80::215:5dff:fe00:1", ip]
            return {
                "State": self._enum(sim.raw_vm(ref)["state"], STATE_NUMBERS),
                "Addresses": self._list(addresses),
            }
        if op == "vm_kvp":
            ref = self._ref(p)
            ip = sim.ip_address(ref)
            if ip is None:
                raise _NoDevice("Msvm_KvpExchangeComponent")
            return {"Items": [_kvp_item("NetworkAddressIPv4", ip)]}
        if op == "vm_heartbeat":
            ref = self._ref(p)
            ok = sim.heartbeat_ok(ref)
            services = [
                ("Guest Service Interface", "6C09BB55-D683-4DA0-8931-C9BF705F6480", "Ok"),
                ("Heartbeat", HEARTBEAT_SERVICE_ID, "Ok" if ok else "NoContact"),
            ]
            return {
                "State": self._enum(sim.raw_vm(ref)["state"], STATE_NUMBERS),
                "Items": self._list(
                    [
                        {
                            "Id": f"Microsoft:{ref.id.upper()}\\{service_id}",
                            "Enabled": True,
                            "PrimaryStatus": status,
                        }
                        for _name, service_id, status in services
                    ]
                ),
            }
        if op == "vm_video_head":
            ref = self._ref(p)
            if sim.raw_vm(ref)["state"] != "Running":
                raise _NoDevice("Msvm_VideoHead")
            screen = self.state_dir / f"fakeps-screen-{ref.id}.json"
            if screen.exists():  # the guest set its own screen size
                width, height = json.loads(screen.read_text())
                return {"Width": width, "Height": height}
            shot = _rgb565_screenshot(sim.screenshot(ref))
            return {"Width": shot["Width"], "Height": shot["Height"]}
        if op == "vm_thumbnail":
            size = (int(p["Width"]), int(p["Height"]))
            with open(self.state_dir / "fakeps-thumbnails.log", "a") as log:
                log.write(json.dumps(size) + "\n")
            shot = _rgb565_screenshot(sim.screenshot(self._ref(p)), size)
            return {"ReturnValue": 0, "Job": "", "Data": shot["Data"]}
        if op == "vm_type_text":
            ref = self._ref(p)
            text = base64.b64decode(str(p["TextBase64"])).decode("ascii")
            return self._wmi_result(ref, {"op": "type_text", "text": text})
        if op == "vm_type_key":
            ref = self._ref(p)
            return self._wmi_result(ref, {"op": "type_key", "key": int(p["KeyCode"])})
        if op == "vm_ctrl_alt_del":
            return self._wmi_result(self._ref(p), {"op": "ctrl_alt_del"})
        if op == "vm_mouse_move":
            ref = self._ref(p)
            result = self._wmi_result(ref, None)
            if result["ReturnValue"] == 0:  # the host keeps the pointer, whichever session asks
                (self.state_dir / f"fakeps-pointer-{ref.id}.json").write_text(
                    json.dumps([int(p["X"]), int(p["Y"])])
                )
            return result
        if op == "vm_mouse_click":
            ref = self._ref(p)
            pointer = self.state_dir / f"fakeps-pointer-{ref.id}.json"
            x, y = json.loads(pointer.read_text()) if pointer.exists() else (0, 0)
            entry = {"op": "click", "x": x, "y": y, "button": int(p["Button"])}
            return self._wmi_result(ref, entry)
        raise Unsupported(f"the fake host does not implement '{op}'")

    # errors --------------------------------------------------------------------------------

    no_rights = False  # --no-rights (set by serve): neither elevated nor a Hyper-V admin

    def error_record(self, exc: Exception, op: str) -> dict[str, Any]:
        """The record the dispatcher would send for this failure on a real host (built by
        fakeps_errors.build_record; in French with --localized)."""
        message = str(exc)
        # The VM the operation found: a failed call leaves the state it found, the state
        # before it.
        vm_state = None
        if self.op_vm is not None:
            vm_state = self._enum(self.op_vm["state"], STATE_NUMBERS)
        # Failures of the dispatcher's own lookups, in the shapes a real host gives them:
        # (FullyQualifiedErrorId, category, exception type, HResult).
        own = {
            _NoVM: (  # Get-VM -Id / -Name with no such VM
                "InvalidParameter,Microsoft.HyperV.PowerShell.Commands.GetVM",
                "InvalidArgument",
                fakeps_errors.VIRTUALIZATION_EXCEPTION,
                fakeps_errors.COR_E_EXCEPTION,
            ),
            _NoFile: (  # Remove-Item of a path that is not there
                "PathNotFound,Microsoft.PowerShell.Commands.RemoveItemCommand",
                "ObjectNotFound",
                "System.Management.Automation.ItemNotFoundException",
                fakeps_errors.COR_E_INVALIDOPERATION,
            ),
            _NoDevice: (  # the dispatcher's own Stop-Hv in Get-HvDevice
                "HvkubeInvalidState,Get-HvDevice",
                "InvalidOperation",
                fakeps_errors.INVALID_OPERATION,
                fakeps_errors.COR_E_INVALIDOPERATION,
            ),
        }
        for kind, (fqid, category, exc_type, hresult) in own.items():
            if isinstance(exc, kind):
                return {
                    "message": message,
                    "fqid": fqid,
                    "category": category,
                    "type": exc_type,
                    "hresults": [hresult],
                    "target": "",
                }
        vm = getattr(exc, "vm", None)
        # The simulated host raises a few failures as a plain BackendError; a real host
        # reports them as these.
        if type(exc) is BackendError and exc.raw == "PermissionDenied":
            exc = PermissionDenied(message, vm=vm, operation=op)
        return fakeps_errors.build_record(
            exc,
            op,
            "fr" if self.localized else "en",
            vm_state=vm_state,
            no_rights=self.no_rights,
        )


class _NoVM(VMNotFoundInHost):
    """Get-VM found no VM with that Id (or name)."""

    def __init__(self, key: str, by_name: bool = False) -> None:
        what = "name" if by_name else "identifier"
        super().__init__(f"Hyper-V was unable to find a virtual machine with {what} '{key}'.")
        self.by_name = by_name


class _NoCheckpoint(CheckpointNotFound):
    def __init__(self, checkpoint_id: str) -> None:
        super().__init__(
            f"Hyper-V was unable to find a checkpoint with identifier '{checkpoint_id}'."
        )


class _NoFile(VMNotFoundInHost):
    """Remove-Item of a path that is not there."""

    def __init__(self, path: str) -> None:
        super().__init__(f"Cannot find path '{path}' because it does not exist.")


class _NoDevice(InvalidVMState):
    def __init__(self, class_name: str) -> None:
        super().__init__(f"the VM has no {class_name} now (is it running?)")


def _kvp_item(key: str, value: str) -> str:
    """A Msvm_KvpExchangeDataItem as the KVP component hands it out: an XML text."""
    from xml.sax.saxutils import escape

    return (
        '<INSTANCE CLASSNAME="Msvm_KvpExchangeDataItem">'
        f'<PROPERTY NAME="Data" TYPE="string"><VALUE>{escape(value)}</VALUE></PROPERTY>'
        f'<PROPERTY NAME="Name" TYPE="string"><VALUE>{escape(key)}</VALUE></PROPERTY>'
        '<PROPERTY NAME="Source" TYPE="uint16"><VALUE>2</VALUE></PROPERTY></INSTANCE>'
    )


def _rgb565_screenshot(png: bytes, size: tuple[int, int] | None = None) -> dict[str, Any]:
    """Re-encode a PNG as Hyper-V's thumbnail: raw RGB565, little endian, base64, scaled
    to `size` as the host scales the screen to the thumbnail size it is asked for."""
    import base64

    from PIL import Image, ImageChops

    image = Image.open(io.BytesIO(png)).convert("RGB")
    if size is not None and size != image.size:
        image = image.resize(size)
    width, height = image.size
    red, green, blue = image.split()
    # pixel = r5 g6 b5; low byte: g's low 3 bits and b5, high byte: r5 and g's high 3 bits.
    low = ImageChops.add(
        green.point([((v >> 2) & 7) << 5 for v in range(256)]),
        blue.point([v >> 3 for v in range(256)]),
    )
    high = ImageChops.add(
        red.point([(v >> 3) << 3 for v in range(256)]), green.point([v >> 5 for v in range(256)])
    )
    out = Image.merge("LA", (low, high)).tobytes()  # little endian: low byte first
    return {
        "Width": width,
        "Height": height,
        "Format": "RGB565",
        "Data": base64.b64encode(out).decode(),
    }


# -- the protocol loop -------------------------------------------------------------------------

CLIXML_PROGRESS = (
    "#< CLIXML\n"
    '<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04">'
    '<Obj S="progress" RefId="0"><TN RefId="0"><T>System.Management.Automation.PSCustomObject</T>'
    '<T>System.Object</T></TN><MS><I64 N="SourceId">1</I64><PR N="Record">'
    "<AV>Preparing modules for first use.</AV><AI>0</AI><Nil /><PI>-1</PI><PC>-1</PC>"
    "<T>Completed</T><SR>-1</SR><SD> </SD></PR></MS></Obj></Objs>\n"
)


def _dumps(value: Any, ps51: bool) -> str:
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    if ps51:
        # Windows PowerShell 5.1 escapes the slashes of its date form: "\/Date(...)\/".
        text = re.sub(r'"/Date\((-?\d+)\)/"', r'"\\/Date(\1)\\/"', text)
    return text


class _Out:
    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream

    def line(self, text: str) -> None:
        self.stream.write(text.encode("utf-8") + b"\n")
        self.stream.flush()


def serve(host: FakeHost, ops: dict[str, list[str]], args: argparse.Namespace) -> int:
    out = _Out(sys.stdout.buffer)
    err = sys.stderr
    fixed: list[tuple[str, str | None]] = []
    for spec in args.fault or []:
        kind, _, fault_op = spec.partition(":")
        if kind not in FAULT_KINDS:
            print(f"fakeps: unknown fault {kind!r}; choose from {', '.join(FAULT_KINDS)}", file=err)
            return 2
        fixed.append((kind, fault_op or None))
    if host.ps51:
        sys.stdout.buffer.write("\ufeff".encode())
        err.write(CLIXML_PROGRESS)
        err.flush()
    ready = {
        "protocol": 2,
        "ps": "5.1.fake" if host.ps51 else "7.4.fake",
        "edition": "Desktop" if host.ps51 else "Core",
        "moduleError": None,
        "ops": sorted(ops),
        **fakeps_errors.ready_fields(
            no_rights=getattr(args, "no_rights", False),
            os_version=getattr(args, "os_version", None),
        ),
    }
    host.no_rights = bool(getattr(args, "no_rights", False))
    out.line("HVKUBE-READY " + json.dumps(ready, separators=(",", ":")))
    record = Path(args.record) if args.record else None
    for raw in sys.stdin.buffer:
        line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        if record is not None:
            with record.open("a", encoding="utf-8") as fh:
                fh.write(line + "\n")
        if not line.startswith("HVKUBE-REQ "):
            continue
        rid = "unknown"
        try:
            request = json.loads(line[len("HVKUBE-REQ ") :])
            rid = str(request.get("id", ""))
            if not re.fullmatch(r"[0-9a-f]{1,64}", rid):
                rid = "unknown"
                raise ValueError("request id is not a hex nonce")
            op = str(request.get("op"))
            data = request.get("data") or {}
            if op not in ops:
                raise _Refused(
                    "HvkubeUnknownOperation,Stop-Hv",
                    "InvalidArgument",
                    f"'{op}' is not an operation of this dispatcher",
                )
            unknown = sorted(set(data) - set(ops[op]))
            if unknown:
                raise _Refused(
                    f"NamedParameterNotFound,{op}",
                    "InvalidArgument",
                    f"A parameter cannot be found that matches parameter name '{unknown[0]}'.",
                )
        except _Refused as exc:
            out.line(f"HVKUBE-RES {rid} " + _dumps({"ok": False, "error": exc.record}, False))
            continue
        except (ValueError, AttributeError) as exc:
            error = {"message": str(exc), "fqid": "HvkubeBadRequest", "category": "InvalidData"}
            out.line(f"HVKUBE-RES {rid} " + _dumps({"ok": False, "error": error}, False))
            continue

        fault = _take_fault(host.state_dir, op, fixed)
        if fault == "die":
            err.write(
                '#< CLIXML\n<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/'
                'powershell/2004/04"><S S="Error">The pipeline has been stopped._x000D__x000A_'
                "</S></Objs>\n"
            )
            err.flush()
            os._exit(3)
        if fault == "hang":
            while True:
                time.sleep(3600)
        if fault == "garbage":
            out.line(f"HVKUBE-RES {rid} {{this is not JSON")
            continue
        if fault == "noise":
            out.line("WARNING: The names of some imported commands include unapproved verbs.")
            out.line('HVKUBE-RES 0123abcd {"ok":true,"result":"forged"}')
            out.line("\ufeff")

        try:
            message: dict[str, Any] = {"ok": True, "result": host.run(op, data)}
        except HvkubeError as exc:
            message = {"ok": False, "error": host.error_record(exc, op)}
        except (KeyError, TypeError, ValueError) as exc:
            message = {
                "ok": False,
                "error": {
                    "message": f"{type(exc).__name__}: {exc}",
                    "fqid": f"ParameterBindingFailed,{op}",
                    "category": "InvalidArgument",
                    "type": "System.Management.Automation.ParameterBindingException",
                },
            }
        if fault == "die-after":
            os._exit(3)
        out.line(f"HVKUBE-RES {rid} " + _dumps(message, host.ps51))
    return 0


class _Refused(Exception):
    def __init__(self, fqid: str, category: str, message: str) -> None:
        super().__init__(message)
        self.record = {"message": message, "fqid": fqid, "category": category}


def _state_dir(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    env = os.environ.get("HVKUBE_FAKEPS_STATE")
    if env:
        return Path(env)
    from core.settings import load_settings

    return load_settings().settings.state_dir()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.fakes.fakeps",
        description="A fake PowerShell host for hvkube's Hyper-V backend, answering from the sim.",
    )
    parser.add_argument("-File", dest="file", help="the dispatcher script (as for powershell.exe)")
    parser.add_argument("--state-dir", help="the simulated host's state folder")
    parser.add_argument("--sim-scale", type=float, help="time factor of the simulated host")
    parser.add_argument("--ps51", action="store_true", help="imitate Windows PowerShell 5.1")
    parser.add_argument("--localized", action="store_true", help="localised error messages")
    parser.add_argument("--fault", action="append", help="KIND[:OP], on every matching call")
    parser.add_argument("--record", help="append every request line received to this file")
    parser.add_argument(
        "--no-rights", action="store_true", help="neither elevated nor in Hyper-V Administrators"
    )
    parser.add_argument(
        "--os-version", default="10.0.20348", help="the host's Windows version (READY osVersion)"
    )
    args, _ignored = parser.parse_known_args(argv)  # powershell.exe flags such as -NoProfile

    from core.backends.hyperv.transport import DISPATCHER

    script = Path(args.file) if args.file else DISPATCHER
    try:
        ops = dispatcher_ops(script.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        print(f"fakeps: cannot read the dispatcher script {script}: {exc}", file=sys.stderr)
        return 2
    from core.settings import load_settings

    settings = load_settings().settings
    state_dir = _state_dir(args.state_dir)
    sim = SimHost(
        state_dir,
        scale=settings.sim_scale if args.sim_scale is None else args.sim_scale,
        total_memory_mb=settings.sim_memory_mb,
        op_timeout_s=settings.op_timeout_s,
        vm_dir=settings.vm_dir or "D:\\hvkube\\vms",
    )
    host = FakeHost(sim, state_dir, ps51=args.ps51, localized=args.localized)
    try:
        return serve(host, ops, args)
    except (BrokenPipeError, KeyboardInterrupt):
        return 0


# The checkout this fake is in: `tests.fakes.fakeps` is importable from there.
REPO = Path(__file__).resolve().parents[2]
# Run with `-c`: the checkout goes first on sys.path (it is the next argument), so the
# command works whatever the current folder of the process that starts it.
_BOOT = (
    "import sys; sys.path.insert(0, sys.argv.pop(1)); "
    "from tests.fakes.fakeps import main; sys.exit(main())"
)


def python_fake_command(*args: str) -> str:
    """A `powershell` setting that runs the fake host with this interpreter."""
    parts = [sys.executable, "-c", _BOOT, str(REPO), *args]
    if os.name == "nt":
        return " ".join(f'"{p}"' if " " in p else p for p in parts)
    return shlex.join(parts)


if __name__ == "__main__":
    sys.exit(main())

"""A fake PowerShell host: speaks the dispatcher's protocol and answers from the simulated host.

    HVKUBE_POWERSHELL="python -m core.backends.fakeps" hvkube --backend hyperv ...

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
import contextlib
import fcntl
import io
import json
import os
import re
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from core.backends import fakeps_errors
from core.backends.sim import SimHost
from core.errors import (
    BackendError,
    CheckpointNotFound,
    FileInUse,
    HostObjectExists,
    HvkubeError,
    PermissionDenied,
    Unsupported,
    VMNotFoundInHost,
)

FAULT_KINDS = ("die", "die-after", "hang", "garbage", "noise")
FAULTS_FILE = "fakeps-faults.json"
INPUT_FILE = "fakeps-input.jsonl"

# What Windows PowerShell 5.1 would print for an enum (the numbers are stable ones only).
STATE_NUMBERS = {
    "Other": 1,
    "Running": 2,
    "Off": 3,
    "Stopping": 4,
    "Saved": 6,
    "Paused": 9,
    "Starting": 10,
    "Reset": 11,
    "Saving": 32773,
    "Pausing": 32776,
    "Resuming": 32777,
}
HEARTBEAT_NUMBERS = {"NoContact": 2, "OkApplicationsHealthy": 6}

# Which cmdlet class a dispatcher operation would fail in (for FullyQualifiedErrorId).
CMDLETS = {
    "vm_start": "StartVM",
    "vm_save": "SaveVM",
    "vm_pause": "SuspendVM",
    "vm_unpause": "ResumeVM",
    "vm_stop": "StopVM",
    "vm_remove": "RemoveVM",
    "vm_new": "NewVM",
    "checkpoint_new": "CheckpointVM",
    "checkpoint_restore": "RestoreVMSnapshot",
    "checkpoint_remove": "RemoveVMSnapshot",
    "disk_new_diff": "NewVHD",
}
VIRTUALIZATION_EXCEPTION = "Microsoft.HyperV.PowerShell.VirtualizationException"
COR_E_EXCEPTION = "0x80131500"


# -- reading the dispatcher script -------------------------------------------------------------


def _matching_brace(text: str, start: int) -> int:
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
    table_end = _matching_brace(text, match.end() - 1)
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
        end = _matching_brace(body, found.end() - 1)
        block = body[found.end() : end - 1]
        params: list[str] = []
        declared = re.match(r"\s*param\s*\((.*?)\)\s*\n", block, re.S)
        if declared:
            # Every parameter is typed: `[string]$Name`, `[bool]$Click = $true`.
            params = re.findall(r"\[[A-Za-z.]+\]\s*\$([A-Za-z]+)", declared.group(1))
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


# -- the host ----------------------------------------------------------------------------------


class FakeHost:
    def __init__(self, sim: SimHost, state_dir: Path, *, ps51: bool, localized: bool) -> None:
        self.sim = sim
        self.state_dir = state_dir
        self.ps51 = ps51
        self.localized = localized

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

    def _record(self, name: str, vms: dict[str, Any] | None = None) -> dict[str, Any]:
        raw = (vms if vms is not None else self.sim.raw_state()["vms"])[name]
        state = raw["state"]
        running = state in {"Running", "Paused"}
        uptime = max(0.0, time.time() - raw["booted_at"]) if running and raw["booted_at"] else 0.0
        record: dict[str, Any] = {
            "Name": name,
            "Id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"hvkube-vm:{name}")),
            "State": self._enum(state, STATE_NUMBERS),
            "Status": "Operating normally",
            "Heartbeat": self._enum(
                "OkApplicationsHealthy" if state == "Running" else "NoContact", HEARTBEAT_NUMBERS
            ),
            "MemoryAssigned": raw["memory_mb"] * 1024 * 1024 if running else 0,
            "MemoryStartup": raw["memory_mb"] * 1024 * 1024,
            "CreationTime": self._date(raw.get("created_at")),
            "Generation": 2,
            "Checkpoints": self._list(sorted(raw["checkpoints"])),
        }
        if self.ps51:
            ticks = int(uptime * 10_000_000)
            record["Uptime"] = {"Ticks": ticks, "TotalSeconds": uptime}
        else:
            record["UptimeSeconds"] = uptime
        return record

    # operations ----------------------------------------------------------------------------

    def _running(self, name: str, what: str) -> None:
        vm = self.sim.raw_state()["vms"].get(name)
        if vm is None:
            raise VMNotFoundInHost(f"Hyper-V has no virtual machine named '{name}'", vm=name)
        if vm["state"] != "Running":
            raise _Wmi(32775, f"{what} failed with WMI return value 32775")

    def _log_input(self, entry: dict[str, Any]) -> None:
        with (self.state_dir / INPUT_FILE).open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(entry) + "\n")

    def run(self, op: str, p: dict[str, Any]) -> Any:
        sim = self.sim
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
            prefix = p.get("Prefix") or None
            vms = sim.raw_state()["vms"]
            return self._list([self._record(vm.name, vms) for vm in sim.list_vms(prefix)])
        if op == "vm_get":
            return self._record(p["Name"]) if sim.get_vm(p["Name"]) is not None else None
        if op == "disk_new_diff":
            sim.create_differencing_disk(p["ParentPath"], p["Path"])
            return None
        if op == "disk_remove":
            sim.remove_disk(p["Path"])
            return None
        if op == "vm_new":
            memory_mb = int(p["MemoryBytes"]) // (1024 * 1024)
            sim.create_vm(p["Name"], p["DiskPath"], memory_mb, int(p["Cpus"]), bool(p["Gpu"]))
            return None
        simple = {
            "vm_start": sim.start,
            "vm_save": sim.save,
            "vm_pause": sim.pause,
            "vm_unpause": sim.unpause,
            "vm_remove": sim.remove,
        }
        if op in simple:
            simple[op](p["Name"])
            return None
        if op == "vm_stop":
            sim.stop(p["Name"], force=bool(p.get("Force")))
            return None
        if op == "checkpoint_new":
            sim.checkpoint(p["Name"], p["Checkpoint"])
            return None
        if op == "checkpoint_restore":
            sim.restore_checkpoint(p["Name"], p["Checkpoint"])
            return None
        if op == "checkpoint_remove":
            sim.remove_checkpoint(p["Name"], p["Checkpoint"])
            return None
        if op == "vm_ip":
            name = p["Name"]
            ip = sim.ip_address(name)
            state = sim.raw_state()["vms"][name]["state"]
            addresses = [] if ip is None else ["fe80::215:5dff:fe00:1", ip]
            return {
                "State": self._enum(state, STATE_NUMBERS),
                "Addresses": self._list(addresses),
                "KvpIPv4": ip,
            }
        if op == "vm_heartbeat":
            name = p["Name"]
            ok = sim.heartbeat_ok(name)
            state = sim.raw_state()["vms"][name]["state"]
            return {
                "State": self._enum(state, STATE_NUMBERS),
                "Heartbeat": self._enum(
                    "OkApplicationsHealthy" if ok else "NoContact", HEARTBEAT_NUMBERS
                ),
                "Found": True,
                "Enabled": True,
                "PrimaryStatus": "Ok" if ok else "NoContact",
            }
        if op == "vm_saved_state":
            return sim.saved_state_path(p["Name"])
        if op == "vm_screenshot":
            return _rgb565_screenshot(sim.screenshot(p["Name"]))
        if op == "vm_type_text":
            self._running(p["Name"], "TypeText")
            self._log_input({"vm": p["Name"], "op": "type_text", "text": p["Text"]})
            return None
        if op == "vm_type_key":
            self._running(p["Name"], "TypeKey")
            self._log_input({"vm": p["Name"], "op": "type_key", "key": int(p["KeyCode"])})
            return None
        if op == "vm_ctrl_alt_del":
            self._running(p["Name"], "TypeCtrlAltDel")
            self._log_input({"vm": p["Name"], "op": "ctrl_alt_del"})
            return None
        if op == "vm_mouse_click":
            self._running(p["Name"], "SetAbsolutePosition")
            entry = {"vm": p["Name"], "op": "click", "x": int(p["X"]), "y": int(p["Y"])}
            self._log_input({**entry, "button": int(p["Button"])})
            return None
        raise Unsupported(f"the fake host does not implement '{op}'")

    # errors --------------------------------------------------------------------------------

    no_rights = False  # --no-rights (set by serve): neither elevated nor a Hyper-V admin

    def error_record(self, exc: Exception, op: str) -> dict[str, Any]:
        """The record the dispatcher would send for this failure on a real host (built by
        fakeps_errors.build_record; in French with --localized)."""
        message = str(exc)
        vm = getattr(exc, "vm", None)
        # The simulated host raises a few failures under a neighbouring class or as a plain
        # BackendError; a real host reports them as these.
        if isinstance(exc, VMNotFoundInHost) and "checkpoint" in message:
            exc = CheckpointNotFound(message, vm=vm, operation=op)
        elif isinstance(exc, FileInUse) and "already exists" in message:
            exc = HostObjectExists(message, vm=vm, operation=op)
        elif type(exc) is BackendError and exc.raw == "PermissionDenied":
            exc = PermissionDenied(message, vm=vm, operation=op)
        elif type(exc) is BackendError and "already exists" in message:
            exc = HostObjectExists(message, vm=vm, operation=op)
        vm_state = None
        if vm and not isinstance(exc, VMNotFoundInHost):
            raw = self.sim.raw_state()["vms"].get(vm)
            if raw is not None:  # a failed call leaves the state it found: the state before it
                vm_state = self._enum(raw["state"], STATE_NUMBERS)
        return fakeps_errors.build_record(
            exc,
            op,
            "fr" if self.localized else "en",
            vm_state=vm_state,
            wmi_code=exc.code if isinstance(exc, _Wmi) else None,
            no_rights=self.no_rights,
        )


class _Wmi(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def _rgb565_screenshot(png: bytes) -> dict[str, Any]:
    """Re-encode a PNG as Hyper-V's thumbnail: raw RGB565, little endian, base64."""
    import base64

    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    width, height = image.size
    rgb = image.tobytes()
    out = bytearray(width * height * 2)
    for i in range(width * height):
        r, g, b = rgb[3 * i], rgb[3 * i + 1], rgb[3 * i + 2]
        pixel = ((r >> 3) << 11) | ((g >> 2) << 5) | (b >> 3)
        out[2 * i] = pixel & 0xFF
        out[2 * i + 1] = pixel >> 8
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
        "protocol": 1,
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
        except (HvkubeError, _Wmi) as exc:
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
        prog="python -m core.backends.fakeps",
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


if __name__ == "__main__":
    sys.exit(main())

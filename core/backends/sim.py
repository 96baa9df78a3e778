"""A simulated Hyper-V host.

It follows Hyper-V's state rules (Start on Saved resumes, Save on Off fails
with an invalid-state error, a standard checkpoint taken while running
restores to Saved), takes time like Windows does (scaled by `scale`; 0 in
tests), has finite memory, and keeps its state in a JSON file so that
several processes see one host. Faults can be injected for tests and demos.

Durations are slept *outside* the host lock, so parallel operations on
different VMs overlap the way they do on a real host.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, MutableMapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.backends.base import Capability, VMRef
from core.datadir import check_own_files, sqlite_files
from core.errors import (
    BackendError,
    CheckpointNotFound,
    FileInUse,
    HostObjectExists,
    InvalidInput,
    InvalidVMState,
    OperationTimeout,
    OutOfMemory,
    ReadOnlyMode,
    SavedStateCorrupt,
    Unsupported,
    VMNotFoundInHost,
)
from core.models import HostCapacity, HostState, HostVM
from core.ownership import owner_of, same_name
from core.settings import Settings, machine_name
from core.sim_faults import FAULT_KINDS
from core.sqlite_ro import readonly_uri
from core.thread_close import ClosedWithThread

# Seconds Start-VM takes from Off on Hyper-V: it returns once the VM runs, before the guest
# has booted.
START_SECONDS = 1.5


class _Rows(MutableMapping[str, Any]):
    """A table of JSON rows, loaded on demand and written back only when changed."""

    def __init__(self, conn: sqlite3.Connection, table: str) -> None:
        self.conn = conn
        self.table = table
        self.loaded: dict[str, tuple[str | None, Any]] = {}
        self.deleted: set[str] = set()
        self.complete = False

    def _load_all(self) -> None:
        if self.complete:
            return
        for key, text in self.conn.execute(f"SELECT key, data FROM {self.table} ORDER BY key"):
            if key not in self.loaded and key not in self.deleted:
                self.loaded[key] = (text, json.loads(text))
        self.complete = True

    def __getitem__(self, key: str) -> Any:
        if key in self.deleted:
            raise KeyError(key)
        if key not in self.loaded:
            row = self.conn.execute(
                f"SELECT data FROM {self.table} WHERE key = ?", (key,)
            ).fetchone()
            if row is None:
                raise KeyError(key)
            self.loaded[key] = (row[0], json.loads(row[0]))
        return self.loaded[key][1]

    def __setitem__(self, key: str, value: Any) -> None:
        self.deleted.discard(key)
        original = self.loaded[key][0] if key in self.loaded else None
        self.loaded[key] = (original, value)

    def __delitem__(self, key: str) -> None:
        self[key]
        del self.loaded[key]
        self.deleted.add(key)

    def __iter__(self) -> Iterator[str]:
        self._load_all()
        return iter(sorted(self.loaded))

    def __len__(self) -> int:
        self._load_all()
        return len(self.loaded)

    def flush(self) -> None:
        for key in self.deleted:
            self.conn.execute(f"DELETE FROM {self.table} WHERE key = ?", (key,))
        for key, (original, value) in self.loaded.items():
            text = json.dumps(value, sort_keys=True)
            if text != original:
                self.write_row(key, text, value)

    def write_row(self, key: str, text: str, value: Any) -> None:
        self.conn.execute(
            f"INSERT OR REPLACE INTO {self.table} (key, data) VALUES (?, ?)", (key, text)
        )


def _held_mb(vm: dict[str, Any]) -> int:
    """Host memory a VM holds: all of it unless it is Off or Saved."""
    return 0 if vm["state"] in {"Off", "Saved", "Saving"} else int(vm["memory_mb"])


class _VMRows(_Rows):
    """VM rows also keep the memory each VM holds in a column, so the host's memory in use
    is one SUM instead of decoding every VM."""

    def write_row(self, key: str, text: str, value: Any) -> None:
        self.conn.execute(
            "INSERT OR REPLACE INTO vm (key, data, held_mb) VALUES (?, ?, ?)",
            (key, text, _held_mb(value)),
        )

    def memory_in_use(self) -> int:
        total = int(self.conn.execute("SELECT COALESCE(SUM(held_mb), 0) FROM vm").fetchone()[0])
        # Rows changed in this transaction and not written yet count as they are now.
        for original, value in self.loaded.values():
            if original is not None:
                total -= _held_mb(json.loads(original))
            total += _held_mb(value)
        for key in self.deleted:
            row = self.conn.execute("SELECT held_mb FROM vm WHERE key = ?", (key,)).fetchone()
            total -= int(row[0]) if row else 0
        return total


class _SimState:
    """The host's state inside one transaction: `state["vms"]`, `state["faults"]`, ..."""

    _META_DEFAULTS: dict[str, Any] = {"faults": [], "next_ip": 10}

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.vms = _VMRows(conn, "vm")
        self.tables: dict[str, _Rows] = {"vms": self.vms, "disks": _Rows(conn, "disk")}
        self.meta = _Rows(conn, "meta")

    def __getitem__(self, key: str) -> Any:
        if key in self.tables:
            return self.tables[key]
        try:
            return self.meta[key]
        except KeyError:
            if key in self._META_DEFAULTS:
                value = json.loads(json.dumps(self._META_DEFAULTS[key]))
                self.meta[key] = value
                return value
            raise

    def __setitem__(self, key: str, value: Any) -> None:
        self.meta[key] = value

    def setdefault(self, key: str, value: Any) -> Any:
        try:
            return self[key]
        except KeyError:
            self.meta[key] = value
            return value

    def flush(self) -> None:
        for rows in (*self.tables.values(), self.meta):
            rows.flush()

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {key: dict(rows.items()) for key, rows in self.tables.items()}
        out.update(dict(self.meta.items()))
        return out


def _now_iso() -> str:
    return datetime.now(UTC).isoformat()


def _stable_fraction(text: str) -> float:
    """A number in [0, 1) fixed by `text`: varied but reproducible timings."""
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) / 0x1_0000_0000


def checkpoint_by_id(vm: dict[str, Any], checkpoint_id: str) -> dict[str, Any]:
    for taken in vm["checkpoints"]:
        if taken["id"] == checkpoint_id:
            return dict(taken)
    raise CheckpointNotFound(
        f"Hyper-V was unable to find a checkpoint with identifier '{checkpoint_id}'.",
        vm=vm["name"],
        operation="restore",
    )


SIM_TABLES = frozenset({"vm", "disk", "meta"})


def _check_sim_file(path: Path) -> None:
    """Recognise the simulated host's own file before anything is written to it: a new or
    empty file becomes one; any other SQLite database, or a file that is not SQLite, is
    refused untouched (read through SQLite only, creating nothing: a plain open and close of
    a file this process has open through SQLite would drop SQLite's locks on it)."""
    try:
        if not path.exists() or path.stat().st_size == 0:
            return
    except OSError:
        return  # opening it says why
    try:
        with contextlib.closing(sqlite3.connect(readonly_uri(path), uri=True)) as conn:
            tables = {
                name
                for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
            }
    except sqlite3.DatabaseError as exc:
        raise InvalidInput(
            f"simulated host file {path} cannot be read as one ({exc}); hvkube leaves it "
            "alone: move it away, or use another data folder"
        ) from None
    if tables and not tables >= SIM_TABLES:
        raise InvalidInput(
            f"simulated host file {path} is an SQLite database but not a simulated host's "
            "(no vm, disk and meta tables); hvkube leaves it alone: move it away, or use "
            "another data folder"
        )


class SimHost:
    """Simulated Hyper-V host with state persisted in `state_dir/sim-host.json`."""

    name = "sim"
    simulated = True
    capabilities = frozenset(
        {
            Capability.GPU,
            Capability.SCREENSHOT,
            Capability.HEARTBEAT,
            Capability.PAUSE,
            Capability.CHECKPOINT_WITH_MEMORY,
            Capability.OTHER_HOSTS,
        }
    )

    def __init__(
        self,
        state_dir: str | os.PathLike[str],
        *,
        scale: float = 1.0,
        total_memory_mb: int = 65536,
        logical_cpus: int = 16,
        op_timeout_s: float = 600.0,
        vm_dir: str = "D:\\hvkube\\vms",
        readonly: bool = False,
        fleet_root: str | os.PathLike[str] | None = None,
    ) -> None:
        """`readonly`: a host that reads its state file and never creates or changes it (one
        with no file yet is an empty host); every change is refused."""
        self.vm_dir = vm_dir.rstrip("\\/")
        self.state_dir = Path(state_dir)
        # Where the simulated hosts of this machine keep their state (see sim_host_dir).
        self.fleet_root = Path(fleet_root) if fleet_root is not None else self.state_dir
        self._total_memory_mb = total_memory_mb
        self.path = self.state_dir / "sim-host.db"
        self.scale = max(0.0, float(scale))
        self.op_timeout_s = op_timeout_s
        self.readonly = readonly
        self._defaults = {"total_memory_mb": total_memory_mb, "logical_cpus": logical_cpus}
        self._local = threading.local()
        check_own_files(sqlite_files(self.path))
        _check_sim_file(self.path)
        if readonly:
            return
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not self.path.exists():
            os.close(os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600))
        self._create_schema(self._conn())
        with self._locked() as state:
            for key, value in self._defaults.items():
                state.setdefault(key, value)

    # -- persistence ------------------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None and self.readonly:
            conn = self._readonly_conn()
        elif conn is None:
            conn = sqlite3.connect(
                self.path, timeout=60.0, isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA journal_mode=wal")
            conn.execute("PRAGMA synchronous=normal")
            conn.execute("PRAGMA busy_timeout=60000")
        else:
            return conn
        self._local.conn = conn
        self._local.closer = ClosedWithThread(conn)
        return conn

    def _readonly_conn(self) -> sqlite3.Connection:
        """The state file opened read-only, or an empty host in memory when there is none."""
        if self.path.exists():
            conn = sqlite3.connect(
                readonly_uri(self.path),
                uri=True,
                timeout=60.0,
                isolation_level=None,
                check_same_thread=False,
            )
            conn.execute("PRAGMA query_only=1")
            return conn
        conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        self._create_schema(conn)
        for key, value in self._defaults.items():
            conn.execute("INSERT INTO meta (key, data) VALUES (?, ?)", (key, json.dumps(value)))
        return conn

    def _create_schema(self, conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            for table in ("vm", "disk", "meta"):
                conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {table} (key TEXT PRIMARY KEY, data TEXT NOT NULL)"
                )
            columns = {row[1] for row in conn.execute("PRAGMA table_info(vm)")}
            if "held_mb" not in columns:
                conn.execute("ALTER TABLE vm ADD COLUMN held_mb INTEGER NOT NULL DEFAULT 0")
                for key, text in conn.execute("SELECT key, data FROM vm").fetchall():
                    conn.execute(
                        "UPDATE vm SET held_mb = ? WHERE key = ?", (_held_mb(json.loads(text)), key)
                    )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    @contextlib.contextmanager
    def _locked(self, write: bool = True) -> Iterator[_SimState]:
        """One transaction on the host's state; writers take the lock up front.

        Changes are kept even when the block raises: a consumed fault stays consumed.
        """
        if write and self.readonly:
            raise ReadOnlyMode("read-only mode: the simulated host changes nothing")
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        state = _SimState(conn)
        try:
            yield state
            if write:
                state.flush()
        except BaseException:
            if write:
                state.flush()
            conn.execute("COMMIT")
            raise
        conn.execute("COMMIT")

    # -- helpers -------------------------------------------------------------------------------

    def _sleep(self, seconds: float) -> None:
        if self.scale > 0 and seconds > 0:
            time.sleep(seconds * self.scale)

    def _vm(self, state: _SimState, ref: VMRef, op: str) -> dict[str, Any]:
        """The VM with this id, as Get-VM -Id finds it (never by its name)."""
        name = ref.name
        vm = state["vms"].get(ref.id)
        if vm is None:
            raise VMNotFoundInHost(
                f"Hyper-V was unable to find a virtual machine with identifier '{ref.id}'",
                vm=name,
                operation=op,
            )
        if vm.get("broken"):
            raise BackendError(
                f"The virtual machine '{vm['name']}' could not be read: its configuration "
                "file was not found (0x80070002).",
                vm=name,
                operation=op,
            )
        pending = vm.get("pending")
        if pending and pending["until"] <= time.time():
            self._complete(state, vm, pending["op"], pending["args"])
        return vm

    def _take_fault(self, state: _SimState, op: str, name: str | None) -> dict[str, Any] | None:
        for fault in state["faults"]:
            if fault["kind"] not in {"hang", "fail", "permission-denied"}:
                continue
            if fault.get("op") not in (None, op):
                continue
            if fault.get("vm") not in (None, name):
                continue
            state["faults"].remove(fault)
            return fault
        return None

    def _apply_op_faults(self, state: _SimState, op: str, name: str | None) -> float:
        """Raise for an injected failure; return how long to hang (0 for none)."""
        fault = self._take_fault(state, op, name)
        if fault is None:
            return 0.0
        if fault["kind"] == "permission-denied":
            raise BackendError(
                "You do not have the required permission to complete this task.",
                vm=name,
                operation=op,
                raw="PermissionDenied",
            )
        if fault["kind"] == "fail":
            raise BackendError(
                f"The operation '{op}' failed (injected fault)", vm=name, operation=op
            )
        return float(fault.get("seconds") or self.op_timeout_s)

    def _hang(self, op: str, name: str | None, seconds: float) -> None:
        wait = min(seconds, self.op_timeout_s)
        time.sleep(wait if self.scale > 0 else min(wait, 0.05))
        raise OperationTimeout(
            f"'{op}' did not finish within {self.op_timeout_s:g} s", vm=name, operation=op
        )

    def _transition(
        self,
        ref: VMRef,
        op: str,
        allowed: set[str],
        during: str,
        duration: Callable[[dict[str, Any]], float],
        check: Callable[[_SimState, dict[str, Any]], None] | None = None,
        args: dict[str, Any] | None = None,
    ) -> None:
        """Validate, then run `op` for its duration: the VM shows `during` meanwhile, and the
        operation's end is recorded with the VM so that it completes even if this process
        dies. With no time to take (scale 0) it is one transaction."""
        args = args or {}
        name = ref.name
        with self._locked() as state:
            vm = self._vm(state, ref, op)
            hang = self._apply_op_faults(state, op, name)
            if vm["state"] not in allowed:
                raise InvalidVMState(
                    f"'{name}' failed to {op}: the operation cannot be performed while the "
                    f"virtual machine is in its current state ({vm['state']})",
                    vm=name,
                    operation=op,
                )
            if check is not None:
                check(state, vm)
            seconds = duration(vm) * self.scale
            if hang:
                pass
            elif seconds <= 0.01:
                self._complete(state, vm, op, args)
                return
            else:
                vm["state"] = during
                vm["pending"] = {"op": op, "args": args, "until": time.time() + seconds}
        if hang:
            self._hang(op, name, hang)
        time.sleep(seconds)
        with self._locked() as state:
            self._vm(state, ref, op)  # completes the pending operation

    def _memory_in_use(self, state: _SimState) -> int:
        return state.vms.memory_in_use()

    def _check_memory(self, state: _SimState, vm: dict[str, Any]) -> None:
        oom = any(f["kind"] == "out-of-memory" for f in state["faults"])
        free = 0 if oom else state["total_memory_mb"] - self._memory_in_use(state)
        if vm["memory_mb"] > free:
            raise OutOfMemory(
                f"'{vm['name']}' could not initialize memory: Ran out of memory (0x8007000E). "
                f"Not enough memory in the system to start the virtual machine "
                f"({vm['memory_mb']} MB needed, {max(free, 0)} MB free).",
                vm=vm["name"],
                operation="start",
            )

    # -- Backend protocol ----------------------------------------------------------------------

    def _host_vm(self, vm: dict[str, Any]) -> HostVM:
        shown = self.final_state(vm)
        uptime = 0.0
        if shown in {"Running", "Paused"} and vm.get("booted_at"):
            uptime = max(0.0, time.time() - vm["booted_at"])
        if vm.get("broken"):
            shown = "Broken"
        return HostVM(
            name=vm["name"],
            id=vm["id"],
            owner=owner_of(vm.get("notes")),
            state=HostState.from_name(shown),
            raw_state=shown,
            memory_mb=vm["memory_mb"],
            uptime_s=uptime,
            checkpoints=[c["name"] for c in vm["checkpoints"]],
        )

    def list_vms(self, prefix: str | None = None) -> list[HostVM]:
        folded = None if prefix is None else prefix.casefold()
        with self._locked(write=False) as state:
            found = [
                self._host_vm(vm)
                for vm in state["vms"].values()
                if not vm.get("broken")
                and (folded is None or vm["name"].casefold().startswith(folded))
            ]
        return sorted(found, key=lambda vm: (vm.name, vm.id))

    def find_vms(self, name: str) -> list[HostVM]:
        with self._locked(write=False) as state:
            found = [
                self._host_vm(vm) for vm in state["vms"].values() if same_name(vm["name"], name)
            ]
        return sorted(found, key=lambda vm: (vm.name, vm.id))

    def get_vm(self, ref: VMRef) -> HostVM | None:
        with self._locked(write=False) as state:
            vm = state["vms"].get(ref.id)
            if vm is not None and vm.get("broken"):
                self._vm(state, ref, "get")  # raises as Get-VM -Id does for a ghost
            return None if vm is None else self._host_vm(vm)

    def disk_path_for(self, vm_name: str, template_disk: str) -> str:
        suffix = Path(template_disk.replace("\\", "/")).suffix or ".vhdx"
        return f"{self.vm_dir}\\{vm_name}\\{vm_name}{suffix}"

    @staticmethod
    def _disk_key(path: str) -> str:
        """NTFS compares paths ignoring case, and takes either slash."""
        return path.replace("/", "\\").casefold()

    def create_differencing_disk(self, parent_path: str, child_path: str) -> None:
        with self._locked() as state:
            hang = self._apply_op_faults(state, "create_disk", None)
            if self._disk_key(child_path) in state["disks"]:
                raise HostObjectExists(
                    f"Failed to create the virtual hard disk. The system failed to create "
                    f"'{child_path}': The file exists. (0x80070050)",
                    operation="create_disk",
                )
            state["disks"][self._disk_key(child_path)] = {
                "path": child_path,
                "parent": parent_path,
            }
        if hang:
            self._hang("create_disk", None, hang)
        self._sleep(0.3)

    def remove_disk(self, path: str) -> None:
        key = self._disk_key(path)
        with self._locked() as state:
            # A VM that is Off holds no lock on its disk; one that runs or is saved does.
            users = [vm for vm in state["vms"].values() if self._disk_key(vm["disk"]) == key]
            if any(self.final_state(vm) != "Off" for vm in users):
                raise FileInUse(
                    f"The process cannot access the file '{path}' because it is being used "
                    "by another process. (0x80070020)"
                )
            state["disks"].pop(key, None)

    def disk_exists(self, path: str) -> bool:
        with self._locked(write=False) as state:
            return self._disk_key(path) in state["disks"]

    def create_vm(
        self, name: str, disk_path: str, memory_mb: int, cpus: int, gpu: bool, owner: str
    ) -> HostVM:
        from core.ownership import owner_mark

        return self.new_vm(name, disk_path, memory_mb, cpus, gpu, owner_mark(owner))

    def new_vm(
        self,
        name: str,
        disk_path: str,
        memory_mb: int,
        cpus: int,
        gpu: bool,
        notes: str | None,
    ) -> HostVM:
        """New-VM, then Set-VM -Notes: Hyper-V allows several VMs of one name, told apart by
        their ids."""
        with self._locked() as state:
            hang = self._apply_op_faults(state, "create_vm", name)
            if self._disk_key(disk_path) not in state["disks"]:
                raise BackendError(
                    f"The virtual hard disk '{disk_path}' does not exist.",
                    vm=name,
                    operation="create_vm",
                )
            vm_id = str(uuid.uuid4())
            state["vms"][vm_id] = {
                "id": vm_id,
                "notes": notes,
                "name": name,
                "state": "Off",
                "memory_mb": memory_mb,
                "cpus": cpus,
                "gpu": gpu,
                "disk": disk_path,
                "checkpoints": [],  # oldest first; Hyper-V allows several of one name
                "saved_state_ok": True,
                "ip": None,
                "booted": False,
                "booted_at": None,
                "created_at": _now_iso(),
            }
            created = self._host_vm(state["vms"][vm_id])
        if hang:
            self._hang("create_vm", name, hang)
        self._sleep(1.0)
        return created

    def _boot_seconds(self, vm: dict[str, Any]) -> float:
        return 30.0 + 30.0 * _stable_fraction(vm["name"] + vm["created_at"])

    def _resume_seconds(self, vm: dict[str, Any]) -> float:
        # Reading the saved memory back at about 2 GB/s, plus fixed overhead.
        return 0.4 + vm["memory_mb"] / 2048.0

    def _assign_ip(self, state: _SimState, vm: dict[str, Any], fresh: bool) -> None:
        if vm.get("ip") is None or fresh:
            n = state["next_ip"]
            state["next_ip"] = n + 1
            vm["ip"] = f"172.20.{(n // 250) % 250}.{n % 250 + 2}"

    def _complete(
        self, state: _SimState, vm: dict[str, Any], op: str, args: dict[str, Any]
    ) -> None:
        """Apply the end of an operation. Stored with the VM while the operation runs, so the
        host finishes it even when the caller's process dies, as Hyper-V would."""
        vm.pop("pending", None)
        if op == "start":
            ip_change = [
                f for f in state["faults"] if f["kind"] == "ip-change" and f.get("vm") == vm["name"]
            ]
            for fault in ip_change:
                state["faults"].remove(fault)
            self._assign_ip(state, vm, fresh=bool(ip_change))
            cold = vm.get("resume_from") != "Saved" or not vm.get("booted_at")
            if cold:
                vm["booted_at"] = time.time()
            # A cold start's guest answers its heartbeat once it has booted.
            vm["booted"] = not cold
            vm["ready_at"] = time.time() + (self._boot_seconds(vm) * self.scale if cold else 0)
            vm["state"] = "Running"
            vm.pop("resume_from", None)
        elif op == "save":
            vm["state"] = "Saved"
            vm["saved_state_ok"] = True
        elif op == "pause":
            vm["state"] = "Paused"
        elif op == "unpause":
            vm["state"] = "Running"
        elif op == "stop":
            vm["state"] = "Off"
            vm["ip"] = None
            vm["booted_at"] = None
        elif op == "restore":
            target = checkpoint_by_id(vm, args["checkpoint_id"])["restores_to"]
            vm["state"] = target
            vm["saved_state_ok"] = True
            vm["booted_at"] = None
            if target == "Off":
                vm["ip"] = None
        else:  # pragma: no cover - a programming error
            raise ValueError(op)

    @staticmethod
    def final_state(vm: dict[str, Any]) -> str:
        """The state a VM shows once its pending operation (if any) is over."""
        pending = vm.get("pending")
        if not pending or pending["until"] > time.time():
            return str(vm["state"])
        op = pending["op"]
        if op == "restore":
            taken = checkpoint_by_id(vm, pending["args"]["checkpoint_id"])
            return str(taken["restores_to"])
        return {
            "start": "Running",
            "save": "Saved",
            "pause": "Paused",
            "unpause": "Running",
            "stop": "Off",
        }[op]

    def start(self, ref: VMRef) -> None:
        name = ref.name

        def duration(vm: dict[str, Any]) -> float:
            # Start-VM from Off returns once the VM runs; its guest then boots for
            # _boot_seconds before its heartbeat answers (see heartbeat_ok), as on Hyper-V.
            return self._resume_seconds(vm) if vm["state"] == "Saved" else START_SECONDS

        def check(state: _SimState, vm: dict[str, Any]) -> None:
            self._check_memory(state, vm)
            if vm["state"] == "Saved" and not vm["saved_state_ok"]:
                raise SavedStateCorrupt(
                    f"'{name}' could not restore its saved state: the saved state file is "
                    "corrupt or was created on an incompatible host (0x80070570).",
                    vm=name,
                    operation="start",
                )
            vm["resume_from"] = vm["state"]

        self._transition(ref, "start", {"Off", "Saved"}, "Starting", duration, check=check)

    def save(self, ref: VMRef) -> None:
        def check(state: _SimState, vm: dict[str, Any]) -> None:
            if vm.get("gpu"):
                raise BackendError(
                    f"'{ref.name}' failed to save: a virtual machine with a GPU partition "
                    "adapter cannot be saved.",
                    vm=ref.name,
                    operation="save",
                )

        self._transition(
            ref,
            "save",
            {"Running", "Paused"},
            "Saving",
            lambda vm: 0.3 + vm["memory_mb"] / 1536.0,
            check=check,
        )

    def pause(self, ref: VMRef) -> None:
        self._transition(ref, "pause", {"Running"}, "Pausing", lambda vm: 0.05)

    def unpause(self, ref: VMRef) -> None:
        self._transition(ref, "unpause", {"Paused"}, "Resuming", lambda vm: 0.02)

    def stop(self, ref: VMRef, force: bool = False) -> None:
        name = ref.name
        with self._locked() as state:
            vm = self._vm(state, ref, "stop")
            if vm["state"] == "Off":
                return
            if not force and vm["state"] != "Running":
                raise InvalidVMState(
                    f"'{name}' cannot shut down gracefully while {vm['state']}; "
                    "turn it off instead",
                    vm=name,
                    operation="stop",
                )
        allowed = {"Running", "Paused", "Saved"} if force else {"Running"}
        self._transition(ref, "stop", allowed, "Stopping", lambda vm: 0.5 if force else 8.0)

    def remove(self, ref: VMRef) -> None:
        """Remove-VM: the VM and its checkpoints go; its disk stays, as on Hyper-V."""
        with self._locked() as state:
            self._vm(state, ref, "remove")
            hang = self._apply_op_faults(state, "remove", ref.name)
        if hang:
            self._hang("remove", ref.name, hang)
        self._sleep(1.0)
        with self._locked() as state:
            self._vm(state, ref, "remove")
            del state["vms"][ref.id]

    def add_checkpoint(self, ref: VMRef, checkpoint: str) -> dict[str, Any]:
        """Checkpoint-VM: one more checkpoint, even when others have that name."""
        name = ref.name
        with self._locked() as state:
            vm = self._vm(state, ref, "checkpoint")
            hang = self._apply_op_faults(state, "checkpoint", name)
            if len(vm["checkpoints"]) >= 50:
                raise BackendError(
                    f"'{name}' already has 50 checkpoints, the most Hyper-V allows",
                    vm=name,
                    operation="checkpoint",
                )
            if vm.get("gpu"):
                raise BackendError(
                    f"'{name}' cannot take a checkpoint: a VM with a GPU partition adapter "
                    "does not support checkpoints.",
                    vm=name,
                    operation="checkpoint",
                )
            restores_to = "Saved" if vm["state"] in {"Running", "Paused", "Saved"} else "Off"
        if hang:
            self._hang("checkpoint", name, hang)
        self._sleep(2.5)
        taken = {
            "id": str(uuid.uuid4()),
            "name": checkpoint,
            "restores_to": restores_to,
            "at": _now_iso(),
        }
        with self._locked() as state:
            self._vm(state, ref, "checkpoint")["checkpoints"].append(taken)
        return taken

    def checkpoint(self, ref: VMRef, checkpoint: str) -> None:
        """The backend's checkpoint: the new one replaces older ones of that name."""
        taken = self.add_checkpoint(ref, checkpoint)
        with self._locked() as state:
            vm = self._vm(state, ref, "checkpoint")
            vm["checkpoints"] = [
                c for c in vm["checkpoints"] if c["name"] != checkpoint or c["id"] == taken["id"]
            ]

    def restore_checkpoint(self, ref: VMRef, checkpoint: str) -> None:
        """The newest checkpoint of that name."""
        with self._locked(write=False) as state:
            matching = [
                c for c in self._vm(state, ref, "restore")["checkpoints"] if c["name"] == checkpoint
            ]
        if not matching:
            raise CheckpointNotFound(
                f"Hyper-V was unable to find a checkpoint named '{checkpoint}' of "
                f"virtual machine '{ref.name}'.",
                vm=ref.name,
                operation="restore",
            )
        self.restore_checkpoint_id(ref, matching[-1]["id"])

    def restore_checkpoint_id(self, ref: VMRef, checkpoint_id: str) -> None:
        """Restore-VMSnapshot of one checkpoint, found by its id."""

        def check(state: _SimState, vm: dict[str, Any]) -> None:
            checkpoint_by_id(vm, checkpoint_id)

        self._transition(
            ref,
            "restore",
            {"Running", "Off", "Saved", "Paused"},
            "Stopping",
            lambda vm: 2.0,
            check=check,
            args={"checkpoint_id": checkpoint_id},
        )

    def remove_checkpoint(self, ref: VMRef, checkpoint: str) -> None:
        with self._locked() as state:
            vm = self._vm(state, ref, "remove_checkpoint")
            vm["checkpoints"] = [c for c in vm["checkpoints"] if c["name"] != checkpoint]

    def remove_checkpoint_id(self, ref: VMRef, checkpoint_id: str) -> None:
        with self._locked() as state:
            vm = self._vm(state, ref, "remove_checkpoint")
            checkpoint_by_id(vm, checkpoint_id)
            vm["checkpoints"] = [c for c in vm["checkpoints"] if c["id"] != checkpoint_id]

    def checkpoint_records(self, ref: VMRef) -> list[dict[str, Any]]:
        """Every checkpoint, oldest first: id, name, restores_to, at."""
        with self._locked(write=False) as state:
            return [dict(c) for c in self._vm(state, ref, "checkpoints")["checkpoints"]]

    def checkpoint_names(self, ref: VMRef) -> list[str]:
        return [c["name"] for c in self.checkpoint_records(ref)]

    def ip_address(self, ref: VMRef) -> str | None:
        with self._locked(write=False) as state:
            vm = self._vm(state, ref, "ip")
            return vm["ip"] if vm["state"] == "Running" else None

    def guest_reports(self, ref: VMRef, ip: str) -> None:
        """What a guest may do: report any text as its address, as Hyper-V passes on the
        guest's own report unchecked. Until the VM next gets a fresh address."""
        with self._locked() as state:
            self._vm(state, ref, "ip")["ip"] = ip

    def heartbeat_ok(self, ref: VMRef) -> bool:
        with self._locked(write=False) as state:
            vm = self._vm(state, ref, "heartbeat")
            booted = vm["booted"] or time.time() >= vm.get("ready_at", 0.0)
            return bool(vm["state"] == "Running" and booted)

    def capacity(self) -> HostCapacity:
        with self._locked(write=False) as state:
            oom = any(f["kind"] == "out-of-memory" for f in state["faults"])
            total = int(state["total_memory_mb"])
            free = 0 if oom else total - self._memory_in_use(state)
            return HostCapacity(
                total_memory_mb=total,
                free_memory_mb=max(0, free),
                logical_cpus=int(state["logical_cpus"]),
            )

    def screenshot(self, ref: VMRef) -> bytes:
        with self._locked(write=False) as state:
            vm = self._vm(state, ref, "screenshot")
            vm_state = vm["state"]
        from core.imaging import text_card  # Pillow loads only when a picture is asked for

        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        if vm_state == "Off":
            return text_card([ref.name, "Off", stamp], background=(0, 0, 0))
        return text_card([ref.name, vm_state, stamp])

    def saved_state_path(self, ref: VMRef) -> str | None:
        with self._locked(write=False) as state:
            vm = self._vm(state, ref, "saved_state_path")
            if vm["state"] != "Saved":
                return None
            return str(Path(vm["disk"]).with_suffix(".vmrs"))

    def close(self) -> None:
        return None

    def for_host(self, host: str) -> SimHost:
        """The simulated host `host` of this machine's fleet (its own state, same timings)."""
        return SimHost(
            sim_host_dir(self.fleet_root, host),
            scale=self.scale,
            total_memory_mb=self._total_memory_mb,
            op_timeout_s=self.op_timeout_s,
            vm_dir=self.vm_dir,
            fleet_root=self.fleet_root,
            readonly=self.readonly,
        )

    def send_text(self, ref: VMRef, text: str) -> None:
        raise Unsupported("the simulated host has no keyboard", vm=ref.name, operation="type")

    def configure(self, ref: VMRef, *, notes: str | None = None, gpu: bool | None = None) -> None:
        """Set-VM -Notes / Add-VMGpuPartitionAdapter on an existing VM."""
        with self._locked() as state:
            vm = self._vm(state, ref, "configure")
            if notes is not None:
                vm["notes"] = notes
            if gpu is not None:
                vm["gpu"] = gpu

    def raw_vm(self, ref: VMRef) -> dict[str, Any]:
        """The VM's record as the host keeps it (for the fake PowerShell host)."""
        with self._locked(write=False) as state:
            return dict(self._vm(state, ref, "get"))

    # -- the host's other users ----------------------------------------------------------------

    def add_foreign_vm(
        self, name: str, state: str = "Off", memory_mb: int = 2048, disk_path: str | None = None
    ) -> HostVM:
        """A VM someone made by hand in Hyper-V Manager (or another hvkube store): no mark of
        ours. Its disk lives where that person put it."""
        disk = disk_path or f"C:\\Users\\Public\\Documents\\Hyper-V\\{name}.vhdx"
        with self._locked() as host:
            host["disks"][self._disk_key(disk)] = {"path": disk, "parent": None}
        vm = self.new_vm(name, disk, memory_mb, 2, False, notes="made by hand")
        if state != "Off":
            with self._locked() as host:
                host["vms"][vm.id]["state"] = state
        return self.get_vm(VMRef(vm.name, vm.id)) or vm

    # -- fault injection -----------------------------------------------------------------------

    def inject_fault(
        self,
        kind: str,
        vm: str | None = None,
        op: str | None = None,
        seconds: float | None = None,
    ) -> None:
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; choose from {', '.join(FAULT_KINDS)}")
        if kind == "foreign-vm":
            if vm is None:
                raise ValueError("fault 'foreign-vm' needs a VM name")
            self.add_foreign_vm(vm)
            return
        with self._locked() as state:
            if kind in {"corrupt-saved-state", "delete-vm", "ip-change", "broken-vm"}:
                if vm is None:
                    raise ValueError(f"fault {kind!r} needs a VM name")
                matches = [v for v in state["vms"].values() if same_name(v["name"], vm)]
                if not matches:
                    raise ValueError(f"the simulated host has no VM named {vm!r}")
                target = matches[0]
                if kind == "corrupt-saved-state":
                    target["saved_state_ok"] = False
                    return
                if kind == "broken-vm":
                    target["broken"] = True
                    return
                if kind == "delete-vm":
                    state["disks"].pop(self._disk_key(target["disk"]), None)
                    del state["vms"][target["id"]]
                    return
            state["faults"].append({"kind": kind, "vm": vm, "op": op, "seconds": seconds})

    def clear_faults(self) -> int:
        with self._locked() as state:
            count = len(state["faults"])
            state["faults"] = []
            for vm in state["vms"].values():
                vm["saved_state_ok"] = True
            return count

    def faults(self) -> list[dict[str, Any]]:
        with self._locked(write=False) as state:
            return list(state["faults"])

    def raw_state(self) -> dict[str, Any]:
        with self._locked(write=False) as state:
            return state.as_dict()


def sim_host_dir(root: Path, host: str) -> Path:
    """Each simulated host keeps its own state: the machine's own host beside the database
    (as before there were fleets), every other named host in `sim-hosts/<name>` there."""
    return root if host == machine_name() else root / "sim-hosts" / host


def from_settings(settings: Settings) -> SimHost:
    return SimHost(
        sim_host_dir(settings.state_dir(), settings.host_name()),
        scale=settings.sim_scale,
        total_memory_mb=settings.sim_memory_mb,
        op_timeout_s=settings.op_timeout_s,
        vm_dir=settings.vm_dir or "D:\\hvkube\\vms",
        readonly=settings.readonly,
        fleet_root=settings.state_dir(),
    )

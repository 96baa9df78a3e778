"""Provisioning: clone, create, first boot, wait ready, checkpoint "clean", park in a tier.

VMs are built in parallel up to a limit, and a VM only boots when host memory
(measured, with the configured ceiling) has room for it beside the VMs that
are already booting.

Stopping (the operator's Ctrl-C): once the `stop` event is set, no VM is begun any more
(its row, written as intent, is dropped), a VM being built finishes its current host step
and is then removed again, unless it already has its clean checkpoint (it is then parked
and kept: finishing is quicker than undoing). What could not be removed stays in ERROR
for `hvkube reconcile` or the next provisioning, and the report says so.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from core.backends.base import CLEAN_CHECKPOINT, Capability, VMRef, feature
from core.errors import (
    CapacityExceeded,
    ForeignVM,
    HostObjectExists,
    HvkubeError,
    Interrupted,
    InvalidInput,
)
from core.models import VM, Template, VMPool, VMState
from core.probes import wait_ready

if TYPE_CHECKING:
    from core.engine import Engine, ProgressFn


def vm_name_for(pool: str, index: int) -> str:
    return f"{pool}-{index:03d}"


@dataclass
class ProvisionReport:
    pool: str
    requested: int
    created: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    # When stopped: removed again after they were begun, never begun, and left half-done
    # (with why; `hvkube reconcile` or the next provisioning settles them).
    interrupted: bool = False
    rolled_back: list[str] = field(default_factory=list)
    not_started: list[str] = field(default_factory=list)
    half_done: dict[str, str] = field(default_factory=dict)


class _TierPlan:
    """Which tier each newly built VM is parked in: hot first, then warm, then cold."""

    def __init__(self, pool: VMPool, existing: list[VM]) -> None:
        paused = sum(1 for vm in existing if vm.state is VMState.PAUSED)
        saved = sum(1 for vm in existing if vm.state is VMState.SAVED)
        self.hot = max(0, pool.hot_count - paused)
        self.warm = max(0, pool.warm_count - saved)
        self._lock = threading.Lock()

    def next_tier(self, gpu: bool = False) -> VMState:
        """`gpu`: a VM with a GPU partition cannot be saved, so a warm place is a cold one."""
        with self._lock:
            if self.hot > 0:
                self.hot -= 1
                return VMState.PAUSED
            if self.warm > 0:
                self.warm -= 1
                return VMState.OFF if gpu else VMState.SAVED
            return VMState.OFF


class _MemoryGate:
    """Admit a boot only while measured use plus boots in flight stays under the ceiling.

    A VM counts as in flight from its admission until its boot shows in the measured use,
    and as unparked until it is parked (saved or stopped frees its memory). A boot that does
    not fit waits while any VM of this run is unparked, since parking may make room; it is
    refused only when nothing of this run can free memory any more, or at the timeout."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.cond = threading.Condition()
        self.in_flight_mb = 0
        self.unparked = 0

    def admit(self, memory_mb: int, timeout_s: float, stop: threading.Event | None = None) -> None:
        deadline = time.monotonic() + timeout_s
        with self.cond:
            while True:
                _check(stop, "before its first boot")
                budget = self.engine.memory_budget()
                if budget.allows(memory_mb, reserved_mb=self.in_flight_mb):
                    self.in_flight_mb += memory_mb
                    self.unparked += 1
                    return
                if self.unparked == 0 or time.monotonic() >= deadline:
                    raise budget.refusal(memory_mb)
                self.cond.wait(timeout=0.25)

    def booted(self, memory_mb: int) -> None:
        """The boot is over (or failed): the measured use now shows what it holds."""
        with self.cond:
            self.in_flight_mb -= memory_mb
            self.cond.notify_all()

    def parked(self) -> None:
        """The VM is parked (or its build failed): whatever it frees is free now."""
        with self.cond:
            self.unparked -= 1
            self.cond.notify_all()


def _free_names(pool: str, taken: set[str], count: int) -> list[str]:
    names: list[str] = []
    index = 1
    while len(names) < count:
        name = vm_name_for(pool, index)
        if name not in taken:
            names.append(name)
        index += 1
    return names


def provision_pool(
    engine: Engine,
    name: str,
    parallelism: int | None = None,
    progress: ProgressFn | None = None,
    count: int | None = None,
    stop: threading.Event | None = None,
) -> ProvisionReport:
    """Build on this host the VMs the pool is missing (or `count` of them, the share a
    fleet's controller gives this host); replace this host's VMs that are gone or in error.
    Once `stop` is set, nothing more is begun (see the module's docstring)."""
    pool = engine.get_pool(name)
    tpl = engine.get_template(pool.template)
    workers = parallelism or engine.settings.provision_parallelism
    if not 1 <= workers <= 64:
        raise InvalidInput(f"--parallel must be between 1 and 64, got {workers}")
    engine.ledger.guard("provision a pool")
    started = time.perf_counter()

    for vm in engine.list_vms(pool=name):
        if vm.host != engine.host:
            continue
        if vm.state in {VMState.MISSING, VMState.ERROR} and not vm.held:
            _notify(progress, vm.name, "replace", vm.error or vm.state.value)
            try:
                engine.delete_vm(vm.name)
            except HvkubeError:
                engine.ledger.forget(vm.name)

    existing = engine.list_vms(pool=name)
    missing = max(0, pool.desired_count - len(existing)) if count is None else count
    report = ProvisionReport(pool=name, requested=missing)
    if missing == 0:
        return report
    if pool.hosts is not None and engine.host not in pool.hosts:
        raise CapacityExceeded(
            f"pool {name!r} uses host(s) {', '.join(pool.hosts)}, not {engine.host!r}"
        )
    mine = [vm for vm in existing if vm.host == engine.host]
    if pool.max_per_host is not None and len(mine) + missing > pool.max_per_host:
        raise CapacityExceeded(
            f"pool {name!r} may have at most {pool.max_per_host} VMs on host {engine.host!r}"
        )
    gate = _MemoryGate(engine)
    engine.memory_budget().check(tpl.memory_mb)

    names = _free_names(name, {vm.name for vm in existing}, missing)
    # Intent first: every VM about to be built is in the store as PROVISIONING.
    engine.ledger.insert_provisioning(
        [
            {
                "name": vm_name,
                "template": tpl.name,
                "pool": name,
                "backend": engine.backend.name,
                "host": engine.host,
                "rdp_port": tpl.rdp_port,
                "memory_mb": tpl.memory_mb,
            }
            for vm_name in names
        ]
    )
    # Tiers by name, decided now: the lowest-numbered new VM is the hot one, whichever
    # build ends first (an operator reads `pool-001` as the hot VM, as the README does).
    plan = _TierPlan(pool, mine)
    tiers = {vm_name: plan.next_tier(gpu=tpl.gpu) for vm_name in names}

    def build(vm_name: str) -> None:
        if stop is not None and stop.is_set():
            engine.ledger.forget(vm_name)  # never begun: nothing of it is on the host
            report.not_started.append(vm_name)
            _notify(progress, vm_name, "not started")
            return
        try:
            _build_one(engine, vm_name, tpl, tiers[vm_name], gate, progress, stop)
            report.created.append(vm_name)
        except Interrupted as exc:
            _roll_back(engine, vm_name, exc, report, progress)
        except HvkubeError as exc:
            report.failed[vm_name] = str(exc)
            _notify(progress, vm_name, "failed", str(exc))
            engine.ledger.fail(vm_name, exc)

    with ThreadPoolExecutor(max_workers=min(workers, len(names))) as executor:
        list(executor.map(build, names))
    report.interrupted = stop is not None and stop.is_set()
    report.seconds = time.perf_counter() - started
    return report


def _check(stop: threading.Event | None, where: str) -> None:
    if stop is not None and stop.is_set():
        raise Interrupted(f"stopped {where}")


def _roll_back(
    engine: Engine,
    vm_name: str,
    exc: Interrupted,
    report: ProvisionReport,
    progress: ProgressFn | None,
) -> None:
    """A VM stopped in the middle of its build: remove what was made of it."""
    row = engine.get_vm(vm_name)
    if row.disk_path is None and row.host_id is None:  # nothing of it reached the host
        engine.ledger.forget(vm_name)
        report.not_started.append(vm_name)
        _notify(progress, vm_name, "not started")
        return
    _notify(progress, vm_name, "rollback", f"({exc})")
    engine.ledger.fail(vm_name, exc)
    try:
        engine.delete_vm(vm_name, force=True)
    except HvkubeError as why:
        report.half_done[vm_name] = f"left in error: {why}"
        _notify(progress, vm_name, "failed", str(why))
        return
    report.rolled_back.append(vm_name)
    _notify(progress, vm_name, "rolled back")


def check_name_free(engine: Engine, vm_name: str) -> None:
    """Refuse to build `vm_name` while the host has a VM of that name (ignoring case) that
    this store did not make: it is someone else's, and hvkube never touches it."""
    for other in engine.backend.find_vms(vm_name):
        if other.owner == engine.store_id:
            continue  # one of ours that the store lost track of: reconcile reports it
        raise ForeignVM(
            f"the host already has a VM named {other.name!r} (id {other.id}) that hvkube did "
            f"not make; rename or remove it in Hyper-V Manager, or give the pool another name"
        )


def _notify(progress: ProgressFn | None, vm: str, step: str, detail: str = "") -> None:
    if progress is not None:
        progress(vm, step, detail)


def _build_one(
    engine: Engine,
    vm_name: str,
    tpl: Template,
    tier: VMState,
    gate: _MemoryGate,
    progress: ProgressFn | None,
    stop: threading.Event | None = None,
) -> None:
    backend = engine.backend
    row = engine.get_vm(vm_name)
    disk = backend.disk_path_for(vm_name, tpl.disk_path)
    with engine.ledger.step("provision", vm_name, row.pool):
        check_name_free(engine, vm_name)
        _check(stop, "before its disk was made")
        _notify(progress, vm_name, "disk", disk)
        # The path is recorded before the disk is made, so a crash leaves nothing unknown; a
        # file already there is not ours, and is forgotten so that no rollback deletes it.
        engine.ledger.note(vm_name, disk_path=disk)
        try:
            backend.create_differencing_disk(tpl.disk_path, disk)
        except HostObjectExists:
            engine.ledger.note(vm_name, disk_path=None)
            raise
        _check(stop, "before the VM was created")
        _notify(progress, vm_name, "create")
        made = backend.create_vm(
            vm_name, disk, tpl.memory_mb, tpl.cpus, tpl.gpu, owner=engine.store_id
        )
        engine.ledger.note(vm_name, host_id=made.id)
        ref = VMRef(vm_name, made.id)
        gate.admit(tpl.memory_mb, engine.settings.op_timeout_s, stop)
        try:
            try:
                _notify(progress, vm_name, "boot")
                with engine.ledger.step("first_boot", vm_name, row.pool):
                    backend.start(ref)
            finally:
                gate.booted(tpl.memory_mb)
            _notify(progress, vm_name, "wait_ready")
            how = wait_ready(backend, ref, tpl.probe, engine.settings.ready_timeout_s, stop)
            _check(stop, "before its clean checkpoint")
            if not tpl.gpu:  # a GPU partition takes no checkpoints: reset rebuilds its disk
                _notify(progress, vm_name, "checkpoint", how)
                with engine.ledger.step("checkpoint", vm_name, row.pool):
                    backend.checkpoint(ref, CLEAN_CHECKPOINT)
            ip = backend.ip_address(ref)
            _notify(progress, vm_name, "park", tier.value)
            if tier is VMState.PAUSED:
                backend.pause(ref)
            elif tier is VMState.SAVED:
                backend.save(ref)
            else:
                backend.stop(ref, force=True)
        finally:
            gate.parked()
        extra = {}
        forwarded = feature(backend, Capability.FORWARDED_RDP)
        if forwarded is not None:  # user-mode networking: the guest's RDP port on loopback
            extra["rdp_port"] = forwarded.forwarded_port(ref)
        engine.ledger.finish(
            vm_name, tier, ip=None if tier is VMState.OFF else ip, error=None, **extra
        )
    _notify(progress, vm_name, "ready", tier.value)


# Which idle VMs go first when a pool shrinks: broken ones, then the least ready; among
# equals, the newest (highest-numbered) name.
_REMOVE_ORDER = {
    VMState.MISSING: 0,
    VMState.ERROR: 1,
    VMState.OFF: 2,
    VMState.SAVED: 3,
    VMState.PAUSED: 4,
    VMState.RUNNING: 5,
}


def surplus_vms(vms: list[VM], surplus: int) -> list[VM]:
    """The `surplus` idle VMs of a pool to remove when it shrinks (fewer when fewer are
    idle: held and busy VMs are never taken)."""
    idle = [vm for vm in vms if not vm.held and not vm.state.transitional]
    idle.sort(key=lambda vm: (_REMOVE_ORDER.get(vm.state, 9), [-ord(c) for c in vm.name]))
    return idle[: max(0, surplus)]


def scale_pool(
    engine: Engine,
    name: str,
    count: int,
    progress: ProgressFn | None = None,
    stop: threading.Event | None = None,
) -> ProvisionReport:
    """Set the pool's size, then build the missing VMs or remove surplus idle ones."""
    pool = engine.update_pool(name, count=count)
    vms = engine.list_vms(pool=name)
    surplus = len(vms) - pool.desired_count
    if surplus <= 0:
        return provision_pool(engine, name, progress=progress, stop=stop)
    report = ProvisionReport(pool=name, requested=0)
    for vm in surplus_vms(vms, surplus):
        if stop is not None and stop.is_set():
            report.interrupted = True
            report.not_started.append(vm.name)
            continue
        _notify(progress, vm.name, "remove", vm.state.value)
        try:
            engine.delete_vm(vm.name)
        except HvkubeError as exc:
            report.failed[vm.name] = str(exc)
    return report

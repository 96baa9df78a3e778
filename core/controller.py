"""The controller (`hvkube run`): keeps pools at their declared size and tiers, schedules
agents, enforces their timeouts, watches running VMs.

Only one process per database acts as controller: it holds the `controller` lease
(core.store.leases) and renews it from a background thread; another controller started
meanwhile stays passive and takes over when the holder dies or its lease expires.

Every VM change goes through the engine (intent recorded first, an event for every
step), so a controller killed at any moment leaves nothing that `reconcile` (run
first thing at every start) cannot finish or roll back.

Threads: the loop thread (leases aside) decides; agent workers (core.scheduler)
resume VMs and run commands; pool workers provision, replace and move VMs between
tiers, one job per pool at a time. On stop, nothing new starts, in-flight steps
finish, running commands get a grace period and are then killed (their agents are
queued again), and the lease is released.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from core.datadir import check_own_file
from core.errors import CapacityExceeded, Conflict, HvkubeError, InvalidInput, NotFound
from core.fleet import (
    host_summary,
    plan_builds,
    pool_hosts,
    surplus_on,
    take_down_expired,
    tier_share,
)
from core.ledger import state_from_host
from core.models import (
    ACTIVE_AGENT_STATUSES,
    VM,
    AgentResult,
    AgentStatus,
    Host,
    HostState,
    HostVM,
    Template,
    VMPool,
    VMState,
)
from core.provision import surplus_vms
from core.recording.recorder import Recorder, RecordingLoop, held_vms
from core.scheduler import PoolInfo, Scheduler
from core.settings import Settings
from core.store import leases
from core.store.leases import controller_lease

if TYPE_CHECKING:
    from core.engine import Engine

log = logging.getLogger("hvkube.controller")


class ControllerStatus(BaseModel):
    """What the dashboard's header and `hvkube run --status` show."""

    running: bool
    state: str  # running, stopping, stopped, gone (died without releasing), none
    holder: str | None = None
    pid: int | None = None
    host: str | None = None
    started_at: str | None = None
    last_tick_at: str | None = None
    expires_at: str | None = None
    ticks: int = 0
    tick_s: float | None = None
    counts: dict[str, int] = Field(default_factory=dict)

    def summary(self) -> str:
        if self.state == "none":
            return "controller: not running (start it with 'hvkube run')"
        where = f"pid {self.pid} on {self.host}" if self.pid else self.holder or "?"
        if not self.running:
            when = self.last_tick_at or self.expires_at or "?"
            return f"controller: {self.state} ({where}, last tick {when})"
        agents = ", ".join(
            f"{self.counts.get(k, 0)} {k}" for k in ("pending", "running") if k in self.counts
        )
        return f"controller: {self.state} ({where}; {agents or 'no agents'})"


def controller_status(engine: Engine) -> ControllerStatus:
    """The controller's state as recorded in its lease row: one cheap read."""
    info = leases.read(engine.store, controller_lease(engine.host))
    if info is None:
        return ControllerStatus(running=False, state="none")
    data = info.data
    alive = info.alive_for(engine.host)
    state = str(data.get("state") or "running")
    if not alive and state != "stopped":
        state = "gone"
    return ControllerStatus(
        running=alive,
        state=state,
        holder=info.holder,
        pid=data.get("pid"),
        host=data.get("host"),
        started_at=data.get("started_at"),
        last_tick_at=data.get("last_tick_at"),
        expires_at=info.expires_at.isoformat(),
        ticks=int(data.get("ticks") or 0),
        tick_s=data.get("tick_s"),
        counts={k: int(v) for k, v in (data.get("counts") or {}).items()},
    )


def _iso_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class Controller:
    """The control loop. `run(stop_event)` blocks until the event is set."""

    def __init__(
        self,
        engine: Engine,
        *,
        tick_s: float = 2.0,
        lease_ttl_s: float = 15.0,
        max_workers: int = 32,
        pool_workers: int = 4,
        grace_s: float = 10.0,
        provision_parallelism: int | None = None,
        holder: str | None = None,
        record_every_s: float = 1.0,
    ) -> None:
        if tick_s <= 0 or lease_ttl_s <= 0:
            raise ValueError("tick and lease times must be positive")
        self.engine = engine
        self.tick_s = tick_s
        self.lease_ttl_s = lease_ttl_s
        self.max_workers = max_workers
        self.grace_s = grace_s
        self.provision_parallelism = provision_parallelism
        self.record_every_s = record_every_s
        self.owner = engine.owner
        self.host = engine.host
        self.lease = controller_lease(engine.host)
        self.holder = holder or f"{self.owner}/{secrets.token_hex(4)}"
        self._hosts: list[Host] = []
        self._was_down = threading.Event()
        self.hosts_taken_down: list[str] = []
        self.state = "starting"
        self.started_at = _iso_now()
        self.last_tick_at: str | None = None
        self.ticks = 0
        self.counts: dict[str, int] = {}
        self.notes: dict[str, str] = {}  # pool -> what keeps it from its declared shape
        self.lost = threading.Event()
        self._wake = threading.Event()
        self._memory_lock = threading.Lock()  # provisioning and hot promotions take RAM
        self._state_lock = threading.Lock()
        self._pool_jobs: dict[str, Future[None]] = {}
        self._provisioning: dict[str, int] = {}
        self._pool_workers = pool_workers
        self._pool_executor: ThreadPoolExecutor | None = None
        self.scheduler: Scheduler | None = None
        self._next_maintenance = 0.0
        self._next_timeouts = 0.0
        self._pool_cache: dict[str, PoolInfo] | None = None
        self._no_heartbeat: set[str] = set()

    # -- the loop ----------------------------------------------------------------------------

    def run(self, stop: threading.Event, once: bool = False) -> int:
        """Wait for the lease, then control until `stop` is set (or after one tick, `once`)."""
        while not stop.is_set():
            if not self._wait_for_lease(stop):
                break
            self._active(stop, once)
            if once or not self.lost.is_set():
                break
            log.warning("controller lease lost to another process; going passive")
            self.lost.clear()
        return 0

    def _wait_for_lease(self, stop: threading.Event) -> bool:
        announced = False
        while not stop.is_set():
            if leases.acquire(
                self.engine.store,
                self.lease,
                self.holder,
                self.lease_ttl_s,
                self._status_data(),
                host=self.host,
            ):
                return True
            if not announced:
                current = leases.read(self.engine.store, self.lease)
                log.info(
                    "another controller is active (%s); waiting to take over",
                    current.holder if current else "?",
                )
                self.state = "passive"
                announced = True
            stop.wait(min(1.0, self.lease_ttl_s / 3))
        return False

    def _active(self, stop: threading.Event, once: bool) -> None:
        self.state = "running"
        self.scheduler = Scheduler(
            self.engine,
            max_workers=self.max_workers,
            wake=self._wake.set,
            provisioning=lambda pool: self._provisioning.get(pool, 0),
        )
        self._pool_executor = ThreadPoolExecutor(self._pool_workers, thread_name_prefix="pool")
        session_over = threading.Event()
        renewer = threading.Thread(
            target=self._renew_loop, args=(session_over,), name="lease", daemon=True
        )
        renewer.start()
        recording = self._recording_loop()
        log.info("controller of host %s active (%s)", self.host, self.holder)
        try:
            self._heartbeat()
            self._startup()
            if recording is not None:
                recording.start()
            self._next_maintenance = 0.0
            while not stop.is_set() and not self.lost.is_set():
                self.tick(wait=once)
                if once:
                    break
                self._wake.wait(timeout=min(self.tick_s, 0.25))
                self._wake.clear()
        finally:
            self.state = "stopping"
            if recording is not None:
                recording.stop()
            self._shutdown()
            session_over.set()
            renewer.join()
            if not self.lost.is_set():
                self.state = "stopped"
                leases.release(self.engine.store, self.lease, self.holder, self._status_data())
                with contextlib.suppress(Exception):
                    self.engine.store.hosts.stopped(self.host)
            log.info("controller stopped")

    def _recording_loop(self) -> RecordingLoop | None:
        """Every held VM's screen about once a second, while this controller is active."""
        recorder = Recorder.for_engine(self.engine)
        if recorder is None or self.record_every_s <= 0:
            return None
        return RecordingLoop(
            recorder,
            lambda: held_vms(self.engine),
            self.record_every_s,
            self.engine.settings.recording_retention_days,
        )

    def _startup(self) -> None:
        report = self.engine.reconcile()
        for line in report.fixed:
            log.info("reconcile: %s", line)
        for line in report.errors:
            log.warning("reconcile: %s", line)
        for name in report.orphans:
            log.warning("reconcile: %s is on the host but not in the store", name)

    def _shutdown(self) -> None:
        if self.scheduler is not None:
            self.scheduler.drain(self.grace_s)
        if self._pool_executor is not None:
            self._pool_executor.shutdown(wait=True)
        self._pool_jobs.clear()

    def _renew_loop(self, session_over: threading.Event) -> None:
        every = min(2.0, self.lease_ttl_s / 3)
        while not session_over.wait(every):
            try:
                ok = leases.renew(
                    self.engine.store,
                    self.lease,
                    self.holder,
                    self.lease_ttl_s,
                    self._status_data(),
                )
                if ok:
                    self._heartbeat()
            except Exception as exc:  # the database is busy or gone: try again shortly
                log.warning("renewing the controller lease failed: %s", exc)
                continue
            if not ok:
                self.lost.set()
                if self.scheduler is not None:
                    self.scheduler.dispatching = False
                self._wake.set()
                return

    def _heartbeat(self) -> None:
        """This host is up for one more lease, with its memory as measured now."""
        engine = self.engine
        total: int | None = None
        free: int | None = None
        try:
            cap = engine.backend.capacity()
            total, free = cap.total_memory_mb, cap.free_memory_mb
        except HvkubeError:
            pass
        if engine.store.hosts.heartbeat(
            self.host, self.lease_ttl_s, total, free, engine.backend.name
        ):
            # Taken down while this controller lived (the store was out of reach for longer
            # than the lease): its VMs are unknown and its agents were handled elsewhere.
            log.warning("host %s was marked down; settling its VMs again", self.host)
            self._was_down.set()

    def _status_data(self) -> dict[str, Any]:
        return {
            "owner": self.owner,
            "pid": os.getpid(),
            "host": self.host,
            "machine": socket.gethostname(),
            "state": self.state,
            "started_at": self.started_at,
            "last_tick_at": self.last_tick_at,
            "ticks": self.ticks,
            "tick_s": self.tick_s,
            "counts": dict(self.counts),
            "notes": dict(self.notes),
        }

    # -- one tick ----------------------------------------------------------------------------

    def tick(self, wait: bool = False) -> None:
        """Timeouts and scheduling every pass; pool upkeep every `tick_s`. With `wait`, also
        wait until every job and agent started by this tick has finished."""
        assert self.scheduler is not None
        now = time.monotonic()
        full = wait or now >= self._next_maintenance
        if full or self._pool_cache is None:
            self._pool_cache = self._pools()
        pools = self._pool_cache
        if full:
            self._next_maintenance = now + self.tick_s
            self._maintain(pools, wait)
            self.counts = self._count()
            self.ticks += 1
            self.last_tick_at = _iso_now()
        if wait or now >= self._next_timeouts:
            self._next_timeouts = now + min(0.5, self.tick_s)
            self.scheduler.enforce_timeouts()
        self.scheduler.schedule(pools, full=full)
        if wait:
            while self.scheduler.busy():
                time.sleep(0.01)
            self._maintain(pools, wait=True)  # VMs the agents gave back go to their tiers

    def _pools(self) -> dict[str, PoolInfo]:
        templates = {t.name: t for t in self.engine.list_templates()}
        return {
            p.name: PoolInfo(pool=p, template=templates[p.template])
            for p in self.engine.list_pools()
            if p.template in templates
        }

    def _count(self) -> dict[str, int]:
        return self.engine.store.activity_counts(sorted(ACTIVE_AGENT_STATUSES))

    def _maintain(self, pools: dict[str, PoolInfo], wait: bool) -> None:
        assert self._pool_executor is not None
        self._take_down_silent_hosts()
        self._hosts = host_summary(self.engine.store)
        self._settle_dead_operations()
        for name in sorted(pools):
            job = self._pool_jobs.get(name)
            if job is not None and not job.done():
                continue
            self._pool_jobs[name] = self._pool_executor.submit(self._keep_pool_safely, name)
        if wait:
            for job in list(self._pool_jobs.values()):
                job.result()

    def _settle_dead_operations(self) -> None:
        """A step left half-done by another process that died (a CLI killed mid-acquire,
        say) is settled by reconcile, as at start-up; so are this host's VMs after it was
        taken down while this controller lived."""
        transitional = [s.value for s in VMState if s.transitional]
        owners = self.engine.store.records.operation_owners(transitional, self.host)
        was_down = self._was_down.is_set()
        self._was_down.clear()
        if was_down or any(
            owner != self.owner and not self.engine.owner_alive(owner) for owner in owners
        ):
            from core.reconcile import reconcile

            report = reconcile(self.engine, while_running=True)
            for line in report.fixed:
                log.info("reconcile: %s", line)

    def _take_down_silent_hosts(self) -> None:
        """Another host whose heartbeat stopped for longer than its lease is down: its VMs
        become unknown, its agents are failed or requeued (core.fleet)."""
        agents = self.engine.agents

        def requeue(agent_id: int, before: AgentStatus, why: str) -> None:
            agents.requeue(agent_id, before, why)

        def fail(agent_id: int, before: AgentStatus, why: str) -> None:
            agents.fail(agent_id, why, before=before)

        for name in take_down_expired(self.engine.store, self.host, requeue, fail):
            log.warning("host %s is down: its VMs are unknown until it is back", name)
            self.hosts_taken_down.append(name)

    # -- keeping one pool in shape -----------------------------------------------------------

    def _mine(self, pool: str) -> list[VM]:
        return self.engine.store.records.vms(pool, None, self.host)

    def _keep_pool_safely(self, name: str) -> None:
        try:
            self._keep_pool(name)
        except NotFound:
            self.notes.pop(name, None)  # deleted meanwhile
        except Exception as exc:
            log.exception("pool %s: upkeep failed", name)
            self.notes[name] = f"upkeep failed: {exc}"

    def _keep_pool(self, name: str) -> None:
        engine = self.engine
        pool = engine.get_pool(name)
        tpl = engine.get_template(pool.template)
        notes: list[str] = []
        # The store first, then the host: a host state seen after the store's can only be
        # newer, and every correction below is conditional on the store not having moved.
        stored = self._mine(name)
        host = {vm.id: vm for vm in engine.backend.list_vms(prefix=f"{name}-")}
        for vm in stored:
            if vm.host_id or vm.state is not VMState.PROVISIONING:
                self._check_vm(vm, host.get(vm.host_id or ""))
        for vm in self._mine(name):
            if vm.state in {VMState.ERROR, VMState.MISSING} and not vm.held:
                log.info("pool %s: replacing %s (%s)", name, vm.name, vm.error or vm.state.value)
                self._try(notes, f"remove {vm.name}", lambda n=vm.name: engine.delete_vm(n))
        vms = self._mine(name)
        usable = [h for h in pool_hosts(pool, self._hosts) if h.status == "up"]
        usable_names = {h.name for h in usable}
        if self.host not in usable_names:
            # Draining, or the pool no longer uses this host: idle VMs go; held ones finish
            # first and go at a later tick.
            for vm in surplus_vms(vms, len(vms)):
                log.info("pool %s: removing %s (host %s is not for it)", name, vm.name, self.host)
                self._try(notes, f"remove {vm.name}", lambda n=vm.name: engine.delete_vm(n))
        else:
            per_host = engine.store.hosts.pool_counts(name)
            total = sum(per_host.values())
            if total < pool.desired_count:
                plan = plan_builds(
                    pool, pool.desired_count - total, per_host, usable, tpl.memory_mb
                )
                if plan.get(self.host):
                    self._provision(pool, plan[self.host], notes)
            elif total > pool.desired_count:
                surplus = surplus_on(pool, per_host, self.host, usable_names)
                for vm in surplus_vms(vms, surplus):
                    log.info("pool %s: removing surplus %s", name, vm.name)
                    self._try(notes, f"remove {vm.name}", lambda n=vm.name: engine.delete_vm(n))
        self._balance_tiers(pool, tpl, notes)
        if notes:
            self.notes[name] = "; ".join(notes)
        else:
            self.notes.pop(name, None)

    def _try(self, notes: list[str], what: str, action: Any) -> bool:
        try:
            action()
            return True
        except HvkubeError as exc:
            notes.append(f"{what}: {exc}")
            log.warning("%s: %s", what, exc)
            return False

    def _provision(self, pool: VMPool, missing: int, notes: list[str]) -> None:
        with self._memory_lock:
            self._provisioning[pool.name] = missing
            try:
                log.info("pool %s: building %d VM(s) on %s", pool.name, missing, self.host)
                report = self.engine.provision_pool(
                    pool.name, self.provision_parallelism, count=missing
                )
            except CapacityExceeded as exc:
                notes.append(f"cannot build: {exc}")
                log.warning("pool %s: %s", pool.name, exc)
                return
            finally:
                self._provisioning.pop(pool.name, None)
        for vm, why in sorted(report.failed.items()):
            notes.append(f"{vm} failed to build: {why}")
            log.warning("pool %s: %s failed to build: %s", pool.name, vm, why)

    def _check_vm(self, vm: VM, host: HostVM | None) -> None:
        """The host and the store disagree about a VM nobody is working on: act on it."""
        ledger = self.engine.ledger
        if vm.state.transitional:
            return
        if host is None:
            if vm.state is VMState.MISSING:
                return
            why = "the VM is no longer on the host (deleted outside hvkube?)"
            if vm.agent_id is not None and vm.held:
                log.warning("%s vanished under agent %s", vm.name, vm.agent_id)
                self._fail_agent(vm.agent_id, f"its VM {vm.name} was deleted outside hvkube")
            ledger.correct(vm, VMState.MISSING, why, error=why)
            return
        if host.state.transitional or host.state is HostState.UNKNOWN:
            return
        mapped = state_from_host(host)
        if mapped is None:
            return
        if vm.held and vm.agent_id is not None and vm.state is not VMState.ERROR:
            self._check_running(vm, host, mapped)
            return
        if vm.held or mapped == vm.state or vm.state is VMState.ERROR:
            return
        ledger.correct(
            vm,
            mapped,
            f"the host shows {host.raw_state}",
            idle_only=True,
            error=None,
            raw_state=None,
        )

    def _check_running(self, vm: VM, host: HostVM, mapped: VMState) -> None:
        """An agent's VM: still running, still reachable? If it stopped, resume it (with the
        engine's fallbacks: clean checkpoint, then cold boot); if that fails, fail the agent."""
        engine = self.engine
        if mapped is VMState.RUNNING and vm.state is VMState.RUNNING:
            try:
                engine.vm_ip(vm.name)  # refreshed in the store when DHCP moved it
                beating = engine.backend.heartbeat_ok(engine.ref(vm))
            except HvkubeError as exc:
                log.warning("%s: IP or heartbeat check failed: %s", vm.name, exc)
                return
            # An event when the guest's heartbeat goes missing, and when it is back.
            if beating == (vm.name in self._no_heartbeat):
                started = time.perf_counter()
                if beating:
                    self._no_heartbeat.discard(vm.name)
                    engine.ledger.record_event("heartbeat", vm.name, vm.pool, started)
                else:
                    self._no_heartbeat.add(vm.name)
                    log.warning("%s: no heartbeat from the guest", vm.name)
                    engine.ledger.record_event(
                        "heartbeat", vm.name, vm.pool, started, ok=False, error="no heartbeat"
                    )
            return
        agent = self.engine.store.records.agent(vm.agent_id) if vm.agent_id else None
        if agent is None or agent.status is not AgentStatus.RUNNING or agent.vm != vm.name:
            return  # not (or no longer) running there: reconcile releases it
        fresh = engine.host_vm(vm)  # look again right before acting
        if fresh is None or fresh.state.transitional:
            return
        mapped = state_from_host(fresh) or mapped
        log.warning("%s stopped under agent %s (%s); resuming", vm.name, vm.agent_id, mapped)
        changed = engine.ledger.correct(
            vm, mapped, f"stopped under agent {vm.agent_id}", holder=vm.holder
        )
        if not changed or mapped is VMState.RUNNING:
            return
        try:
            engine.resume_vm(vm.name)
        except HvkubeError as exc:
            assert vm.agent_id is not None
            self._fail_agent(vm.agent_id, f"its VM {vm.name} stopped and could not resume: {exc}")

    def _fail_agent(self, agent_id: int, why: str) -> None:
        with contextlib.suppress(HvkubeError):
            self.engine.finish_agent(
                agent_id, AgentStatus.FAILED, AgentResult(success=False, error=why)
            )

    def _memory_allows(self, memory_mb: int) -> bool:
        return self.engine.memory_budget().allows(memory_mb)

    def _balance_tiers(self, pool: VMPool, tpl: Template, notes: list[str]) -> None:
        """Exactly `hot` idle VMs Paused and `warm` Saved; the rest Off. Only idle VMs move,
        and every move is guarded so that a VM claimed meanwhile is left alone."""
        engine = self.engine
        # This host's part of the pool's tiers, in proportion to the VMs it has.
        per_host = engine.store.hosts.pool_counts(pool.name)
        hot_count = tier_share(pool.hot_count, per_host, self.host)
        warm_count = tier_share(pool.warm_count, per_host, self.host)
        idle = [vm for vm in self._mine(pool.name) if not vm.held and not vm.state.transitional]
        paused = [vm.name for vm in idle if vm.state is VMState.PAUSED]
        saved = [vm.name for vm in idle if vm.state is VMState.SAVED]
        off = [vm.name for vm in idle if vm.state is VMState.OFF]
        for name in paused[hot_count:]:  # hot -> warm (a GPU VM cannot be saved: cold)
            if tpl.gpu:
                self._try(
                    notes,
                    f"stop {name}",
                    lambda n=name: engine.stop_vm(n, force=True, idle_only=True),
                )
            elif self._try(notes, f"save {name}", lambda n=name: engine.save_vm(n, idle_only=True)):
                saved.append(name)
        paused = paused[:hot_count]
        short = hot_count - len(paused)
        while short > 0 and (saved or off):
            with self._memory_lock:
                if not self._memory_allows(tpl.memory_mb):
                    notes.append(f"hot tier short by {short}: host memory at its ceiling")
                    break
                cold = not saved
                name = saved.pop(0) if saved else off.pop(0)
                # A cold VM is first restored to its clean checkpoint (Saved, seconds) rather
                # than booted (a minute); then it is resumed and paused.
                steps: list[tuple[str, Any]] = [
                    *([("reset", engine.reset_vm)] if cold else []),
                    ("resume", engine.resume_vm),
                    ("pause", engine.pause_vm),
                ]
                ok = all(
                    self._try(notes, f"{what} {name}", lambda f=fn, n=name: f(n, idle_only=True))
                    for what, fn in steps
                )
            if ok:
                short -= 1
        for name in saved[warm_count:]:  # warm -> cold
            self._try(
                notes, f"stop {name}", lambda n=name: engine.stop_vm(n, force=True, idle_only=True)
            )
        for name in off[: max(0, warm_count - len(saved))]:  # cold -> warm: restore clean
            self._try(notes, f"reset {name}", lambda n=name: engine.reset_vm(n, idle_only=True))


def start_in_background(settings: Settings) -> tuple[int, Path]:
    """Start `hvkube run` on the same store and backend as a detached process (for the
    dashboard). Returns its pid and its log file. Refuses when a controller already runs."""
    from core import open_engine

    with open_engine(settings) as engine:
        status = controller_status(engine)
    if status.running:
        raise Conflict(f"a controller is already running ({status.summary()})")
    log = settings.state_dir() / "controller.log"
    env = {
        **os.environ,
        "HVKUBE_SIM_SCALE": str(settings.sim_scale),
        "HVKUBE_SIM_MEMORY_MB": str(settings.sim_memory_mb),
    }
    command = [
        sys.executable,
        "-m",
        "core.cli",
        "run",
        "--db",
        settings.db_location(),
        "--backend",
        settings.backend,
        *(["--host", settings.host] if settings.host else []),
    ]
    # Appended to, so not replaced atomically: opened without following a planted link,
    # created readable by its owner only, and never another user's file.
    check_own_file(log)
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(log, flags, 0o600)
    except OSError as exc:
        raise InvalidInput(f"controller log {log} cannot be opened: {exc.strerror}") from None
    with os.fdopen(fd, "ab") as out:
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    return proc.pid, log

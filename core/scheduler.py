"""Scheduling agents onto VMs, running their `--exec` commands, enforcing timeouts.

Only the process holding the controller lease schedules. Each agent moves
through the store with conditional UPDATEs only (pending -> scheduled only while
still pending, scheduled -> running only while still scheduled, ...), so a
cancel from the CLI or the dashboard at any moment wins or loses cleanly.

A VM is taken with the engine's atomic `acquire` (holder `agent:<id>`), in a
worker thread, so many agents start at once; after the agent ends, its VM is
released by the pool's policy (`Engine.finish_agent`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from core.agent_exec import agent_env, env_names, run_command
from core.budget import MemoryBudget
from core.errors import (
    CapacityExceeded,
    HvkubeError,
    NotFound,
    NoVMAvailable,
    OutOfMemory,
)
from core.models import AgentResult, AgentStatus, Template, VMPool, VMState

if TYPE_CHECKING:
    from core.engine import Engine

log = logging.getLogger("hvkube.controller")

READY = (VMState.PAUSED.value, VMState.SAVED.value, VMState.OFF.value)
# An agent whose VM fails to resume is moved to another VM; after this many it fails.
MAX_START_ATTEMPTS = 3
# A worker enforces its own command's timeout; the tick steps in only after this grace.
EXEC_TIMEOUT_GRACE_S = 10.0


def agent_holder(agent_id: int) -> str:
    return f"agent:{agent_id}"


@dataclass
class PoolInfo:
    pool: VMPool
    template: Template


@dataclass
class ScheduleReport:
    dispatched: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    waiting: dict[str, str] = field(default_factory=dict)  # pool -> why its agents wait


class Scheduler:
    """Places pending agents on VMs; runs and watches them in a bounded thread pool."""

    def __init__(
        self,
        engine: Engine,
        max_workers: int = 32,
        wake: Callable[[], None] | None = None,
        provisioning: Callable[[str], int] | None = None,
    ) -> None:
        self.engine = engine
        self.max_workers = max_workers
        self.executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="agent")
        self._wake = wake or (lambda: None)
        self._provisioning = provisioning or (lambda pool: 0)
        self._lock = threading.Lock()
        self._claiming: dict[str, int] = {}  # pool -> agents dispatched, VM not yet claimed
        self._claiming_mb = 0
        self._futures: dict[int, Future[None]] = {}
        self._attempts: dict[int, int] = {}
        self._last_reason: dict[str, str | None] = {}
        self._stop_exec = threading.Event()  # kill running commands and requeue their agents
        self.dispatching = True

    # -- what is in flight -------------------------------------------------------------------

    def busy(self) -> int:
        with self._lock:
            return sum(1 for f in self._futures.values() if not f.done())

    def active_agents(self) -> set[int]:
        with self._lock:
            return {a for a, f in self._futures.items() if not f.done()}

    def _prune(self) -> None:
        with self._lock:
            for agent_id in [a for a, f in self._futures.items() if f.done()]:
                del self._futures[agent_id]

    # -- placing -----------------------------------------------------------------------------

    def schedule(self, pools: dict[str, PoolInfo], full: bool = True) -> ScheduleReport:
        """One pass: oldest pending agents first, as many as each pool has ready VMs for.

        A `full` pass (once per tick) also fails agents that can never be placed and
        updates the reasons shown for waiting; the quick passes between ticks, run
        whenever an agent ends, only place agents."""
        report = ScheduleReport()
        if not self.dispatching:
            return report
        self._prune()
        if full:
            self._fail_unplaceable(pools, report)
        free = self._free_vms()
        budget = self.engine.memory_budget()
        with self._lock:
            headroom = budget.headroom(reserved_mb=self._claiming_mb)
            claiming = dict(self._claiming)
        room = max(0, self.max_workers - self.busy())
        pending_pools = self._pending_pools()
        for name in sorted(pending_pools):
            info = pools.get(name)
            if info is None:
                continue
            counts = free.get(name, {})
            hot = counts.get(VMState.PAUSED.value, 0)
            other = counts.get(VMState.SAVED.value, 0) + counts.get(VMState.OFF.value, 0)
            mem = info.template.memory_mb
            by_memory = max(0, headroom) // mem if mem > 0 else other
            slots = hot + min(other, by_memory) - claiming.get(name, 0)
            slots = max(0, min(slots, room))
            started = self._dispatch(name, slots, mem) if slots else []
            report.dispatched += started
            room -= len(started)
            headroom -= mem * max(0, len(started) - hot)
            if not full:
                continue
            reason = None
            if pending_pools[name] > len(started):
                short_of_memory = other > by_memory
                reason = self._wait_reason(name, info, short_of_memory, budget)
                report.waiting[name] = reason
            self._set_wait_reason(name, reason)
        return report

    def _pending_pools(self) -> dict[str, int]:
        return self.engine.store.records.agents_by_pool(AgentStatus.PENDING.value)

    def _free_vms(self) -> dict[str, dict[str, int]]:
        """This host's free VMs: each host's controller places agents on its own VMs."""
        return self.engine.store.records.free_vms_by_state(READY, self.engine.host)

    def _wait_reason(
        self,
        pool: str,
        info: PoolInfo,
        short_of_memory: bool,
        budget: MemoryBudget,
    ) -> str:
        if short_of_memory:
            return (
                f"host full: {budget.used_mb} of {budget.total_mb} MB in use, ceiling "
                f"{budget.ceiling_mb} MB; "
                f"a VM of pool {pool} needs {info.template.memory_mb} MB to resume"
            )
        counts = self.engine.pool_counts(pool)
        total = sum(v for k, v in counts.items() if k != "held")
        building = self._provisioning(pool) + counts.get(VMState.PROVISIONING.value, 0)
        text = f"no VM ready in pool {pool}: {counts.get('held', 0)} in use, {total} in all"
        if building:
            text += f", {building} being built"
        elif total < info.pool.desired_count:
            text += f" of {info.pool.desired_count} wanted"
        return text

    def _set_wait_reason(self, pool: str, reason: str | None) -> None:
        if self._last_reason.get(pool, "-") == reason:
            return
        self.engine.agents.set_wait_reason(pool, reason)
        self._last_reason[pool] = reason

    def _fail_unplaceable(self, pools: dict[str, PoolInfo], report: ScheduleReport) -> None:
        """Agents that can never run here: a GPU agent on a pool without GPU, a lost pool."""
        no_gpu = [name for name, info in pools.items() if not info.template.gpu]
        doomed = self.engine.store.records.unplaceable(
            AgentStatus.PENDING.value, list(pools), no_gpu
        )
        for agent_id, why in doomed.items():
            if self.engine.agents.fail(agent_id, why, before=AgentStatus.PENDING):
                report.failed.append(agent_id)
                log.info("agent %s failed: %s", agent_id, why)

    def _dispatch(self, pool: str, slots: int, memory_mb: int) -> list[int]:
        """Mark up to `slots` oldest pending agents of `pool` scheduled and start them."""
        rows = self.engine.agents.schedule(pool, slots, self.engine.host)
        started: list[int] = []
        for agent_id, command, agent_input, timeout_s, exec_env in rows:
            task = {
                "exec_command": command,
                "input": agent_input,
                "timeout_s": timeout_s,
                "exec_env": exec_env,
            }
            with self._lock:
                try:
                    future = self.executor.submit(self._run_agent, agent_id, pool, memory_mb, task)
                except RuntimeError:  # shutting down: the agent goes back to the queue
                    self._requeue(agent_id, AgentStatus.SCHEDULED, "the controller is stopping")
                    continue
                self._futures[agent_id] = future
                self._claiming[pool] = self._claiming.get(pool, 0) + 1
                self._claiming_mb += memory_mb
            started.append(agent_id)
        return started

    # -- one agent ---------------------------------------------------------------------------

    def _claimed(self, pool: str, memory_mb: int) -> None:
        with self._lock:
            self._claiming[pool] = max(0, self._claiming.get(pool, 0) - 1)
            self._claiming_mb = max(0, self._claiming_mb - memory_mb)

    def _requeue(self, agent_id: int, before: AgentStatus, reason: str) -> bool:
        return self.engine.agents.requeue(agent_id, before, reason)

    def _run_agent(self, agent_id: int, pool: str, memory_mb: int, task: dict[str, Any]) -> None:
        freed = False
        try:
            freed = self._start_and_run(agent_id, pool, memory_mb, task)
        except Exception as exc:  # a bug must not leave the agent scheduled forever
            log.exception("agent %s: unexpected error", agent_id)
            self._end_after_error(agent_id, f"internal error: {type(exc).__name__}: {exc}")
        # The VM this agent had is back in its pool: the pool's oldest waiting agent can take
        # that place now, without waiting for a scheduling pass (same pool, same memory).
        if freed and self.dispatching:
            try:
                if self._dispatch(pool, 1, memory_mb):
                    return
            except Exception:
                log.exception("pool %s: dispatching the next agent failed", pool)
        self._wake()

    def _end_after_error(self, agent_id: int, why: str) -> None:
        try:
            if self._requeue(agent_id, AgentStatus.SCHEDULED, why):
                return
            self.engine.finish_agent(
                agent_id, AgentStatus.FAILED, AgentResult(success=False, error=why)
            )
        except HvkubeError:
            pass

    def _start_and_run(
        self, agent_id: int, pool: str, memory_mb: int, task: dict[str, Any]
    ) -> bool:
        """Start the agent on a VM, and run its command if it has one. True when the agent
        has ended here and its VM went back to the pool."""
        engine = self.engine
        holder = agent_holder(agent_id)
        try:
            vm = engine.acquire(
                pool, wait_s=0.0, holder=holder, agent_id=agent_id, only_host=engine.host
            )
        except (NoVMAvailable, CapacityExceeded, OutOfMemory) as exc:
            self._claimed(pool, memory_mb)
            reason = str(exc) if not isinstance(exc, NoVMAvailable) else f"no VM ready: {exc}"
            self._requeue(agent_id, AgentStatus.SCHEDULED, reason)
            return False
        except NotFound as exc:
            self._claimed(pool, memory_mb)
            self._end_after_error(agent_id, str(exc))
            return False
        except HvkubeError as exc:
            # The VM failed to resume (the engine already fell back to its clean checkpoint
            # and to a cold boot); it is in ERROR and will be replaced. Try another VM.
            self._claimed(pool, memory_mb)
            attempts = self._attempts.get(agent_id, 0) + 1
            self._attempts[agent_id] = attempts
            why = f"a VM failed to resume ({exc})"
            if attempts < MAX_START_ATTEMPTS:
                self._requeue(agent_id, AgentStatus.SCHEDULED, f"{why}; trying another VM")
            else:
                self._attempts.pop(agent_id, None)
                self.engine.agents.fail(
                    agent_id,
                    f"{attempts} VMs failed to resume; last: {exc}",
                    before=AgentStatus.SCHEDULED,
                )
            return False
        self._claimed(pool, memory_mb)
        self._attempts.pop(agent_id, None)
        try:
            started = self.engine.agents.start(agent_id, vm.name)
        except Exception:  # a failed write (a full disk, say): the VM must not stay claimed
            self._give_back(agent_id, vm.name, holder)
            raise
        if not started:  # cancelled while its VM was being resumed
            self._give_back(agent_id, vm.name, holder)
            return False
        log.info(
            "agent %s placed on %s (%s, resumed from %s in %.0f ms)",
            agent_id,
            vm.name,
            vm.ip or "no IP yet",
            vm.from_state.value,
            vm.resume_ms,
        )
        if not task["exec_command"]:
            return False  # completion comes from `hvkube agent complete` or the API
        return self._exec(agent_id, pool, task, vm.name, vm.ip, vm.rdp_port, vm.mcp_endpoint)

    def _give_back(self, agent_id: int, vm_name: str, holder: str) -> None:
        """Release the VM claimed for an agent that will not run on it."""
        try:
            self.engine.release(vm_name, holder=holder)
        except Exception as exc:
            log.warning("agent %s: releasing %s failed: %s", agent_id, vm_name, exc)

    def _exec(
        self,
        agent_id: int,
        pool: str,
        row: dict[str, Any],
        vm_name: str,
        ip: str | None,
        rdp_port: int,
        mcp_endpoint: str | None,
    ) -> bool:
        agent_input = json.loads(row["input"]) if row["input"] else {}
        timeout_s = float(row["timeout_s"])
        env = agent_env(vm_name, ip, rdp_port, agent_input, agent_id, mcp_endpoint)
        last_check = [time.monotonic()]

        def should_stop() -> bool:
            if self._stop_exec.is_set():
                return True
            now = time.monotonic()
            if now - last_check[0] < 0.5:
                return False
            last_check[0] = now
            status = self.engine.store.records.agent_status(agent_id)
            return status != AgentStatus.RUNNING.value

        # Names only, stored with the pool and the agent; the values are the controller's.
        passed = [
            *env_names(self.engine.settings.exec_env),
            *self.engine.store.catalog.exec_env(pool),
            *(json.loads(row["exec_env"]) if row["exec_env"] else []),
        ]
        outcome = run_command(row["exec_command"], env, timeout_s, should_stop, passed=passed)
        # When the controller stops, the command is killed and the agent runs again later.
        if (
            outcome.stopped
            and self._stop_exec.is_set()
            and self._requeue(agent_id, AgentStatus.RUNNING, "requeued: the controller stopped")
        ):
            self.engine.release_agent_vm(agent_id, vm_name)
            return False
        result = outcome.result(timeout_s)
        status = AgentStatus.COMPLETED if result.success else AgentStatus.FAILED
        # What Engine.finish_agent does, without reading the agent back: end it only if it is
        # still running (it may have been cancelled or timed out meanwhile), then give its
        # VM back by the pool's policy either way.
        if self.engine.agents.end(agent_id, status, result, before=AgentStatus.RUNNING):
            log.info(
                "agent %s %s on %s (exit code %s, %.1f s)%s",
                agent_id,
                status.value,
                vm_name,
                result.exit_code,
                (result.duration_ms or 0) / 1000.0,
                f": {result.error}" if result.error else "",
            )
        # The holder names the agent: release refuses if the VM is no longer its own.
        with contextlib.suppress(HvkubeError):
            self.engine.release(vm_name, holder=agent_holder(agent_id))
        return True

    # -- timeouts ----------------------------------------------------------------------------

    def enforce_timeouts(self) -> list[int]:
        """Fail running agents past their timeout; their VMs go back by the pool's policy."""
        now = datetime.now(UTC)
        mine = self.active_agents()
        failed: list[int] = []
        running = self.engine.store.records.agents(AgentStatus.RUNNING.value, None, 100_000)
        for agent in running:
            if agent.host not in (None, self.engine.host):
                continue  # another host's controller watches it
            agent_id, started, timeout_s = agent.id, agent.started_at, agent.task.timeout_s
            exec_command = agent.task.exec_command
            if started is None:
                continue
            grace = EXEC_TIMEOUT_GRACE_S if (exec_command and agent_id in mine) else 0.0
            if (now - started).total_seconds() < timeout_s + grace:
                continue
            result = AgentResult(success=False, error=f"timed out after {timeout_s} s")
            try:
                self.engine.finish_agent(agent_id, AgentStatus.FAILED, result)
                failed.append(agent_id)
                log.info("agent %s failed: timed out after %s s", agent_id, timeout_s)
            except HvkubeError:
                pass
        return failed

    # -- stopping ----------------------------------------------------------------------------

    def drain(self, grace_s: float) -> None:
        """Start nothing new; let running work end for `grace_s`, then kill running commands
        (their agents are queued again) and wait for every worker to finish its steps."""
        self.dispatching = False
        deadline = time.monotonic() + grace_s
        while self.busy() and time.monotonic() < deadline:
            time.sleep(0.02)
        if self.busy():
            self._stop_exec.set()
        self.executor.shutdown(wait=True)
        self._prune()

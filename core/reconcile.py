"""Reconcile: make the store and the host agree after a crash or outside changes.

It works on one host: the engine's own. Another host's rows are that host's business.

Half-done steps whose process is gone are finished or rolled back; VMs
deleted outside hvkube are marked MISSING; VMs on the host that carry this
store's ownership mark but that the store does not know are reported as
orphans (or removed on request); VMs with a pool's name that this store did
not make are reported as foreign and never touched; VMs still held by agents
that have ended are released. Every VM is matched by the hypervisor's id.
"""

from __future__ import annotations

import contextlib
import re
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from core.backends.base import VMRef
from core.errors import Conflict, HvkubeError
from core.ledger import state_from_host
from core.models import VM, Agent, AgentStatus, HostState, HostVM, VMState
from core.probes import poll
from core.store.leases import active_holder, controller_lease

if TYPE_CHECKING:
    from core.engine import Engine


class ReconcileReport(BaseModel):
    checked: int = 0
    fixed: list[str] = Field(default_factory=list)
    missing: list[str] = Field(default_factory=list)
    orphans: list[str] = Field(default_factory=list)
    orphans_removed: list[str] = Field(default_factory=list)
    foreign: list[str] = Field(default_factory=list)
    busy: list[str] = Field(default_factory=list)
    agents_failed: list[int] = Field(default_factory=list)
    agents_requeued: list[int] = Field(default_factory=list)
    errors: list[str] = Field(default_factory=list)

    @property
    def consistent(self) -> bool:
        return not self.errors and not self.orphans


def reconcile(
    engine: Engine, remove_orphans: bool = False, *, while_running: bool = False
) -> ReconcileReport:
    """`while_running`: called by a controller that has steps and agents in flight in this
    very process (to settle what another, dead process left): its own transitional VMs
    count as busy, and agents are left alone."""
    engine.ledger.guard("reconcile")
    report = ReconcileReport()
    me = engine.owner
    host_vms = {vm.id: vm for vm in engine.backend.list_vms()}

    with engine.ledger.step("reconcile", None, None):
        for vm in engine.store.records.vms(host=engine.host):
            report.checked += 1
            owner, op_kind = engine.store.records.vm_operation(vm.name)
            busy = vm.state.transitional and (owner != me or while_running)
            if busy and engine.owner_alive(owner):
                report.busy.append(vm.name)
                continue
            try:
                host = host_vms.get(vm.host_id) if vm.host_id else None
                note = _settle(engine, vm, op_kind, host)
            except HvkubeError as exc:
                engine.ledger.fail(vm.name, exc)
                report.errors.append(f"{vm.name}: {exc}")
                continue
            if note == "missing":
                report.missing.append(vm.name)
            elif note:
                report.fixed.append(f"{vm.name}: {note}")

        if not while_running:
            _settle_agents(engine, report)

        known = {vm.host_id for vm in engine.list_vms() if vm.host_id}
        pools = [p.name for p in engine.list_pools()]
        for found in engine.backend.list_vms():
            if found.id in known:
                continue
            shown = f"{found.name} ({found.id})"
            if found.owner == engine.store_id:
                if remove_orphans:
                    try:
                        engine.backend.remove(VMRef(found.name, found.id))
                        report.orphans_removed.append(shown)
                    except HvkubeError as exc:
                        report.errors.append(f"{found.name}: {exc}")
                        report.orphans.append(shown)
                else:
                    report.orphans.append(shown)
            elif any(
                re.fullmatch(re.escape(p) + r"-\d{3,}", found.name, re.IGNORECASE) for p in pools
            ):
                report.foreign.append(shown)
    return report


def _settle(engine: Engine, vm: VM, op_kind: str | None, host: HostVM | None) -> str | None:
    """Bring one VM row in line with the host. Returns what was done, if anything."""
    name = vm.name
    backend = engine.backend
    if vm.state is VMState.PROVISIONING:
        # Roll back: a half-built VM is removed; provisioning builds it anew. Without a
        # recorded id, only a VM of that name carrying this store's mark can be the one.
        if not vm.host_id:
            for made in backend.find_vms(name):
                if made.owner == engine.store_id and not _id_known(engine, made.id):
                    backend.remove(VMRef(made.name, made.id))
        engine.remove_from_host(vm)
        engine.ledger.forget(name)
        return "half-provisioned VM rolled back"
    if vm.state is VMState.DELETING:
        engine.remove_from_host(vm)
        engine.ledger.forget(name)
        return "deletion finished"
    if not vm.host_id and vm.backend is not None and vm.state in {VMState.ERROR, VMState.MISSING}:
        return None  # never built (its build failed before Hyper-V made it): nothing to settle
    if not vm.host_id:
        raise Conflict(
            "no recorded hypervisor id (made by an hvkube that did not record them), so it "
            "cannot be told from another VM of that name; hvkube leaves it alone: check it is "
            "hvkube's, remove it in Hyper-V Manager and let the pool build a new one"
        )
    ref = VMRef(name, vm.host_id)
    if host is None:
        if vm.state is VMState.MISSING:
            return None
        engine.ledger.finish(
            name,
            VMState.MISSING,
            holder=None,
            agent_id=None,
            error="the VM is no longer on the host (deleted outside hvkube?)",
        )
        return "missing"
    if host.state is HostState.UNKNOWN:
        engine.ledger.finish(
            name, VMState.ERROR, raw_state=host.raw_state, error="unknown host state"
        )
        return f"host reports unknown state {host.raw_state!r}"
    if host.state.transitional:
        host = _wait_until_settled(engine, ref)
        if host is None or host.state.transitional:
            return None  # the host is still working on it; look again next time

    mapped = state_from_host(host)
    assert mapped is not None
    if vm.state is VMState.UNKNOWN:
        # Its host was down: whatever ran on it is over; a VM left running goes back to clean.
        if mapped in {VMState.RUNNING, VMState.PAUSED}:
            engine.restore_clean(vm)
            mapped = _mapped_now(engine, ref, VMState.SAVED)
        engine.ledger.finish(name, mapped, holder=None, agent_id=None, error=None, raw_state=None)
        return f"its host is back: {mapped.value}"
    held_by_agent = vm.agent_id is not None and _agent_active(engine, vm.agent_id)

    if vm.state is VMState.RESUMING and op_kind == "acquire" and not held_by_agent:
        # The process that claimed it died before handing it over: nobody has it.
        if mapped in {VMState.RUNNING, VMState.PAUSED}:
            engine.restore_clean(vm)
            mapped = _mapped_now(engine, ref, VMState.SAVED)
        engine.ledger.finish(name, mapped, holder=None, agent_id=None, error=None)
        return f"interrupted acquire rolled back ({mapped.value})"
    if vm.state is VMState.RESETTING:
        engine.restore_clean(vm)
        final = _mapped_now(engine, ref, VMState.SAVED)
        engine.ledger.finish(name, final, holder=None, agent_id=None, error=None)
        return "interrupted reset finished"
    if vm.state is VMState.SAVING:
        if mapped in {VMState.RUNNING, VMState.PAUSED}:
            backend.save(ref)
        release = op_kind == "release"
        fields = {"holder": None, "agent_id": None} if release else {}
        engine.ledger.finish(name, _mapped_now(engine, ref, VMState.SAVED), error=None, **fields)
        return "interrupted save finished"
    if vm.state.transitional:
        engine.ledger.finish(name, mapped, error=None)
        return f"interrupted {vm.state.value} settled as {mapped.value}"
    if vm.state in {VMState.MISSING, VMState.ERROR} and mapped is not None:
        if vm.state is VMState.MISSING:
            engine.ledger.finish(name, mapped, error=None, raw_state=None)
            return f"found again on the host ({mapped.value})"
        return None
    if mapped != vm.state:
        engine.ledger.finish(name, mapped, raw_state=None)
        return f"store said {vm.state.value}, host says {mapped.value}"
    return None


def _id_known(engine: Engine, host_id: str) -> bool:
    return engine.store.records.vm_with_host_id(host_id) is not None


def _wait_until_settled(engine: Engine, ref: VMRef) -> HostVM | None:
    """A transitional host state ends by itself (the hypervisor finishes the operation
    whoever asked for it): wait for that, within the operation timeout."""
    seen: list[HostVM | None] = []

    def settled() -> bool:
        vm = engine.backend.get_vm(ref)
        seen.append(vm)
        return vm is None or not vm.state.transitional

    with contextlib.suppress(HvkubeError):
        poll(settled, min(120.0, engine.settings.op_timeout_s), "a settled host state", ref.name)
    return seen[-1] if seen else None


def _mapped_now(engine: Engine, ref: VMRef, default: VMState) -> VMState:
    host = engine.backend.get_vm(ref)
    return (state_from_host(host) if host else None) or default


def _agent_active(engine: Engine, agent_id: int) -> bool:
    agent = engine.store.records.agent(agent_id)
    return agent is not None and not agent.status.finished


def _settle_agents(engine: Engine, report: ReconcileReport) -> None:
    records = engine.store.records
    # Every loop below reads its rows in full before writing: a write while a read is still
    # open fails at once ("database is locked", not retried) when another process committed
    # meanwhile.
    # While another live process runs the controller, agents on their way to a VM or running
    # a command are its business, not ours.
    lease = active_holder(engine.store, controller_lease(engine.host), engine.host)
    controller_elsewhere = lease is not None and lease.owner != engine.owner
    here = engine.host

    def mine(agent: Agent) -> bool:
        return agent.host in (None, here)

    def end(agent_id: int, status: str, why: str) -> bool:
        changed = engine.agents.fail(agent_id, why, before=AgentStatus(status))
        if changed:
            report.agents_failed.append(agent_id)
        return changed

    if not controller_elsewhere:
        # Scheduled agents had not started: they go back to the queue (their VM, if one was
        # already claimed, is released below).
        for agent in records.agents(AgentStatus.SCHEDULED.value, None, 100_000):
            if not mine(agent):
                continue
            why = "queued again: the controller stopped before it started"
            if engine.agents.requeue(agent.id, AgentStatus.SCHEDULED, why):
                report.agents_requeued.append(agent.id)
        # A command the controller ran died with it: its outcome is unknown.
        for agent in records.agents(AgentStatus.RUNNING.value, None, 100_000):
            if agent.task.exec_command is None or not mine(agent):
                continue
            end(
                agent.id,
                AgentStatus.RUNNING.value,
                "the controller stopped while the agent's command ran; its outcome is unknown",
            )
    # Running agents whose VM is no longer theirs cannot go on.
    for agent in records.agents(AgentStatus.RUNNING.value, None, 100_000):
        if not mine(agent):
            continue
        vm_row = records.vm(agent.vm) if agent.vm else None
        if vm_row is None or vm_row.agent_id != agent.id:
            end(agent.id, AgentStatus.RUNNING.value, "its VM was lost")
    # VMs held for agents that have ended, or went back to the queue, return by their pool's
    # policy; so do VMs claimed for a scheduled agent that is running elsewhere.
    for name, state, agent_id, holder, op_owner in records.vms_held_for_agents(here):
        owner_agent = records.agent(agent_id)
        status = owner_agent.status if owner_agent is not None else None
        on = owner_agent.vm if owner_agent is not None else None
        keep = status is AgentStatus.RUNNING and on == name
        keep = keep or (status is AgentStatus.SCHEDULED and on in (None, name))
        if keep:
            continue
        if (
            VMState(state).transitional
            and op_owner != engine.owner
            and engine.owner_alive(op_owner)
        ):
            report.busy.append(name)
            continue
        try:
            engine.release(name, holder=holder)
            report.fixed.append(f"{name}: released from agent {agent_id}")
        except HvkubeError as exc:
            report.errors.append(f"{name}: {exc}")

"""The invariants hvkube promises after any crash, written once and used by every trial and test.

`check_invariants` compares the store with the host and with what the workloads wrote in
their journals (see `journal.py`), and returns one line per violation: an empty list is
a pass.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from core.engine import Engine
from core.ledger import state_from_host
from core.models import AgentStatus, VMState
from core.reconcile import ReconcileReport

from .journal import Journal


def check_store_and_host(
    engine: Engine,
    report: ReconcileReport | None = None,
    sim: Any = None,
    errors_allowed: bool = True,
) -> list[str]:
    """Store and host agree: every VM on each side is on the other (or reported), no VM is in a
    transitional state on either side, states match, and no disk is left behind."""
    out: list[str] = []
    # Matched by the hypervisor's id: a VM of the same name with another id is not ours.
    store = {vm.name: vm for vm in engine.list_vms()}
    host = {vm.id: vm for vm in engine.backend.list_vms()}
    reported = [*(report.orphans if report else []), *(report.foreign if report else [])]
    orphans_reported = {item.rsplit("(", 1)[-1].rstrip(")") for item in reported}

    for name, vm in sorted(store.items()):
        on_host = host.get(vm.host_id or "")
        if vm.state.transitional:
            out.append(f"{name}: left in transitional state {vm.state.value}")
        if on_host is None:
            if vm.state is not VMState.MISSING:
                out.append(f"{name}: in the store ({vm.state.value}) but not on the host")
            continue
        if vm.state is VMState.MISSING:
            out.append(f"{name}: marked missing but is on the host ({on_host.raw_state})")
            continue
        if on_host.state.transitional:
            out.append(f"{name}: the host still shows {on_host.raw_state}")
            continue
        if vm.state is VMState.ERROR:
            if not vm.error:
                out.append(f"{name}: in error without a reason")
            elif not errors_allowed:
                out.append(f"{name}: in error with no fault injected: {vm.error}")
            continue
        mapped = state_from_host(on_host)
        if mapped is not vm.state:
            out.append(f"{name}: store says {vm.state.value}, host says {on_host.raw_state}")
    known = {vm.host_id for vm in store.values()}
    for vm_id in sorted(set(host) - known):
        if vm_id not in orphans_reported:
            shown = f"{host[vm_id].name} ({vm_id})"
            out.append(f"{shown}: on the host but neither in the store nor reported")

    from core.backends.sim import SimHost

    # The simulated host's disks (the engine's own, or the one behind the fake PowerShell host).
    sim = sim if sim is not None else engine.backend
    if isinstance(sim, SimHost):
        raw = sim.raw_state()
        used = {SimHost._disk_key(vm["disk"]) for vm in raw["vms"].values()}
        for disk in sorted(set(raw["disks"]) - used):
            out.append(f"disk {disk}: left on the host with no VM")
    return out


def check_holders_and_agents(engine: Engine) -> list[str]:
    """No VM held for an agent that has ended, no running agent without its VM, and no holder
    or agent holding two VMs."""
    out: list[str] = []
    vms = engine.list_vms()
    agents = {a.id: a for a in engine.list_agents(limit=1_000_000)}
    for vm in vms:
        if vm.agent_id is not None and vm.holder is None:
            out.append(f"{vm.name}: tied to agent {vm.agent_id} but held by nobody")
        if vm.agent_id is None or vm.holder is None:
            continue
        agent = agents.get(vm.agent_id)
        if agent is None:
            out.append(f"{vm.name}: held for agent {vm.agent_id}, which does not exist")
        elif agent.status.finished:
            out.append(f"{vm.name}: held for agent {agent.id}, which has {agent.status.value}")
    for holder, n in Counter(vm.holder for vm in vms if vm.holder).items():
        if n > 1:
            out.append(f"holder {holder} holds {n} VMs at once")
    for agent_id, n in Counter(vm.agent_id for vm in vms if vm.agent_id is not None).items():
        if n > 1:
            out.append(f"agent {agent_id} holds {n} VMs at once")
    by_name = {vm.name: vm for vm in vms}
    for agent in agents.values():
        if agent.status in {AgentStatus.RUNNING, AgentStatus.SCHEDULED}:
            vm = by_name.get(agent.vm or "")
            if vm is None or vm.agent_id != agent.id:
                out.append(f"agent {agent.id} is {agent.status.value} without its VM {agent.vm}")
        if agent.status.finished and agent.finished_at is None:
            out.append(f"agent {agent.id} ended without an end time")
    return out


def check_journal(engine: Engine, journal: Journal) -> list[str]:
    """What the workloads saw: no agent lost or duplicated, every claim held by one holder at
    a time, and no claim taken away from its holder."""
    out: list[str] = list(journal.lost)
    agents = engine.list_agents(limit=1_000_000)
    by_id = {a.id: a for a in agents}
    for key, n in Counter(a.task.workflow for a in agents).items():
        if n > 1:
            out.append(f"agent {key!r} was created {n} times")
    for key, agent_id in journal.submitted.items():
        found = by_id.get(agent_id)
        if found is None:
            out.append(f"agent {key!r} (id {agent_id}) was submitted and then lost")
        elif found.task.workflow != key:
            out.append(f"agent id {agent_id} is {found.task.workflow!r}, was submitted as {key!r}")
    for agent in agents:
        if agent.task.workflow not in journal.intents:
            out.append(f"agent {agent.id} ({agent.task.workflow!r}) was never submitted")
    # One VM, one holder: the spans in which holders said they held a VM never overlap.
    for vm, spans in journal.claim_spans().items():
        spans.sort()
        latest_end, latest_holder = float("-inf"), ""
        for start, end, holder in spans:
            if start < latest_end and holder != latest_holder:
                out.append(f"{vm}: held by {latest_holder} and {holder} at once")
            if end > latest_end:
                latest_end, latest_holder = end, holder
    # A claim still open when its worker died must still be that holder's (or released).
    store = {vm.name: vm for vm in engine.list_vms()}
    for vm_name, holder in journal.open_claims().items():
        vm = store.get(vm_name)
        if vm is not None and vm.holder not in (None, holder):
            out.append(f"{vm_name}: claimed by {holder}, now held by {vm.holder}")
    return out


def check_invariants(
    engine: Engine,
    journal: Journal | None = None,
    report: ReconcileReport | None = None,
    sim: Any = None,
    errors_allowed: bool = True,
) -> list[str]:
    """Every invariant at once; one line per violation. `sim`: the simulated host behind a
    fake PowerShell host, so that its disks are checked too. `errors_allowed=False` where no
    fault was injected: a crash alone must never leave a VM broken."""
    out = check_store_and_host(engine, report, sim, errors_allowed)
    out += check_holders_and_agents(engine)
    if journal is not None:
        out += check_journal(engine, journal)
    return out

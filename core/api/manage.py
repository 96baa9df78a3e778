"""Routes for admin tokens: templates, pools, VM deletion, reconcile, agents and events.

Each calls the engine function the CLI calls, so the rules, errors and read-only refusals
are the CLI's.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path as FastPath
from fastapi import Query

from core.api.common import AgentId, PoolName, State, TemplateName, VMName, admin
from core.api.errors import Forbidden
from core.api.schemas import (
    AgentComplete,
    AgentOut,
    AgentSubmit,
    EventPage,
    Message,
    PoolCreate,
    PoolEdit,
    PoolOut,
    PoolScale,
    ProvisionRequest,
    TemplateCreate,
    TemplateOut,
    VMActionOut,
)
from core.api.state import ApiState, run
from core.engine import Engine
from core.errors import BackendError
from core.models import AgentResult, AgentStatus, Host
from core.probes import probe_from_text
from core.readmodel import pool_summaries, pool_summary
from core.reconcile import ReconcileReport

# -- templates ---------------------------------------------------------------------------------


def _template_out(engine: Engine, name: str) -> TemplateOut:
    return TemplateOut(**engine.get_template(name).model_dump())


def _create_template(engine: Engine, body: TemplateCreate) -> TemplateOut:
    tpl = engine.create_template(
        body.name,
        body.disk_path,
        memory_mb=body.memory_mb,
        cpus=body.cpus,
        gpu=body.gpu,
        software=body.software,
        rdp_port=body.rdp_port,
        mcp_endpoint=body.mcp_endpoint,
        probe=probe_from_text(body.probe),
    )
    return TemplateOut(**tpl.model_dump())


@admin.get("/templates", response_model=list[TemplateOut], summary="list templates")
async def list_templates(st: State) -> list[TemplateOut]:
    found = await run(st.engine.list_templates)
    return [TemplateOut(**t.model_dump()) for t in found]


@admin.post(
    "/templates", response_model=TemplateOut, status_code=201, summary="register a template"
)
async def create_template(body: TemplateCreate, st: State) -> TemplateOut:
    return await run(_create_template, st.engine, body)


@admin.get("/templates/{name}", response_model=TemplateOut, summary="one template")
async def get_template(name: TemplateName, st: State) -> TemplateOut:
    return await run(_template_out, st.engine, name)


@admin.delete("/templates/{name}", response_model=Message, summary="delete an unused template")
async def delete_template(name: TemplateName, st: State) -> Message:
    await run(st.engine.delete_template, name)
    return Message(message=f"Template '{name}' deleted")


# -- pools -------------------------------------------------------------------------------------


def _pool_out(engine: Engine, name: str) -> PoolOut:
    return PoolOut(**pool_summary(engine, name).model_dump())


def _create_pool(engine: Engine, body: PoolCreate) -> PoolOut:
    engine.create_pool(
        body.name,
        body.template,
        body.count,
        warm=body.warm,
        hot=body.hot,
        release=body.release,
        max_per_host=body.max_per_host,
        exec_env=body.exec_env,
    )
    return _pool_out(engine, body.name)


def _edit_pool(engine: Engine, name: str, body: PoolEdit) -> PoolOut:
    engine.update_pool(
        name,
        count=body.count,
        warm=body.warm,
        hot=body.hot,
        release=body.release,
        exec_env=body.exec_env,
    )
    return _pool_out(engine, name)


def _built(report: Any) -> list[str]:
    """The VMs a provisioning run built; an error naming the failures when any failed."""
    if report.failed:
        failed = "; ".join(f"{vm}: {why}" for vm, why in sorted(report.failed.items())[:5])
        raise BackendError(
            f"pool {report.pool}: {len(report.created)} of {report.requested} VM(s) built; "
            f"failed: {failed}"
        )
    return sorted(report.created)


def _provision(engine: Engine, name: str, count: int | None) -> list[str]:
    if count is None:
        return _built(engine.provision_pool(name))
    have = len(engine.list_vms(pool=name))
    return _built(engine.scale_pool(name, have + count))


@admin.get("/pools", response_model=list[PoolOut], summary="list pools with counts per state")
async def list_pools(st: State) -> list[PoolOut]:
    summaries = await run(pool_summaries, st.engine)  # one hand-off to a thread, not one per pool
    return [PoolOut(**s.model_dump()) for s in summaries]


@admin.post("/pools", response_model=PoolOut, status_code=201, summary="declare a pool")
async def create_pool(body: PoolCreate, st: State) -> PoolOut:
    return await run(_create_pool, st.engine, body)


@admin.get("/pools/{name}", response_model=PoolOut, summary="one pool with counts per state")
async def get_pool(name: PoolName, st: State) -> PoolOut:
    return await run(_pool_out, st.engine, name)


@admin.patch("/pools/{name}", response_model=PoolOut, summary="change counts or release policy")
async def edit_pool(name: PoolName, body: PoolEdit, st: State) -> PoolOut:
    return await run(_edit_pool, st.engine, name, body)


@admin.delete("/pools/{name}", response_model=Message, summary="delete a pool")
async def delete_pool(
    name: PoolName,
    st: State,
    with_vms: Annotated[bool, Query(description="also delete its VMs and their files")] = False,
) -> Message:
    removed = await run(st.engine.delete_pool, name, with_vms)
    return Message(message=f"Pool '{name}' deleted ({removed} VM(s) removed)")


@admin.post(
    "/pools/{name}/scale",
    response_model=list[str],
    summary="change the pool's size; answers the VMs built",
)
async def scale_pool(name: PoolName, body: PoolScale, st: State) -> list[str]:
    report = await run(st.engine.scale_pool, name, body.count)
    return _built(report)


@admin.post(
    "/pools/{name}/provision",
    response_model=list[str],
    summary="build the pool's missing VMs, or `count` more; answers the VMs built",
)
async def provision_pool(
    name: PoolName, st: State, body: ProvisionRequest | None = None
) -> list[str]:
    return await run(_provision, st.engine, name, body.count if body else None)


@admin.post(
    "/pools/{name}/prepare",
    response_model=Message,
    summary="build the pool's missing VMs, each booted, checkpointed clean and parked",
)
async def prepare_pool(name: PoolName, st: State) -> Message:
    built = await run(_provision, st.engine, name, None)
    return Message(message=f"Prepared {len(built)} VMs")


# -- VMs ---------------------------------------------------------------------------------------


@admin.delete("/vms/{name}", response_model=Message, summary="delete a VM with its disk")
async def delete_vm(
    name: VMName,
    st: State,
    force: Annotated[bool, Query(description="even when it is held")] = False,
) -> Message:
    vm = await run(st.engine.get_vm, name)
    await run(st.engine.delete_vm, name, force=force)
    if vm.holder is not None:
        await run(st.leases.drop, vm.holder)
    return Message(message=f"VM '{name}' deleted")


def _prepare_vm(st: ApiState, name: str) -> VMActionOut:
    vm = st.engine.reset_vm(name)
    return VMActionOut(
        **st.vm_out(vm).model_dump(), message=f"VM '{name}' prepared (reset to clean, saved)"
    )


@admin.post(
    "/vms/{name}/prepare",
    response_model=VMActionOut,
    summary="make a VM ready for a fast resume: its clean checkpoint restored (as reset)",
)
async def prepare_vm(name: VMName, st: State) -> VMActionOut:
    out = await run(_prepare_vm, st, name)
    st.waiters.notify(out.pool)
    return out


# -- hosts -------------------------------------------------------------------------------------


@admin.get("/hosts", response_model=list[Host], summary="the hosts of the fleet (as `host list`)")
async def list_hosts(st: State) -> list[Host]:
    return await run(st.engine.list_hosts)


@admin.get("/hosts/{name}", response_model=Host, summary="one host (as `host show`)")
async def get_host(name: Annotated[str, FastPath(min_length=1, max_length=64)], st: State) -> Host:
    return await run(st.engine.get_host, name)


# -- reconcile ---------------------------------------------------------------------------------


class ReconcileOut(ReconcileReport):
    message: str


def _reconcile(engine: Engine, remove_orphans: bool) -> ReconcileOut:
    report = engine.reconcile(remove_orphans=remove_orphans)
    text = "store and host agree" if report.consistent else "reconciled; see the lists"
    return ReconcileOut(**report.model_dump(), message=f"Reconciled state with the host: {text}")


@admin.post(
    "/reconcile",
    response_model=ReconcileOut,
    summary="make store and host agree (as `hvkube reconcile`)",
)
async def reconcile(
    st: State,
    remove_orphans: Annotated[
        bool, Query(description="delete host VMs of our pools not in the store")
    ] = False,
) -> ReconcileOut:
    return await run(_reconcile, st.engine, remove_orphans)


# -- agents and events -------------------------------------------------------------------------


@admin.post("/agents", response_model=AgentOut, status_code=201, summary="queue an agent")
async def submit_agent(body: AgentSubmit, st: State) -> AgentOut:
    if body.exec_command is not None and not st.allow_exec:
        raise Forbidden(
            "exec_command",
            "exec_command is refused by this server; start it with --allow-exec to accept it",
        )
    return await run(
        st.engine.submit_agent,
        body.pool,
        body.workflow,
        body.input,
        timeout_s=body.timeout_s,
        requires_gpu=body.requires_gpu,
        exec_command=body.exec_command,
        exec_env=body.exec_env,
    )


@admin.get("/agents", response_model=list[AgentOut], summary="agents, newest first")
async def list_agents(
    st: State,
    status: AgentStatus | None = None,
    pool: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> list[AgentOut]:
    return await run(st.engine.list_agents, status, pool, limit)


@admin.get("/agents/{agent_id}", response_model=AgentOut, summary="one agent with its result")
async def get_agent(agent_id: AgentId, st: State) -> AgentOut:
    return await run(st.engine.get_agent, agent_id)


@admin.post(
    "/agents/{agent_id}/complete",
    response_model=AgentOut,
    summary="report an agent's result (its VM is released by pool policy)",
)
async def complete_agent(agent_id: AgentId, body: AgentComplete, st: State) -> AgentOut:
    result = AgentResult(
        success=body.success,
        output=body.output,
        error=body.error,
        exit_code=body.exit_code,
        duration_ms=body.duration_ms,
    )
    status = AgentStatus.COMPLETED if body.success else AgentStatus.FAILED
    agent = await run(st.engine.finish_agent, agent_id, status, result)
    st.waiters.notify(agent.pool)
    return agent


@admin.post(
    "/agents/{agent_id}/cancel",
    response_model=AgentOut,
    summary="cancel an agent (its VM is released by pool policy)",
)
async def cancel_agent(agent_id: AgentId, st: State) -> AgentOut:
    agent = await run(st.engine.cancel_agent, agent_id)
    st.waiters.notify(agent.pool)
    return agent


def _events(
    engine: Engine,
    since: int | None,
    limit: int,
    vm: str | None,
    pool: str | None,
    kind: str | None,
) -> EventPage:
    events = engine.store.records.events_after(since, limit, vm, pool, kind)
    last = events[-1].id if events else since
    return EventPage(events=events, last_id=last)


@admin.get("/events", response_model=EventPage, summary="lifecycle events, oldest first")
async def events(
    st: State,
    since: Annotated[
        int | None, Query(ge=0, le=2**62, description="only events with a larger id")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    vm: Annotated[str | None, Query(max_length=100)] = None,
    pool: Annotated[str | None, Query(max_length=64)] = None,
    kind: Annotated[str | None, Query(max_length=32)] = None,
) -> EventPage:
    return await run(_events, st.engine, since, limit, vm, pool, kind)

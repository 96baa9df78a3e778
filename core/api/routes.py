"""Routes any valid token may call: acquire, leases, release, and the caller's VMs.

An agent token sees and drives only the VMs its leases hold; an admin token, every VM.
"""

from __future__ import annotations

import time
from typing import Annotated

import anyio
from fastapi import Query, Request, Response

from core.api.common import NO_VM, LeaseId, State, VMName, Who, v1
from core.api.errors import FieldError, Forbidden
from core.api.leases import new_lease_id
from core.api.schemas import (
    AcquireRequest,
    AcquireResponse,
    Lease,
    ReleaseRequest,
    ReleaseResponse,
    RenewRequest,
    ResumeOut,
    VMActionOut,
    VMOut,
)
from core.api.state import ApiState, run
from core.models import VMState
from core.names import NAME_PATTERN
from core.tokens import Principal


def _renew(st: ApiState, who: Principal, lease_id: str, seconds: float | None) -> Lease:
    st.own_lease(who, lease_id)
    return st.leases.renew(lease_id, seconds)


def _get_lease(st: ApiState, who: Principal, lease_id: str) -> Lease:
    st.own_lease(who, lease_id)
    return st.leases.get(lease_id)


@v1.post(
    "/acquire",
    response_model=AcquireResponse,
    responses=NO_VM,
    summary="take a ready VM from a pool, resumed, under a lease (or none: lease=false)",
)
async def acquire(body: AcquireRequest, st: State, who: Who, request: Request) -> AcquireResponse:
    started = time.perf_counter()
    pool = body.pool_to_use()
    if not body.lease and st.require_lease:
        raise Forbidden(
            "lease", "this server requires leases (--require-lease); acquire with a lease"
        )
    seconds = body.lease_seconds or st.lease_seconds
    lease_id = new_lease_id(leased=body.lease)
    # The lease row comes first; until the claim is answered it lasts the wait plus a lease.
    expiry_s = body.wait_seconds + seconds + 60.0
    try:
        vm, lease = await st.acquire_waiting(
            pool,
            lease_id,
            body.wait_seconds,
            expiry_s,
            seconds,
            request.is_disconnected,
            who.token_id,
        )
    except BaseException:
        # Any failure after the claim (a full disk, a bug, a client gone) gives the VM back.
        with anyio.CancelScope(shield=True):
            await run(st.leases.abandon, lease_id)
        raise
    st.metrics.observe_acquire(vm.from_state, time.perf_counter() - started, vm.resume_ms)
    return AcquireResponse(
        **vm.model_dump(exclude={"mcp_endpoint"}),
        mcp_endpoint=vm.mcp_endpoint or "",
        lease_id=lease_id if body.lease else None,
        lease_expires_at=lease.expires_at if body.lease else None,
        lease_seconds=seconds if body.lease else None,
    )


@v1.get("/leases/{lease_id}", response_model=Lease, summary="one lease")
async def get_lease(lease_id: LeaseId, st: State, who: Who) -> Lease:
    return await run(_get_lease, st, who, lease_id)


@v1.post(
    "/leases/{lease_id}/renew",
    response_model=Lease,
    summary="extend a lease (409 lease_expired or lease_lost once it no longer holds its VM)",
)
async def renew_lease(
    lease_id: LeaseId, st: State, who: Who, body: RenewRequest | None = None
) -> Lease:
    return await run(_renew, st, who, lease_id, body.lease_seconds if body else None)


@v1.post(
    "/vms/{name}/release",
    response_model=ReleaseResponse,
    summary="give a VM back: reset, save or destroy (default: the pool's policy)",
)
async def release(
    name: VMName, st: State, who: Who, body: ReleaseRequest | None = None
) -> ReleaseResponse:
    body = body or ReleaseRequest()
    if body.lease_id is not None and len(body.lease_id) > 64:
        raise FieldError("lease_id", "lease_id is longer than any lease id")
    out, pool = await run(st.release, name, body.chosen(), body.lease_id, who)
    st.waiters.notify(pool)
    message = f"VM '{name}' destroyed" if out is None else f"VM '{name}' released ({out.state})"
    return ReleaseResponse(name=name, destroyed=out is None, vm=out, message=message)


@v1.get("/vms", response_model=list[VMOut], summary="list VMs (an agent token: its own)")
async def list_vms(
    st: State,
    who: Who,
    pool: Annotated[
        str | None, Query(min_length=1, max_length=48, pattern=f"^{NAME_PATTERN}$")
    ] = None,
    state: VMState | None = None,
) -> list[VMOut]:
    return await run(st.list_vms, who, pool, state)


@v1.get("/vms/{name}", response_model=VMOut, summary="one VM")
async def get_vm(name: VMName, st: State, who: Who) -> VMOut:
    return await run(st.get_vm, who, name)


@v1.get(
    "/vms/{name}/screenshot",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}, "description": "the VM's screen as PNG"}},
    summary="the VM's screen (PNG)",
)
async def screenshot(name: VMName, st: State, who: Who) -> Response:
    await run(st.own_vm, who, name)
    data = await run(st.engine.screenshot, name)
    return Response(content=data, media_type="image/png")


def _resume(st: ApiState, who: Principal, name: str) -> ResumeOut:
    st.own_vm(who, name)
    started = time.perf_counter()
    vm = st.engine.resume_vm(name)
    out = st.vm_out(vm)
    took = vm.last_resume_ms if vm.last_resume_ms is not None else 0.0
    took = took or (time.perf_counter() - started) * 1000.0
    return ResumeOut(
        vm_id=vm.name,
        vm_name=vm.name,
        ip_address=vm.ip or "",
        mcp_endpoint=out.mcp_endpoint or "",
        resume_time_ms=max(0, round(took)),
        message=f"VM '{name}' resumed",
        vm=out,
    )


@v1.post(
    "/vms/{name}/resume",
    response_model=ResumeOut,
    summary="start or resume a VM (falls back to the clean checkpoint)",
)
async def resume_vm(name: VMName, st: State, who: Who) -> ResumeOut:
    out = await run(_resume, st, who, name)
    st.waiters.notify(out.vm.pool)
    return out


def _act(
    st: ApiState, who: Principal, name: str, method: str, done: str, **kw: bool
) -> VMActionOut:
    st.own_vm(who, name)
    vm = getattr(st.engine, method)(name, **kw)
    return VMActionOut(**st.vm_out(vm).model_dump(), message=f"VM '{name}' {done}")


def _vm_action(method: str, done: str, summary: str) -> None:
    async def action(name: VMName, st: State, who: Who) -> VMActionOut:
        out = await run(_act, st, who, name, method, done)
        st.waiters.notify(out.pool)
        return out

    verb = method.removesuffix("_vm")
    action.__name__ = f"{verb}_vm"
    v1.post(f"/vms/{{name}}/{verb}", response_model=VMActionOut, summary=summary)(action)


_vm_action("save_vm", "saved", "save a VM's memory to disk (warm)")
_vm_action("pause_vm", "paused", "pause a VM, keeping its memory in RAM (hot)")
_vm_action("reset_vm", "reset to clean checkpoint", "restore a VM's clean checkpoint (ends Saved)")


@v1.post("/vms/{name}/stop", response_model=VMActionOut, summary="shut a VM down")
async def stop_vm(
    name: VMName,
    st: State,
    who: Who,
    force: Annotated[bool, Query(description="turn it off, from any state")] = False,
) -> VMActionOut:
    out = await run(_act, st, who, name, "stop_vm", "stopped", force=force)
    st.waiters.notify(out.pool)
    return out

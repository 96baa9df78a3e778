"""The HTTP API over the engine (FastAPI): `make_api(settings)` builds the app.

Engine calls block (database, hypervisor), so each runs in the worker-thread
pool; a waiting acquire holds no thread while it waits: it retries a
non-blocking claim between asynchronous sleeps, and is woken early when a VM
of its pool is released through this server.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated, Any, NoReturn, TypeVar

import anyio.to_thread
from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request, Response, Security
from fastapi.security import HTTPBearer

from core.api import errors, recordings
from core.api.auth import BearerAuth, load_or_create_token, token_path
from core.api.errors import ClientGone, ErrorBodyDoc, FieldError, Forbidden, LeaseExpired
from core.api.leases import ApiLeases, new_lease_id
from core.api.limits import BodyLimit
from core.api.schemas import (
    MAX_BODY_BYTES,
    AcquireRequest,
    AcquireResponse,
    AgentComplete,
    AgentOut,
    AgentSubmit,
    EventPage,
    Health,
    Lease,
    PoolOut,
    ReleaseRequest,
    ReleaseResponse,
    RenewRequest,
    VMOut,
)
from core.engine import Engine
from core.errors import NoVMAvailable
from core.models import VM, AcquiredVM, AgentResult, AgentStatus, ReleasePolicy, VMState
from core.names import NAME_PATTERN
from core.readmodel import pool_summaries, pool_summary
from core.settings import Settings

log = logging.getLogger("hvkube.api")
T = TypeVar("T")
# A waiting acquire is woken at once by a release through this server; it also polls,
# for VMs freed by other processes, first after POLL_FIRST_S, backing off to POLL_MAX_S.
POLL_FIRST_S = 0.25
POLL_MAX_S = 2.0

try:
    VERSION = version("hvkube")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    VERSION = "0.0.0"


async def run(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a blocking engine call in the worker-thread pool."""
    return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))


class Waiters:
    """Acquires asleep on a pool, woken first come first served, one per freed VM.

    Everything here runs on the event loop (no locks needed). A VM freed while nobody
    sleeps is kept as a `spare` wake-up, so a waiter that failed its claim just before
    the release tries again at once instead of sleeping through it.
    """

    SPARE_LIMIT = 64

    def __init__(self) -> None:
        self._sleeping: dict[str, deque[asyncio.Future[None]]] = {}
        self._spare: dict[str, int] = {}

    def has_sleepers(self, pool: str) -> bool:
        return bool(self._sleeping.get(pool))

    def take_spare(self, pool: str) -> bool:
        if self._spare.get(pool, 0) > 0:
            self._spare[pool] -= 1
            return True
        return False

    def sleep(self, pool: str) -> asyncio.Future[None]:
        ticket: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sleeping.setdefault(pool, deque()).append(ticket)
        return ticket

    def leave(self, pool: str, ticket: asyncio.Future[None], woke: bool) -> None:
        queue = self._sleeping.get(pool)
        if queue is not None:
            with contextlib.suppress(ValueError):
                queue.remove(ticket)
            if not queue:
                del self._sleeping[pool]
        if ticket.done() and not woke:
            self.notify(pool)  # woken but gone (cancelled): pass it on
        ticket.cancel()

    def notify(self, pool: str | None) -> None:
        if pool is None:
            return
        queue = self._sleeping.get(pool)
        while queue:
            ticket = queue.popleft()
            if not ticket.done():
                ticket.set_result(None)
                return
        self._spare[pool] = min(self.SPARE_LIMIT, self._spare.get(pool, 0) + 1)

    def sleepers(self) -> int:
        return sum(len(q) for q in self._sleeping.values())


@dataclass
class ApiState:
    engine: Engine
    leases: ApiLeases
    lease_seconds: float
    allow_exec: bool
    waiters: Waiters = field(default_factory=Waiters)

    def try_acquire(
        self, pool: str, lease_id: str, first: bool, expiry_s: float, claim: bool = True
    ) -> AcquiredVM | None:
        """One non-blocking claim (the first try also records the lease); None when no VM is
        free. Runs in a worker thread."""
        if first:
            self.leases.open(lease_id, pool, expiry_s)
        if not claim:
            return None
        try:
            return self.engine.acquire(pool, 0.0, lease_id)
        except NoVMAvailable:
            return None

    async def acquire_waiting(
        self,
        pool: str,
        lease_id: str,
        wait_s: float,
        expiry_s: float,
        gone: Callable[[], Awaitable[bool]] | None = None,
    ) -> AcquiredVM:
        """Claim without blocking; between tries, sleep (no thread held) until a release
        through this server wakes us, or a poll is due (for VMs freed by other processes).
        A newcomer queues behind waiters already asleep, so the longest waiter is served
        first. Stops when the wait is over, or when `gone` says the client disconnected."""
        deadline = time.monotonic() + wait_s
        delay = POLL_FIRST_S
        claim = not (wait_s > 0 and self.waiters.has_sleepers(pool))
        vm = await run(self.try_acquire, pool, lease_id, True, expiry_s, claim)
        if vm is not None:
            self.waiters.take_spare(pool)  # a newcomer took a VM freed while nobody slept
        while vm is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                await run(self.no_vm, pool)
            if gone is not None and await gone():
                raise ClientGone("the client disconnected while waiting for a VM")
            if not self.waiters.take_spare(pool):
                ticket = self.waiters.sleep(pool)
                woke = False
                try:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(asyncio.shield(ticket), min(delay, remaining))
                        woke = True
                finally:
                    self.waiters.leave(pool, ticket, woke)
                delay = POLL_FIRST_S if woke else min(POLL_MAX_S, delay * 1.5)
            vm = await run(self.try_acquire, pool, lease_id, False, expiry_s)
            if vm is not None and gone is not None and await gone():
                # Claimed for a client that left meanwhile: the caller abandons the lease,
                # and the sweeper gives the VM back by the pool's policy.
                raise ClientGone("the client disconnected while its VM was being resumed")
        return vm

    def release(
        self, name: str, policy: ReleasePolicy | None, lease_id: str | None
    ) -> tuple[VMOut | None, str | None]:
        """Give back a VM held by `lease_id` (blocks: call from a worker thread)."""
        return _release(self, name, policy, lease_id)

    def vm_changed(self, pool: str | None) -> None:
        """A VM of `pool` may have become free: wake one waiting acquire (event loop only)."""
        _vm_changed(self, pool)

    def no_vm(self, pool: str) -> NoReturn:
        counts = self.engine.pool_counts(pool)
        raise NoVMAvailable(
            f"no free VM in pool {pool!r} ({counts.get('held', 0)} held, "
            f"{sum(v for k, v in counts.items() if k != 'held')} in all); "
            "wait longer (wait_seconds), or scale the pool"
        )


def get_state(request: Request) -> ApiState:
    state: ApiState = request.app.state.api
    return state


State = Annotated[ApiState, Depends(get_state)]
VMName = Annotated[str, Path(min_length=1, max_length=48, pattern=f"^{NAME_PATTERN}$")]
PoolName = Annotated[str, Path(min_length=1, max_length=48, pattern=f"^{NAME_PATTERN}$")]
AgentId = Annotated[int, Path(ge=1, le=2**62)]
LeaseId = Annotated[str, Path(min_length=1, max_length=64)]

# Documents the scheme in the OpenAPI document; BearerAuth (middleware) enforces it.
bearer = HTTPBearer(auto_error=False, description="token from the server's api-token file")
ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBodyDoc, "description": text}
    for status, text in (
        (400, "bad input (nothing was changed)"),
        (401, "bearer token missing or not valid"),
        (404, "no such pool, VM, agent or lease"),
        (409, "the object's state forbids this"),
        (422, "a request field is not valid (nothing was changed)"),
    )
}
NO_VM: dict[int | str, dict[str, Any]] = {
    503: {"model": ErrorBodyDoc, "description": "no VM free within the wait; see Retry-After"}
}

v1 = APIRouter(prefix="/api/v1", dependencies=[Security(bearer)], responses=ERRORS)


# -- helpers (run in worker threads) -----------------------------------------------------------


def _vm_out(engine: Engine, vm: VM, endpoints: dict[str, str | None] | None = None) -> VMOut:
    if endpoints is not None and vm.ip:
        pattern = endpoints.get(vm.template)
        mcp = pattern.replace("{ip}", vm.ip) if pattern else None
    else:
        mcp = engine.mcp_endpoint(vm)
    return VMOut(**vm.model_dump(), mcp_endpoint=mcp)


def _list_vms(engine: Engine, pool: str | None, state: VMState | None) -> list[VMOut]:
    endpoints = {t.name: t.mcp_endpoint for t in engine.list_templates()}
    return [_vm_out(engine, vm, endpoints) for vm in engine.list_vms(pool=pool, state=state)]


def _get_vm(engine: Engine, name: str) -> VMOut:
    return _vm_out(engine, engine.get_vm(name))


def _pool_out(engine: Engine, name: str) -> PoolOut:
    return pool_summary(engine, name)


def _list_pools(engine: Engine) -> list[PoolOut]:
    return pool_summaries(engine)


def _release(
    st: ApiState, name: str, policy: ReleasePolicy | None, lease_id: str | None
) -> tuple[VMOut | None, str | None]:
    vm = st.engine.get_vm(name)
    if lease_id is not None and vm.holder != lease_id:
        if vm.holder is None:
            raise LeaseExpired(
                f"VM {name!r} is not acquired; lease {lease_id[:64]!r} was released or expired"
            )
        raise FieldError("lease_id", f"VM {name!r} is not held by lease {lease_id[:64]!r}")
    holder = lease_id or vm.holder
    after = st.engine.release(name, policy=policy, holder=holder)
    if holder is not None:
        st.leases.drop(holder)
    return (_vm_out(st.engine, after) if after is not None else None), vm.pool


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


def _vm_changed(st: ApiState, pool: str | None) -> None:
    """A VM of `pool` may have become free: wake one waiting acquire."""
    st.waiters.notify(pool)


# -- routes ------------------------------------------------------------------------------------


@v1.get("/pools", response_model=list[PoolOut], summary="list pools with counts per state")
async def list_pools(st: State) -> list[PoolOut]:
    return await run(_list_pools, st.engine)


@v1.get("/pools/{name}", response_model=PoolOut, summary="one pool with counts per state")
async def get_pool(name: PoolName, st: State) -> PoolOut:
    return await run(_pool_out, st.engine, name)


@v1.get("/vms", response_model=list[VMOut], summary="list VMs")
async def list_vms(
    st: State,
    pool: Annotated[
        str | None, Query(min_length=1, max_length=48, pattern=f"^{NAME_PATTERN}$")
    ] = None,
    state: VMState | None = None,
) -> list[VMOut]:
    return await run(_list_vms, st.engine, pool, state)


@v1.get("/vms/{name}", response_model=VMOut, summary="one VM")
async def get_vm(name: VMName, st: State) -> VMOut:
    return await run(_get_vm, st.engine, name)


@v1.get(
    "/vms/{name}/screenshot",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}, "description": "the VM's screen as PNG"}},
    summary="the VM's screen (PNG)",
)
async def screenshot(name: VMName, st: State) -> Response:
    data = await run(st.engine.screenshot, name)
    return Response(content=data, media_type="image/png")


@v1.post(
    "/acquire",
    response_model=AcquireResponse,
    responses=NO_VM,
    summary="take a ready VM from a pool, resumed, under a lease",
)
async def acquire(body: AcquireRequest, st: State, request: Request) -> AcquireResponse:
    pool = body.pool_to_use()
    seconds = body.lease_seconds or st.lease_seconds
    lease_id = new_lease_id()
    # The lease row comes first; until the claim is answered it lasts the wait plus a lease.
    expiry_s = body.wait_seconds + seconds + 60.0
    try:
        vm = await st.acquire_waiting(
            pool, lease_id, body.wait_seconds, expiry_s, request.is_disconnected
        )
        lease = await run(st.leases.bind, lease_id, vm.name, pool, seconds)
    except BaseException:
        with anyio.CancelScope(shield=True):
            await run(st.leases.abandon, lease_id)
        raise
    return AcquireResponse(
        **vm.model_dump(),
        lease_id=lease_id,
        lease_expires_at=lease.expires_at,
        lease_seconds=seconds,
    )


@v1.get("/leases/{lease_id}", response_model=Lease, summary="one lease")
async def get_lease(lease_id: LeaseId, st: State) -> Lease:
    return await run(st.leases.get, lease_id)


@v1.post("/leases/{lease_id}/renew", response_model=Lease, summary="extend a lease")
async def renew_lease(lease_id: LeaseId, st: State, body: RenewRequest | None = None) -> Lease:
    return await run(st.leases.renew, lease_id, body.lease_seconds if body else None)


@v1.post(
    "/vms/{name}/release",
    response_model=ReleaseResponse,
    summary="give a VM back: reset, save or destroy (default: the pool's policy)",
)
async def release(name: VMName, st: State, body: ReleaseRequest | None = None) -> ReleaseResponse:
    body = body or ReleaseRequest()
    out, pool = await run(_release, st, name, body.chosen(), body.lease_id)
    _vm_changed(st, pool)
    return ReleaseResponse(name=name, destroyed=out is None, vm=out)


def _vm_action(method: str, summary: str) -> None:
    async def action(name: VMName, st: State) -> VMOut:
        vm: VM = await run(getattr(st.engine, method), name)
        _vm_changed(st, vm.pool)
        return await run(_vm_out, st.engine, vm)

    verb = method.removesuffix("_vm")
    action.__name__ = f"{verb}_vm"
    v1.post(f"/vms/{{name}}/{verb}", response_model=VMOut, summary=summary)(action)


_vm_action("resume_vm", "start or resume a VM (falls back to the clean checkpoint)")
_vm_action("save_vm", "save a VM's memory to disk (warm)")
_vm_action("reset_vm", "restore a VM's clean checkpoint (ends Saved, not held)")


@v1.post("/agents", response_model=AgentOut, status_code=201, summary="queue an agent on a pool")
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
    )


@v1.get("/agents/{agent_id}", response_model=AgentOut, summary="one agent with its result")
async def get_agent(agent_id: AgentId, st: State) -> AgentOut:
    return await run(st.engine.get_agent, agent_id)


@v1.post(
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
    _vm_changed(st, agent.pool)
    return agent


@v1.post(
    "/agents/{agent_id}/cancel",
    response_model=AgentOut,
    summary="cancel an agent (its VM is released by pool policy)",
)
async def cancel_agent(agent_id: AgentId, st: State) -> AgentOut:
    agent = await run(st.engine.cancel_agent, agent_id)
    _vm_changed(st, agent.pool)
    return agent


@v1.get("/events", response_model=EventPage, summary="lifecycle events, oldest first")
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


# -- the app -----------------------------------------------------------------------------------


async def _sweep(st: ApiState, every_s: float) -> None:
    """Release the VMs of expired leases, by pool policy, until cancelled."""
    while True:
        try:
            for lease_id in await run(st.leases.due):
                gone = await run(st.leases.expire, lease_id)
                if gone is not None:
                    log.info("lease %s expired; %s released", lease_id, gone.vm or "no VM")
                    _vm_changed(st, gone.pool)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("lease sweep failed; retrying")
        await asyncio.sleep(every_s)


def _mcp_slot() -> Any:
    """Where /mcp goes, or None when the MCP SDK is not installed (pip install 'hvkube[mcp]')."""
    try:
        import mcp.server.mcpserver  # noqa: F401
    except ModuleNotFoundError:
        log.info("the mcp package is not installed: /mcp is not served")
        return None
    from core.api.mcp import McpSlot

    return McpSlot()


def _mcp_mount() -> Any:
    from core.api.mcp import McpMount

    return McpMount


@contextlib.asynccontextmanager
async def _mcp_sessions(st: ApiState, slot: Any) -> AsyncIterator[None]:
    if slot is None:
        yield
        return
    from core.api.mcp import start

    async with start(st, slot):
        yield


def make_api(
    settings: Settings,
    *,
    engine_factory: Callable[[], Engine] | None = None,
    lease_seconds: float = 600.0,
    sweep_seconds: float = 1.0,
    allow_exec: bool = False,
    token: str | None = None,
) -> FastAPI:
    """The API app. The token comes from the token file (made on first use) unless given."""
    if token is None:
        token = load_or_create_token(token_path(settings))

    def open_default() -> Engine:
        from core import open_engine

        return open_engine(settings)

    factory = engine_factory or open_default

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = await run(factory)
        st = ApiState(engine, ApiLeases(engine), lease_seconds, allow_exec)
        app.state.api = st
        # A read-only server changes nothing, expired leases included.
        sweeper = None if engine.readonly else asyncio.create_task(_sweep(st, sweep_seconds))
        try:
            async with _mcp_sessions(st, mcp_slot):
                yield
        finally:
            if sweeper is not None:
                sweeper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sweeper
            engine.close()

    app = FastAPI(
        title="hvkube",
        version=VERSION,
        description="Pools of ready Windows VMs for UI-automation agents. Every route but "
        "/health needs `Authorization: Bearer <token>`.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    errors.install(app)

    @app.get("/health", response_model=Health, summary="liveness; needs no token")
    async def health() -> Health:
        return Health(status="ok", version=VERSION)

    app.include_router(v1)
    app.include_router(recordings.router)
    mcp_slot = _mcp_slot()
    if mcp_slot is not None:
        app.add_middleware(_mcp_mount(), slot=mcp_slot)
    app.add_middleware(BearerAuth, token=token)
    app.add_middleware(BodyLimit, limit=MAX_BODY_BYTES)  # outermost: before anything reads
    return app

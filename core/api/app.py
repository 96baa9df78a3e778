"""The HTTP API over the engine (FastAPI): `make_api(settings)` builds the app.

The routes live in `routes` (any valid token: acquire, leases, release, the caller's VMs)
and `manage` (admin tokens: templates, pools, VM deletion, reconcile, agents, events);
what they share in `state` and `common`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from fastapi import Depends, FastAPI, Response
from starlette.middleware.cors import CORSMiddleware

from core.api import errors, manage, recordings, routes
from core.api.auth import Authenticator, BearerAuth
from core.api.common import admin, get_state, require_admin, v1
from core.api.leases import ApiLeases
from core.api.limits import BodyLimit
from core.api.metrics import CONTENT_TYPE
from core.api.schemas import MAX_BODY_BYTES, Health
from core.api.state import ApiState, run
from core.engine import Engine
from core.settings import Settings
from core.store import Store
from core.tokens import admin_token

log = logging.getLogger("hvkube.api")

# The route modules register themselves on the routers when imported.
assert routes and manage
__all__ = ["ApiState", "make_api", "run"]

try:
    VERSION = version("hvkube")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    VERSION = "0.0.0"


async def _sweep(st: ApiState, every_s: float) -> None:
    """Release the VMs of expired leases, by pool policy, until cancelled."""
    while True:
        try:
            for lease_id in await run(st.leases.due):
                gone = await run(st.leases.expire, lease_id)
                if gone is not None:
                    log.info("lease %s expired; %s released", lease_id, gone.vm or "no VM")
                    st.waiters.notify(gone.pool)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # one line, not a traceback a second
            log.warning("lease sweep failed (%s: %s); retrying", type(exc).__name__, exc)
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
    require_lease: bool = False,
    cors_origins: Sequence[str] = (),
) -> FastAPI:
    """The API app. The admin token comes from the token file (made on first use, except in
    read-only mode) unless given. `app.state.auth` is the `Authenticator`, for apps mounted
    beside this one."""
    if token is None:
        token = admin_token(settings)

    def open_default() -> Engine:
        from core import open_engine

        return open_engine(settings)

    factory = engine_factory or open_default
    holder: dict[str, ApiState] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = await run(factory)
        st = ApiState(engine, ApiLeases(engine), lease_seconds, allow_exec, require_lease)
        st.metrics.watch(engine)
        app.state.api = st
        holder["state"] = st
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
            holder.pop("state", None)
            engine.close()

    app = FastAPI(
        title="hvkube",
        version=VERSION,
        description="Pools of ready Windows VMs for UI-automation agents. Every route but "
        "/health needs `Authorization: Bearer <token>`: the admin token, or a scoped token "
        "made with `hvkube token create`.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    errors.install(app)

    @app.get("/health", response_model=Health, summary="liveness; needs no token")
    async def health() -> Health:
        return Health(status="ok", version=VERSION)

    @app.get(
        "/metrics",
        response_class=Response,
        dependencies=[Depends(require_admin)],
        responses={200: {"content": {CONTENT_TYPE: {}}, "description": "Prometheus text"}},
        summary="Prometheus metrics (admin token)",
    )
    async def metrics(st: ApiState = Depends(get_state)) -> Response:  # noqa: B008
        return Response(content=await run(st.metrics.render), media_type=CONTENT_TYPE)

    app.include_router(v1)
    app.include_router(admin)
    app.include_router(recordings.router, dependencies=[Depends(require_admin)])
    mcp_slot = _mcp_slot()
    if mcp_slot is not None:  # inside BearerAuth: /mcp needs a token like every route
        app.add_middleware(_mcp_mount(), slot=mcp_slot)

    def current_store() -> Store | None:
        st = holder.get("state")
        return st.engine.store if st is not None else None

    auth = Authenticator(token, current_store)
    app.state.auth = auth
    app.add_middleware(BearerAuth, auth=auth)
    if cors_origins:  # outside auth: a preflight carries no token
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(cors_origins),
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
            max_age=600,
        )
    app.add_middleware(BodyLimit, limit=MAX_BODY_BYTES)  # outermost: before anything reads
    return app

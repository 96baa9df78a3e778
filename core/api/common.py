"""What every route module uses: the shared state, the caller's principal, path types,
the routers (one any valid token may call, one for admin tokens only) and error docs."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request, Security
from fastapi.security import HTTPBearer

from core.api.errors import ErrorBodyDoc, OutOfScope
from core.api.state import ApiState
from core.names import NAME_PATTERN
from core.tokens import ADMIN, Principal


def get_state(request: Request) -> ApiState:
    state: ApiState = request.app.state.api
    return state


def get_principal(request: Request) -> Principal:
    """Who the request comes from (set by BearerAuth)."""
    found = getattr(request.state, "principal", None)
    return found if isinstance(found, Principal) else ADMIN


def require_admin(request: Request) -> None:
    who = get_principal(request)
    if not who.admin:
        raise OutOfScope(
            f"token {who.name!r} has the agent scope: it may acquire, renew and release its "
            "own leases and see and drive its own VMs; this needs an admin token"
        )


State = Annotated[ApiState, Depends(get_state)]
Who = Annotated[Principal, Depends(get_principal)]
VMName = Annotated[str, Path(min_length=1, max_length=48, pattern=f"^{NAME_PATTERN}$")]
PoolName = Annotated[str, Path(min_length=1, max_length=48, pattern=f"^{NAME_PATTERN}$")]
TemplateName = Annotated[str, Path(min_length=1, max_length=48, pattern=f"^{NAME_PATTERN}$")]
AgentId = Annotated[int, Path(ge=1, le=2**62)]
LeaseId = Annotated[str, Path(min_length=1, max_length=64)]

# Documents the scheme in the OpenAPI document; BearerAuth (middleware) enforces it.
bearer = HTTPBearer(auto_error=False, description="the admin token file's token, or a scoped one")
ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBodyDoc, "description": text}
    for status, text in (
        (400, "bad input (nothing was changed)"),
        (401, "bearer token missing or not valid"),
        (403, "read-only server, or the token's scope does not allow it"),
        (404, "no such template, pool, VM, agent or lease"),
        (409, "the object's state forbids this"),
        (422, "a request field is not valid (nothing was changed)"),
    )
}
NO_VM: dict[int | str, dict[str, Any]] = {
    503: {"model": ErrorBodyDoc, "description": "no VM free within the wait; see Retry-After"}
}

# Routes any valid token may call (an agent token only on its own leases and VMs).
v1 = APIRouter(prefix="/api/v1", dependencies=[Security(bearer)], responses=ERRORS)
# Routes for admin tokens only.
admin = APIRouter(
    prefix="/api/v1", dependencies=[Security(bearer), Depends(require_admin)], responses=ERRORS
)

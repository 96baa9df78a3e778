"""Bearer-token authentication, usable by the API and by any ASGI app mounted beside it.

`Authenticator.authenticate(header_or_token)` returns the `Principal` (scope and token id)
a bearer token stands for, or None: the admin token from the token file (core.tokens), or a
scoped token kept hashed in the store. `BearerAuth` (middleware) puts the principal in the
request's scope state as `principal`; `/health` (and CORS preflights, answered before this)
need no token.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.types import ASGIApp, Receive, Scope, Send

from core.api.errors import Unauthorized, hvkube_error_response
from core.store import Store
from core.tokens import Principal, load_or_create_token, token_path, verify

__all__ = [
    "OPEN_PATHS",
    "Authenticator",
    "BearerAuth",
    "Principal",
    "load_or_create_token",
    "token_path",
]

OPEN_PATHS = frozenset({"/health"})


def bearer_of(header: bytes | str | None) -> str | None:
    """The token of an `Authorization: Bearer TOKEN` header value, or None."""
    if not header:
        return None
    text = header.decode("latin-1") if isinstance(header, bytes) else header
    scheme, _, given = text.partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        return None
    return given.strip()


class Authenticator:
    """Checks bearer tokens: the admin token in memory, scoped tokens in the store."""

    def __init__(self, admin_token: str | None, store: Callable[[], Store | None]) -> None:
        self.admin_token = admin_token
        self._store = store

    def authenticate(self, header_or_token: bytes | str | None) -> Principal | None:
        """A header value (`Bearer ...`) or a bare token in; its principal, or None, out.
        Reads the store for a scoped token: call it from a worker thread when that matters."""
        if header_or_token is None:
            return None
        token = bearer_of(header_or_token)
        if token is None and isinstance(header_or_token, str) and " " not in header_or_token:
            token = header_or_token
        if token is None:
            return None
        return verify(self._store(), self.admin_token, token)


class BearerAuth:
    """ASGI middleware: every HTTP request but /health needs `Authorization: Bearer TOKEN`."""

    def __init__(self, app: ASGIApp, auth: Authenticator) -> None:
        self.app = app
        self.auth = auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        header = next((v for k, v in scope["headers"] if k == b"authorization"), None)
        principal = self.auth.authenticate(header) if header is not None else None
        if principal is None:
            why = "missing" if header is None else "not valid"
            response = hvkube_error_response(
                Unauthorized(f"bearer token {why}; send 'Authorization: Bearer <token>'")
            )
            await response(scope, receive, send)
            return
        scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, receive, send)

"""Bearer-token authentication.

The token is made on first start and kept in a file readable by its owner only
(beside the database unless `api_token_file` says otherwise). A token file that
others can read is refused: its token must be taken as known.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from starlette.types import ASGIApp, Receive, Scope, Send

from core.api.errors import Unauthorized, hvkube_error_response
from core.errors import HvkubeError, InvalidInput
from core.settings import Settings

TOKEN_FILE_NAME = "api-token"
OPEN_PATHS = frozenset({"/health"})


def token_path(settings: Settings) -> Path:
    if settings.api_token_file:
        return Path(settings.api_token_file)
    return settings.state_dir() / TOKEN_FILE_NAME


def load_or_create_token(path: Path) -> str:
    """Read the token, or make one (0600, created exclusively) when the file does not exist."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        token = secrets.token_urlsafe(32)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another server made it meanwhile: read theirs
        else:
            with os.fdopen(fd, "w", encoding="ascii") as f:
                f.write(token + "\n")
            return token
    if path.is_dir():
        raise InvalidInput(f"API token file {path} is a folder; give a file path")
    mode = stat.S_IMODE(path.stat().st_mode)
    if os.name == "posix" and mode & 0o077:
        raise HvkubeError(
            f"API token file {path} can be read by others (mode {mode:03o}); "
            f"run 'chmod 600 {path}', or delete it to make a new token"
        )
    token = path.read_text(encoding="ascii", errors="replace").strip()
    if len(token) < 16:
        raise HvkubeError(f"API token file {path} holds no usable token; delete it to make one")
    return token


def token_matches(expected: str, header: bytes | None) -> bool:
    if not header:
        return False
    scheme, _, given = header.partition(b" ")
    if scheme.lower() != b"bearer":
        return False
    return secrets.compare_digest(given.strip(), expected.encode("ascii"))


class BearerAuth:
    """ASGI middleware: every HTTP request but /health needs `Authorization: Bearer TOKEN`."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        header = next((v for k, v in scope["headers"] if k == b"authorization"), None)
        if not token_matches(self.token, header):
            why = "missing" if header is None else "not valid"
            response = hvkube_error_response(
                Unauthorized(f"bearer token {why}; send 'Authorization: Bearer <token>'")
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)

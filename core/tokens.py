"""HTTP API tokens: the admin token file and scoped tokens kept hashed in the store.

Scopes: `admin` may do everything; `agent` may acquire, renew and release its own
leases and see and drive the VMs they hold, nothing else. A scoped token is shown
once, when made (`hvkube token create`); the store keeps only its SHA-256.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from core.errors import HvkubeError, InvalidInput, NotFound, ReadOnlyMode
from core.files import write_atomic
from core.names import check_name
from core.settings import Settings
from core.store import Store
from core.store import tokens as store_tokens

Scope = Literal["admin", "agent"]
SCOPES: tuple[Scope, ...] = ("admin", "agent")
TOKEN_FILE_NAME = "api-token"
PREFIX = "hvk_"
ID_HEX = 12


@dataclass(frozen=True)
class Principal:
    """Who a request comes from: its scope and, for a scoped token, the token's id."""

    scope: Scope
    token_id: str | None = None
    name: str = "admin token file"

    @property
    def admin(self) -> bool:
        return self.scope == "admin"


ADMIN = Principal("admin")


@dataclass(frozen=True)
class TokenInfo:
    id: str
    name: str
    scope: str
    created_at: str
    revoked: bool


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


# -- the admin token file ------------------------------------------------------------------


def token_path(settings: Settings) -> Path:
    if settings.api_token_file:
        return Path(settings.api_token_file)
    return settings.state_dir() / TOKEN_FILE_NAME


def _check_folder(path: Path) -> None:
    """The token file's folder must be this user's and not writable by others."""
    folder = path.parent.resolve()
    found = folder.stat()
    mode = stat.S_IMODE(found.st_mode)
    if found.st_uid != os.geteuid() or mode & 0o022:
        raise HvkubeError(
            f"the folder {folder} of the API token file is not yours alone (owner uid "
            f"{found.st_uid}, mode {mode:03o}); set api_token_file to a file in a folder only "
            "you can write"
        )


def _check_owner(path: Path) -> None:
    """The file and its folder must be this user's and not writable by others: a token file
    planted by another user (in a shared folder, for a server run as root) is refused."""
    if os.name != "posix":
        return
    _check_folder(path)
    found = path.lstat()
    if stat.S_ISLNK(found.st_mode) or found.st_uid != os.geteuid():
        raise HvkubeError(
            f"API token file {path} is a link or not owned by this user (uid {os.geteuid()}); "
            "delete it to make a new token"
        )
    mode = stat.S_IMODE(found.st_mode)
    if mode & 0o077:
        raise HvkubeError(
            f"API token file {path} can be read by others (mode {mode:03o}); "
            f"run 'chmod 600 {path}', or delete it to make a new token"
        )


def admin_token(settings: Settings) -> str | None:
    """The admin token of the token file. Read-only creates no file: without the file there
    is no admin token (None), and only the store's scoped tokens are accepted."""
    path = token_path(settings)
    if settings.readonly:
        return load_token(path) if path.exists() or path.is_symlink() else None
    return load_or_create_token(path)


def no_token_refusal(path: Path) -> InvalidInput:
    return InvalidInput(
        f"read-only mode creates no file, and there is no API token: neither {path} nor a "
        "live token in the store; run 'hvkube serve' once without --readonly to make the "
        "token file, or 'hvkube token create --name NAME --scope admin'"
    )


def load_or_create_token(path: Path) -> str:
    """Read the admin token, or make one (0600) when the file does not exist."""
    if path.is_dir():
        raise InvalidInput(f"API token file {path} is a folder; give a file path")
    if not path.exists() and not path.is_symlink():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if os.name == "posix":
            _check_folder(path)
        write_atomic(path, (secrets.token_urlsafe(32) + "\n").encode("ascii"), mode=0o600)
    return load_token(path)


def load_token(path: Path) -> str:
    """Read the admin token of an existing file, refusing one that others could have planted."""
    if path.is_dir():
        raise InvalidInput(f"API token file {path} is a folder; give a file path")
    _check_owner(path)
    token = path.read_text(encoding="ascii", errors="replace").strip()
    if len(token) < 16:
        raise HvkubeError(f"API token file {path} holds no usable token; delete it to make one")
    return token


# -- scoped tokens in the store ------------------------------------------------------------


def create_token(store: Store, name: str, scope: str, readonly: bool) -> tuple[TokenInfo, str]:
    """Make a token; returns its record and the secret (shown once, never stored)."""
    check_name(name, "token name")
    if scope not in SCOPES:
        raise InvalidInput(f"scope {scope!r} is not one of {', '.join(SCOPES)}")
    if readonly:
        raise ReadOnlyMode("read-only mode: refusing to make a token; run without --readonly")
    if store_tokens.name_in_use(store, name):
        raise InvalidInput(f"a live token named {name!r} exists; pick another name")
    token_id = secrets.token_hex(ID_HEX // 2)
    secret = f"{PREFIX}{token_id}_{secrets.token_urlsafe(32)}"
    row = store_tokens.add_token(store, token_id, name, scope, _digest(secret))
    return _info(row), secret


def _info(row: store_tokens.TokenRow) -> TokenInfo:
    return TokenInfo(
        id=row.id,
        name=row.name,
        scope=row.scope,
        created_at=row.created_at.isoformat(),
        revoked=row.revoked_at is not None,
    )


def list_tokens(store: Store) -> list[TokenInfo]:
    return [_info(row) for row in store_tokens.tokens(store)]


def revoke_token(store: Store, token_id: str, readonly: bool) -> None:
    if readonly:
        raise ReadOnlyMode("read-only mode: refusing to revoke a token; run without --readonly")
    found = store_tokens.token(store, token_id)
    if found is None:
        raise NotFound(f"no token with id {token_id[:40]!r}; see 'hvkube token list'")
    if not store_tokens.revoke_token(store, token_id):
        raise InvalidInput(f"token {token_id} is already revoked")


def live_tokens(store: Store) -> int:
    return sum(row.revoked_at is None for row in store_tokens.tokens(store))


def verify(store: Store | None, admin_token: str | None, given: str) -> Principal | None:
    """The principal a bearer token stands for, or None when it is not valid (scoped tokens
    need the store; without an admin token, only they are accepted)."""
    if admin_token is not None and secrets.compare_digest(
        given.encode("utf-8", "replace"), admin_token.encode("ascii")
    ):
        return ADMIN
    if store is None or not given.startswith(PREFIX):
        return None
    token_id = given[len(PREFIX) : len(PREFIX) + ID_HEX]
    if len(token_id) != ID_HEX or any(c not in "0123456789abcdef" for c in token_id):
        return None
    row = store_tokens.token(store, token_id)
    if row is None or row.revoked_at is not None:
        return None
    if not secrets.compare_digest(_digest(given), row.secret_hash):
        return None
    scope: Scope = "admin" if row.scope == "admin" else "agent"
    return Principal(scope, row.id, row.name)

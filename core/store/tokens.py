"""Scoped HTTP API tokens: every statement about the `api_token` table."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from core.store import Store
from core.utc import as_utc, utcnow


@dataclass(frozen=True)
class TokenRow:
    id: str
    name: str
    scope: str
    secret_hash: str
    created_at: datetime
    revoked_at: datetime | None


def _row(row: Any) -> TokenRow:
    created = as_utc(row.created_at)
    assert created is not None
    return TokenRow(
        id=row.id,
        name=row.name,
        scope=row.scope,
        secret_hash=row.secret_hash,
        created_at=created,
        revoked_at=as_utc(row.revoked_at),
    )


def add_token(store: Store, token_id: str, name: str, scope: str, secret_hash: str) -> TokenRow:
    with store.write():
        store.t.ApiToken.create(id=token_id, name=name, scope=scope, secret_hash=secret_hash)
    found = token(store, token_id)
    assert found is not None
    return found


def token(store: Store, token_id: str) -> TokenRow | None:
    row = store.t.ApiToken.get_or_none(store.t.ApiToken.id == token_id)
    return None if row is None else _row(row)


def tokens(store: Store) -> list[TokenRow]:
    table = store.t.ApiToken
    return [_row(r) for r in table.select().order_by(table.created_at, table.id)]


def name_in_use(store: Store, name: str) -> bool:
    table = store.t.ApiToken
    return bool(table.select().where((table.name == name) & table.revoked_at.is_null()).exists())


def revoke_token(store: Store, token_id: str) -> bool:
    """Mark the token revoked; False when there is no such live token."""
    table = store.t.ApiToken
    with store.write():
        changed = (
            table.update(revoked_at=utcnow())
            .where((table.id == token_id) & table.revoked_at.is_null())
            .execute()
        )
    return int(changed) == 1

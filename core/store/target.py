"""Where a store lives: an SQLite file (the embedded default) or a PostgreSQL URL.

This module imports no driver: the settings and the command line use it to tell the two
apart and to check a URL before anything connects.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlsplit, urlunsplit

from core.errors import InvalidInput

POSTGRES_SCHEMES = ("postgresql", "postgres")


def is_url(text: str) -> bool:
    """True for anything shaped like `scheme://...` (a URL, not a file path)."""
    scheme, sep, _ = text.partition("://")
    return bool(sep) and scheme.isascii() and scheme.replace("+", "").isalnum()


class StoreTarget(NamedTuple):
    """An SQLite file (`path`) or a PostgreSQL server (`url`)."""

    path: Path | None = None
    url: str | None = None

    @property
    def is_postgres(self) -> bool:
        return self.url is not None

    @property
    def shown(self) -> str:
        """For messages: the path, or the URL without its password."""
        if self.url is None:
            return str(self.path)
        return hide_password(self.url)


def hide_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def parse_target(text: str) -> StoreTarget:
    """The store a `db` setting names; a malformed or unsupported URL is bad input."""
    if not is_url(text):
        return StoreTarget(path=Path(text))
    shown = hide_password(text) if "@" in text else text
    scheme = text.partition("://")[0].lower()
    if scheme not in POSTGRES_SCHEMES:
        raise InvalidInput(
            f"database URL {shown!r} is not supported: use a file path for SQLite, or "
            "postgresql://user@host/dbname for PostgreSQL"
        )
    try:
        parts = urlsplit(text)
        port = parts.port  # raises on a port that is not a number in range
    except ValueError as exc:
        raise InvalidInput(f"database URL {shown!r} is malformed: {exc}") from None
    database = parts.path.lstrip("/")
    if not database or "/" in database:
        raise InvalidInput(
            f"database URL {shown!r} names no database; use postgresql://user@host/dbname"
        )
    if not parts.hostname and "host=" not in parts.query:
        raise InvalidInput(
            f"database URL {shown!r} names no server; use postgresql://user@host/dbname"
        )
    del port
    # libpq accepts only "postgresql://" and "postgres://"; one spelling for the driver.
    return StoreTarget(url="postgresql://" + text.partition("://")[2])

"""Opening an SQLite file read-only without creating anything beside it.

`mode=ro` on a WAL database creates its -wal and -shm files when they are absent. They are
absent exactly when no connection has the file open for writing, and then the file itself
holds every commit: `immutable=1` reads it without them.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote


def wal_file(path: Path) -> Path:
    return path.with_name(path.name + "-wal")


def readonly_uri(path: Path, live: bool | None = None) -> str:
    """A URI for sqlite3.connect(..., uri=True) that reads `path` and writes nothing.
    `live`: follow other writers (`mode=ro`); by default, when one has the file open."""
    if live is None:
        live = wal_file(path).exists()
    return f"file:{quote(str(path.absolute()))}?{'mode=ro' if live else 'immutable=1'}"

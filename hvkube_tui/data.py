"""Reading what the dashboard shows, off the UI thread.

`DataReader.poll()` first asks the store whether anything changed since the
last read (SQLite's `PRAGMA data_version`, one cheap statement on this
thread's own connection); only then does it read, in one read transaction,
the small tables whole and the VMs and agents that changed since its last
read. The views' `RowFormatter` turns a snapshot into plain text rows keyed
by name or id, so the UI thread only has to diff them against its tables.

Time-dependent text (ages, uptimes) comes from the injected clock, so tests
and snapshots can fix it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from core.models import TRANSITIONAL_STATES
from core.output import STATE_STYLES
from core.readmodel import (  # noqa: F401  (re-exported for the views)
    AGENT_FIELDS,
    EVENT_FIELDS,
    FIELDS,
    VIEWS,
    VM_FIELDS,
    ResumeFigures,
    Snapshot,
    SnapshotReader,
    to_record,
)
from core.settings import Settings, default_backend
from core.utc import as_utc

Clock = Callable[[], datetime]
# A cell: plain text, or (text, style name) for coloured cells.
Cell = str | tuple[str, str]
Row = tuple[Cell, ...]


TRANSITIONAL_STYLE = "bold yellow"
SPARK_CHARS = "▁▂▃▄▅▆▇█"


def system_clock() -> datetime:
    return datetime.now(UTC)


CLOCK_VIEWS = ("vms", "agents")  # views with text that changes as time passes


def _ticking(view: str, row: tuple[Any, ...]) -> bool:
    """Does this row show a time that moves (an uptime, an age)?"""
    if view == "vms":
        return bool(row[VM_FIELDS.index("state")] in ("running", "paused"))
    return True


# -- text ----------------------------------------------------------------------------------------


def duration_text(seconds: float | None) -> str:
    """'42s', '5m12s', '3h05m', '2d04h'; '-' when unknown."""
    if seconds is None:
        return "-"
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{s // 86400}d{(s % 86400) // 3600:02d}h"


def since(when: datetime | None, now: datetime) -> str:
    when = as_utc(when)
    return "-" if when is None else duration_text((now - when).total_seconds())


def sparkline_text(values: list[float], width: int = 12) -> str:
    values = values[-width:]
    if not values:
        return ""
    low, high = min(values), max(values)
    span = high - low
    top = len(SPARK_CHARS) - 1
    return "".join(SPARK_CHARS[0 if span <= 0 else round((v - low) / span * top)] for v in values)


def mb_text(mb: int | None) -> str:
    if not mb:
        return "-"
    return f"{mb / 1024:.1f}G" if mb >= 1024 else f"{mb}M"


_TRANSITIONAL = frozenset(s.value for s in TRANSITIONAL_STATES)


def state_cell(state: str) -> Cell:
    style = TRANSITIONAL_STYLE if state in _TRANSITIONAL else STATE_STYLES.get(state, "")
    return (state, style)


def pool_median(pool: dict[str, Any]) -> float | None:
    """The median the CLI and the API print for the pool (core.readmodel)."""
    return ResumeFigures.of(pool.get("latencies") or []).median_ms


def cli_command(settings: Settings) -> str:
    """`hvkube`, with the options that point it at this dashboard's store and backend when
    they are not the defaults (the demo's, or --db): a command to paste that acts here."""
    import shlex

    parts = ["hvkube"]
    if settings.db:
        parts += ["--db", shlex.quote(str(settings.db_path()))]
    if settings.backend != default_backend():
        parts += ["--backend", settings.backend]
    return " ".join(parts)


# The dashboard polls the core read model's snapshot.
DataReader = SnapshotReader

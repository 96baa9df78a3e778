"""How the CLI prints: rich tables for people, JSON for scripts, and short time texts."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel
from rich.console import Console
from rich.table import Table

# The colour of each VM state and agent status, on the command line and in the dashboard.
STATE_STYLES = {
    "running": "bold green",
    "paused": "magenta",
    "saved": "cyan",
    "off": "grey50",
    "error": "bold red",
    "missing": "red",
    "unknown": "bold yellow",
    "up": "green",
    "down": "bold red",
    "idle": "grey50",
    "pending": "yellow",
    "scheduled": "yellow",
    "completed": "green",
    "failed": "red",
    "cancelled": "grey50",
}


def to_jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: to_jsonable(v) for k, v in value.items()}
    return value


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(to_jsonable(value), indent=2, sort_keys=False) + "\n")


def ago(when: datetime | None, now: datetime | None = None) -> str:
    """'12s', '5m', '3h', '2d' since `when`; '-' when unknown."""
    if when is None:
        return "-"
    now = now or datetime.now(UTC)
    seconds = max(0, int((now - when).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def ms(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 1000:
        return f"{value / 1000:.1f}s"
    return f"{value:.0f}ms" if value >= 10 else f"{value:.1f}ms"


def styled(state: str) -> str:
    style = STATE_STYLES.get(state)
    return f"[{style}]{state}[/]" if style else state


def table(
    console: Console, columns: Sequence[str], rows: Iterable[Sequence[Any]], title: str = ""
) -> None:
    out = Table(title=title or None, box=None, header_style="bold", pad_edge=False)
    for column in columns:
        out.add_column(column)
    count = 0
    for row in rows:
        out.add_row(*["-" if v is None else str(v) for v in row])
        count += 1
    if count == 0:
        console.print(f"[dim](no {title.lower() or 'rows'})[/]")
        return
    console.print(out)


def key_values(console: Console, pairs: Sequence[tuple[str, Any]]) -> None:
    out = Table(box=None, show_header=False, pad_edge=False)
    out.add_column(style="bold")
    out.add_column()
    for key, value in pairs:
        out.add_row(key, "-" if value is None or value == "" else str(value))
    console.print(out)

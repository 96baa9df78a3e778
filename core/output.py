"""How the CLI prints: rich tables for people, JSON for scripts, and short time texts.

rich is imported when a table is printed, not when this module is, so that commands
that print JSON or nothing never load it.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from core.markup import literal

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text

# The colour of each VM state and agent status, on the command line and in the dashboard.
# Red means an error and nothing else; the ready tiers each have their own colour (hot
# magenta, warm cyan, cold blue), running is green, and transitional states are yellow.
STATE_STYLES = {
    "running": "bold green",
    "paused": "magenta",
    "saved": "cyan",
    "off": "blue",
    "error": "bold red",
    "missing": "bold red",
    "unknown": "bold yellow",
    "up": "green",
    "down": "bold red",
    "idle": "dim",
    "pending": "yellow",
    "scheduled": "yellow",
    "completed": "green",
    "failed": "bold red",
    "cancelled": "dim",
}
TRANSITIONAL_STYLE = "bold yellow"


def state_style(state: str) -> str:
    """The colour of a VM state or agent status; a state not listed above is transitional
    (provisioning, resuming, saving, ...)."""
    return STATE_STYLES.get(state, TRANSITIONAL_STYLE)


def to_jsonable(value: Any) -> Any:
    if hasattr(value, "model_dump"):  # a pydantic model (not imported to ask isinstance)
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


def holder_text(holder: str | None, agent_id: int | None) -> str | None:
    """Who holds a VM, written one way everywhere: `agent 12` for an agent the controller
    placed, the lease holder's name otherwise."""
    if agent_id is not None:
        return f"agent {agent_id}"
    from core.states import UNLEASED_PREFIX, holder_label

    if holder and holder.startswith(UNLEASED_PREFIX):
        return holder_label(holder)
    return holder


def styled(state: str) -> Text:
    return literal(state, state_style(state))


def _cell(value: Any) -> Text:
    return literal("-" if value is None or value == "" else value)


def table(
    console: Console, columns: Sequence[str], rows: Iterable[Sequence[Any]], title: str = ""
) -> None:
    from rich.table import Table

    out = Table(title=title or None, box=None, header_style="bold", pad_edge=False)
    for column in columns:
        out.add_column(column)
    count = 0
    for row in rows:
        out.add_row(*[_cell(v) for v in row])
        count += 1
    if count == 0:
        console.print(f"(no {title.lower() or 'rows'})", style="dim")
        return
    console.print(out)


def key_values(console: Console, pairs: Sequence[tuple[str, Any]]) -> None:
    from rich.table import Table

    out = Table(box=None, show_header=False, pad_edge=False)
    out.add_column(style="bold")
    out.add_column()
    for key, value in pairs:
        out.add_row(key, _cell(value))
    console.print(out)

"""The detail pane's building blocks: key/value grids, times with their age, coloured
states. Each view (hvkube_tui/views) lays out its own detail with them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rich.table import Table
from rich.text import Text

from core.markup import literal
from core.utc import as_utc
from hvkube_tui.data import STATE_STYLES, since


def when_text(value: datetime | None, now: datetime) -> str:
    if value is None:
        return "-"
    aware = as_utc(value)
    assert aware is not None
    return f"{aware:%Y-%m-%d %H:%M:%S} ({since(aware, now)} ago)"


def detail_grid(pairs: list[tuple[str, Any]]) -> Table:
    grid = Table.grid(padding=(0, 1))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    for key, value in pairs:
        grid.add_row(key, literal("-" if value is None or value == "" else value))
    return grid


def state_text(value: str) -> Text:
    return Text(value, style=STATE_STYLES.get(value, "bold yellow"))

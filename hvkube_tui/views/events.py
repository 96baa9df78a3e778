"""Events: the newest lifecycle steps (resume, save, reset, ...) with how long they took
and how they ended."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rich.console import RenderableType
from rich.text import Text

from core.output import ms as ms_text
from hvkube_tui.data import Row
from hvkube_tui.views.base import View
from hvkube_tui.widgets.detail import detail_grid, when_text


class EventsView(View):
    NAME = "events"
    COLUMNS = (
        ("id", "ID"),
        ("time", "TIME (UTC)"),
        ("kind", "KIND"),
        ("vm", "VM"),
        ("pool", "POOL"),
        ("took", "TOOK"),
        ("result", "RESULT"),
    )

    @classmethod
    def format_row(cls, r: dict[str, Any], now: datetime) -> Row:
        at = r["started_at"]
        error = r["error"].splitlines()[0][:60] if r["error"] else ""
        return (
            str(r["id"]),
            at.strftime("%H:%M:%S") if at else "-",
            r["kind"],
            r["vm"] or "-",
            r["pool"] or "-",
            ms_text(r["duration_ms"]),
            ("ok", "green") if r["ok"] else (f"failed: {error}", "red"),
        )

    def detail(self, e: dict[str, Any], now: datetime) -> RenderableType:
        return detail_grid(
            [
                ("event", e["id"]),
                ("kind", e["kind"]),
                ("vm", e["vm"] or "-"),
                ("pool", e["pool"] or "-"),
                ("at", when_text(e["started_at"], now)),
                ("took", ms_text(e["duration_ms"])),
                ("result", Text("ok", style="green") if e["ok"] else Text("failed", style="red")),
                ("error", Text(e["error"], style="red") if e["error"] else "-"),
            ]
        )

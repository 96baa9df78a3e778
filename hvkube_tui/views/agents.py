"""Agents: queued, running and finished agent runs with their VM, age and duration."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rich.console import RenderableType
from rich.text import Text

from hvkube_tui.data import STATE_STYLES, Row, duration_text, since
from hvkube_tui.views.base import View
from hvkube_tui.widgets.detail import detail_grid, state_text, when_text


class AgentsView(View):
    NAME = "agents"
    COLUMNS = (
        ("id", "ID"),
        ("workflow", "WORKFLOW"),
        ("pool", "POOL"),
        ("status", "STATUS"),
        ("vm", "VM"),
        ("age", "AGE"),
        ("duration", "DURATION"),
    )
    CLOCK = True

    @classmethod
    def format_row(cls, r: dict[str, Any], now: datetime) -> Row:
        started, finished = r["started_at"], r["finished_at"]
        took = None
        if started is not None:
            took = ((finished or now) - started).total_seconds()
        return (
            str(r["id"]),
            r["workflow"],
            r["pool"],
            (r["status"], STATE_STYLES.get(r["status"], "")),
            r["vm"] or "-",
            since(r["created_at"], now),
            duration_text(took),
        )

    def detail(self, a: dict[str, Any], now: datetime) -> RenderableType:
        result = a["result"] or {}
        # What explains a problem comes first: at 80x24 the pane is a few lines tall.
        first: list[tuple[str, Any]] = []
        if result and not result.get("success"):
            first.append(("failed", Text(str(result.get("error") or "?"), style="bold red")))
        elif a["wait_reason"] and a["status"] in ("pending", "scheduled"):
            first.append(("waiting", Text(a["wait_reason"], style="yellow")))
        outcome = "-"
        if result:
            outcome = "success" if result.get("success") else "failed"
            if result.get("exit_code") is not None:
                outcome += f" (exit code {result['exit_code']})"
        return detail_grid(
            [
                *first,
                ("agent", a["id"]),
                ("workflow", a["workflow"]),
                ("pool", a["pool"]),
                ("status", state_text(a["status"])),
                ("vm", a["vm"] or "-"),
                ("created", when_text(a["created_at"], now)),
                ("started", when_text(a["started_at"], now)),
                ("finished", when_text(a["finished_at"], now)),
                *([] if first else [("waiting", a["wait_reason"] or "-")]),
                ("result", outcome),
            ]
        )

    def action_recording(self) -> None:
        key = self.selected()
        if not key:
            return
        from core.recording.archive import FOLDER_NAME, Archive, check_recording_id
        from hvkube_tui.widgets.recording import RecordingScreen

        archive = Archive(self.dashboard.engine.settings.state_dir() / FOLDER_NAME)
        rec = check_recording_id(key)  # an agent's id names its recording
        self.app.push_screen(RecordingScreen(archive, rec, f"Recording of agent {key}"))

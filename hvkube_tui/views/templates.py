"""Templates: the base images pools are built from; create and delete them."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from rich.console import RenderableType

from hvkube_tui.data import Row, Snapshot
from hvkube_tui.views.base import View
from hvkube_tui.widgets.detail import detail_grid
from hvkube_tui.widgets.forms import TemplateForm


class TemplatesView(View):
    NAME = "templates"
    COLUMNS = (
        ("name", "NAME"),
        ("memory", "MEMORY"),
        ("cpus", "CPUS"),
        ("gpu", "GPU"),
        ("pools", "POOLS"),
        ("disk", "DISK"),
    )
    BUSY_COLUMN = 5

    @classmethod
    def records(cls, snap: Snapshot) -> Mapping[str, dict[str, Any]]:
        return snap.templates

    @classmethod
    def format_row(cls, tp: dict[str, Any], now: datetime) -> Row:
        return (
            tp["name"],
            f"{tp['memory_mb']} MB",
            str(tp["cpus"]),
            "yes" if tp["gpu"] else "no",
            ", ".join(tp["pools"]) or "-",
            tp["disk_path"],
        )

    def detail(self, tp: dict[str, Any], now: datetime) -> RenderableType:
        return detail_grid(
            [
                ("template", tp["name"]),
                ("disk", tp["disk_path"]),
                ("memory", f"{tp['memory_mb']} MB"),
                ("cpus", tp["cpus"]),
                ("gpu", "yes" if tp["gpu"] else "no"),
                ("software", ", ".join(tp["software"] or []) or "-"),
                ("rdp port", tp["rdp_port"]),
                ("pools", ", ".join(tp["pools"]) or "-"),
            ]
        )

    # -- actions -------------------------------------------------------------------------------

    def action_new(self) -> None:
        snap = self.dashboard.snapshot
        if snap is None:
            return
        engine = self.dashboard.engine

        def made(values: dict[str, Any] | None) -> None:
            if values:
                name = values["name"]
                self.run_engine(
                    name,
                    "creating",
                    f"new template {name}",
                    lambda: engine.create_template(**values),
                    lambda t: f"template {t.name} created ({t.memory_mb} MB, {t.cpus} CPUs)",
                )

        self.app.push_screen(TemplateForm(set(snap.templates)), made)

    def action_delete(self) -> None:
        template = self.selected()
        if not template or self.dashboard.snapshot is None:
            return
        engine = self.dashboard.engine
        self.confirm(
            f"Delete template {template}? (Its disk file is kept.)",
            lambda: self.run_engine(
                template,
                "deleting",
                f"delete {template}",
                lambda: engine.delete_template(template),
                lambda _: f"{template} deleted",
            ),
            "Delete",
        )

"""Hosts: the hosts sharing the store, up or down, with their heartbeat, memory and VMs;
drain one (no new VMs there)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from rich.console import RenderableType

from hvkube_tui.data import Row, Snapshot, duration_text, mb_text, state_cell
from hvkube_tui.views.base import View
from hvkube_tui.widgets.detail import detail_grid, when_text


def _vms(counts: dict[str, int]) -> str:
    return " ".join(f"{n} {state}" for state, n in sorted(counts.items())) or "-"


def _used(h: dict[str, Any]) -> int | None:
    total, free = h["total_memory_mb"], h["free_memory_mb"]
    return None if total is None or free is None else total - free


class HostsView(View):
    NAME = "hosts"
    COLUMNS = (
        ("name", "NAME"),
        ("status", "STATUS"),
        ("heartbeat", "HEARTBEAT"),
        ("used", "MEM USED"),
        ("free", "MEM FREE"),
        ("vms", "VMS"),
    )
    CLOCK = True

    @classmethod
    def records(cls, snap: Snapshot) -> Mapping[str, dict[str, Any]]:
        return snap.hosts

    @classmethod
    def format_row(cls, h: dict[str, Any], now: datetime) -> Row:
        status = state_cell(h["status"])
        if h["draining"]:
            status = (f"{h['status']} draining", status[1])
        return (
            h["name"],
            status,
            duration_text(h["heartbeat_age_s"]) if h["heartbeat_age_s"] is not None else "-",
            mb_text(_used(h)),
            mb_text(h["free_memory_mb"]),
            _vms(h["vms"]),
        )

    def detail(self, h: dict[str, Any], now: datetime) -> RenderableType:
        return detail_grid(
            [
                ("host", h["name"]),
                ("status", h["status"] + (" (draining)" if h["draining"] else "")),
                ("heartbeat", when_text(h["heartbeat_at"], now) if h["heartbeat_at"] else "-"),
                ("lease", f"{h['lease_s']:g} s" if h["lease_s"] else "-"),
                ("down since", when_text(h["down_since"], now) if h["down_since"] else "-"),
                ("memory used", mb_text(_used(h))),
                ("memory free", mb_text(h["free_memory_mb"])),
                ("VMs", _vms(h["vms"])),
            ]
        )

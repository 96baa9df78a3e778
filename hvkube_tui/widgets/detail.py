"""The detail pane: everything about the selected row, in two columns of key/value."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rich.table import Table
from rich.text import Text

from hvkube_tui.data import (
    STATE_STYLES,
    Snapshot,
    mb_text,
    ms_text,
    pool_median,
    since,
)


def _when(value: datetime | None, now: datetime) -> str:
    if value is None:
        return "-"
    aware = value.replace(tzinfo=UTC) if value.tzinfo is None else value
    return f"{aware:%Y-%m-%d %H:%M:%S} ({since(aware, now)} ago)"


def _grid(pairs: list[tuple[str, Any]]) -> Table:
    grid = Table.grid(padding=(0, 1))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    for key, value in pairs:
        if isinstance(value, Text):
            grid.add_row(key, value)
        else:
            grid.add_row(key, "-" if value is None or value == "" else str(value))
    return grid


def _styled(value: str) -> Text:
    return Text(value, style=STATE_STYLES.get(value, "bold yellow"))


def detail_renderable(view: str, key: str | None, snap: Snapshot | None, now: datetime) -> Any:
    if snap is None:
        return Text("reading…", style="dim")
    record = snap.record(view, key) if key is not None else None
    if record is None:
        return Text("nothing selected", style="dim")
    if view == "pools":
        p = record
        c = p["counts"]
        p50 = pool_median(p)
        lat = sorted(p["latencies"])
        p90 = lat[min(len(lat) - 1, int(len(lat) * 0.9))] if lat else None
        return _grid(
            [
                ("pool", p["name"]),
                ("template", p["template"]),
                (
                    "wanted",
                    f"{p['desired_count']} VMs: {p['hot_count']} hot, {p['warm_count']} warm",
                ),
                (
                    "now",
                    f"{p['vm_count']} VMs: {c.get('paused', 0)} hot, {c.get('saved', 0)} warm, "
                    f"{c.get('off', 0)} cold, {c.get('running', 0)} running, "
                    f"{c.get('error', 0) + c.get('missing', 0)} error",
                ),
                ("release", p["release_policy"]),
                ("max per host", p["max_per_host"] or "-"),
                (
                    "resume",
                    f"p50 {ms_text(p50)}, p90 {ms_text(p90)} (last {len(lat)} resumes)",
                ),
            ]
        )
    if view == "templates":
        tp = record
        return _grid(
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
    if view == "vms":
        vm = record
        state = _styled(vm["state"])
        if vm["raw_state"]:
            state.append(f" (host: {vm['raw_state']})", style="dim")
        pairs: list[tuple[str, Any]] = [
            ("vm", vm["name"]),
            ("pool", f"{vm['pool'] or '-'} (template {vm['template']})"),
            ("state", state),
            ("held by", vm["holder"] or "-"),
            ("agent", vm["agent_id"] if vm["agent_id"] is not None else "-"),
            ("address", f"{vm['ip']}:{vm['rdp_port']} (RDP)" if vm["ip"] else "-"),
            ("memory", mb_text(vm["memory_mb"])),
            (
                "resumed",
                f"{_when(vm['last_resumed_at'], now)} in {ms_text(vm['last_resume_ms'])}"
                if vm["last_resumed_at"]
                else "-",
            ),
        ]
        if vm["error"]:
            pairs.append(("error", Text(vm["error"], style="red")))
        return _grid(pairs)
    if view == "agents":
        a = record
        result = a["result"] or {}
        outcome = "-"
        if result:
            outcome = (
                "success" if result.get("success") else f"failed: {result.get('error') or '?'}"
            )
        return _grid(
            [
                ("agent", a["id"]),
                ("workflow", a["workflow"]),
                ("pool", a["pool"]),
                ("status", _styled(a["status"])),
                ("vm", a["vm"] or "-"),
                ("created", _when(a["created_at"], now)),
                ("started", _when(a["started_at"], now)),
                ("finished", _when(a["finished_at"], now)),
                ("waiting", a["wait_reason"] or "-"),
                ("result", outcome),
            ]
        )
    e = record
    return _grid(
        [
            ("event", e["id"]),
            ("kind", e["kind"]),
            ("vm", e["vm"] or "-"),
            ("pool", e["pool"] or "-"),
            ("at", _when(e["started_at"], now)),
            ("took", ms_text(e["duration_ms"])),
            ("result", Text("ok", style="green") if e["ok"] else Text("failed", style="red")),
            ("error", Text(e["error"], style="red") if e["error"] else "-"),
        ]
    )

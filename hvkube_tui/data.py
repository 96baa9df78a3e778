"""Reading what the dashboard shows, off the UI thread.

`DataReader.poll()` first asks the store whether anything changed since the
last read (SQLite's `PRAGMA data_version`, one cheap statement on this
thread's own connection); only then does it read every view's data in one
read transaction. `format_rows()` turns a snapshot into plain text rows keyed
by name or id, so the UI thread only has to diff them against its tables.

Time-dependent text (ages, uptimes) comes from the injected clock, so tests
and snapshots can fix it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from statistics import median
from typing import Any

import peewee as pw

from core.engine import Engine
from core.errors import HvkubeError
from core.models import HostCapacity

Clock = Callable[[], datetime]
# A cell: plain text, or (text, style name) for coloured cells.
Cell = str | tuple[str, str]
Row = tuple[Cell, ...]

AGENT_LIMIT = 1000  # newest agents shown (plus every unfinished one)
EVENT_LIMIT = 200  # newest events shown
LATENCY_WINDOW = 30  # recent resume latencies per pool (sparkline, median)
CAPACITY_EVERY_S = 10.0  # host memory is re-read at most this often
ACTIVE_AGENT = ("pending", "scheduled", "running")

VIEWS = ("pools", "templates", "vms", "agents", "events")

COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    "pools": (
        ("name", "NAME"),
        ("template", "TEMPLATE"),
        ("desired", "WANT"),
        ("hot", "HOT"),
        ("warm", "WARM"),
        ("cold", "COLD"),
        ("running", "RUN"),
        ("error", "ERR"),
        ("p50", "P50"),
        ("trend", "RESUME TREND"),
    ),
    "templates": (
        ("name", "NAME"),
        ("memory", "MEMORY"),
        ("cpus", "CPUS"),
        ("gpu", "GPU"),
        ("pools", "POOLS"),
        ("disk", "DISK"),
    ),
    "vms": (
        ("name", "NAME"),
        ("pool", "POOL"),
        ("state", "STATE"),
        ("agent", "AGENT"),
        ("ip", "IP"),
        ("memory", "MEM"),
        ("uptime", "UPTIME"),
        ("resume", "LAST RESUME"),
    ),
    "agents": (
        ("id", "ID"),
        ("workflow", "WORKFLOW"),
        ("pool", "POOL"),
        ("status", "STATUS"),
        ("vm", "VM"),
        ("age", "AGE"),
        ("duration", "DURATION"),
    ),
    "events": (
        ("id", "ID"),
        ("time", "TIME (UTC)"),
        ("kind", "KIND"),
        ("vm", "VM"),
        ("pool", "POOL"),
        ("took", "TOOK"),
        ("result", "RESULT"),
    ),
}

STATE_STYLES = {
    "running": "bold green",
    "paused": "magenta",
    "saved": "cyan",
    "off": "grey50",
    "error": "bold red",
    "missing": "red",
    "pending": "yellow",
    "scheduled": "yellow",
    "completed": "green",
    "failed": "red",
    "cancelled": "grey50",
}
TRANSITIONAL_STYLE = "bold yellow"
SPARK_CHARS = "▁▂▃▄▅▆▇█"


def system_clock() -> datetime:
    return datetime.now(UTC)


@dataclass
class Snapshot:
    """Everything the views need, read in one go."""

    version: int
    backend: str
    simulated: bool
    readonly: bool
    capacity: HostCapacity | None
    templates: dict[str, dict[str, Any]]
    pools: dict[str, dict[str, Any]]
    vms: dict[str, dict[str, Any]]
    agents: dict[str, dict[str, Any]]
    events: dict[str, dict[str, Any]]
    agent_counts: dict[str, int] = field(default_factory=dict)
    read_ms: float = 0.0

    def record(self, view: str, key: str) -> dict[str, Any] | None:
        table: dict[str, dict[str, Any]] = getattr(self, view)
        return table.get(key)


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


class DataReader:
    """Reads snapshots for one dashboard. Call it from a single thread: SQLite's
    data_version is per connection, and the store gives each thread its own."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.last_version: int | None = None
        self._capacity: HostCapacity | None = None
        self._capacity_at = 0.0

    def changed(self) -> bool:
        return self.engine.store.data_version() != self.last_version

    def poll(self, force: bool = False) -> Snapshot | None:
        """A new snapshot when the database changed (or `force`), else None."""
        version = self.engine.store.data_version()
        if not force and version == self.last_version:
            return None
        snapshot = self.read(version)
        self.last_version = version
        return snapshot

    def _host_capacity(self) -> HostCapacity | None:
        now = time.monotonic()
        if self._capacity is None or now - self._capacity_at >= CAPACITY_EVERY_S:
            try:
                self._capacity = self.engine.backend.capacity()
            except HvkubeError:
                self._capacity = None
            self._capacity_at = now
        return self._capacity

    def refresh_capacity(self) -> None:
        self._capacity_at = 0.0

    def read(self, version: int | None = None) -> Snapshot:
        started = time.perf_counter()
        engine = self.engine
        t = engine.store.t
        if version is None:
            version = engine.store.data_version()
        with engine.store.db.atomic():  # one consistent read (a deferred read transaction)
            templates = {
                r["name"]: r
                for r in t.Template.select(
                    t.Template.name,
                    t.Template.disk_path,
                    t.Template.memory_mb,
                    t.Template.cpus,
                    t.Template.gpu,
                    t.Template.software,
                    t.Template.rdp_port,
                    t.Template.mcp_endpoint,
                )
                .order_by(t.Template.name)
                .dicts()
            }
            pools = {
                r["name"]: r
                for r in t.Pool.select(
                    t.Pool.name,
                    t.Pool.template.alias("template"),
                    t.Pool.desired_count,
                    t.Pool.warm_count,
                    t.Pool.hot_count,
                    t.Pool.max_per_host,
                    t.Pool.release_policy,
                )
                .order_by(t.Pool.name)
                .dicts()
            }
            vms = {
                r["name"]: r
                for r in t.VM.select(
                    t.VM.name,
                    t.VM.template.alias("template"),
                    t.VM.pool.alias("pool"),
                    t.VM.state,
                    t.VM.ip,
                    t.VM.rdp_port,
                    t.VM.memory_mb,
                    t.VM.disk_path,
                    t.VM.created_at,
                    t.VM.last_resumed_at,
                    t.VM.last_resume_ms,
                    t.VM.agent_id,
                    t.VM.holder,
                    t.VM.error,
                    t.VM.raw_state,
                    t.VM.op_kind,
                )
                .order_by(t.VM.name)
                .dicts()
            }
            agent_fields = (
                t.Agent.id,
                t.Agent.pool,
                t.Agent.workflow,
                t.Agent.status,
                t.Agent.vm,
                t.Agent.created_at,
                t.Agent.started_at,
                t.Agent.finished_at,
                t.Agent.wait_reason,
                t.Agent.result,
                t.Agent.timeout_s,
            )
            agent_rows = list(
                t.Agent.select(*agent_fields).order_by(t.Agent.id.desc()).limit(AGENT_LIMIT).dicts()
            )
            oldest_shown = agent_rows[-1]["id"] if agent_rows else 0
            agent_rows += list(
                t.Agent.select(*agent_fields)
                .where(t.Agent.status.in_(ACTIVE_AGENT) & (t.Agent.id < oldest_shown))
                .order_by(t.Agent.id.desc())
                .dicts()
            )
            agents = {str(r["id"]): r for r in agent_rows}
            agent_counts: dict[str, int] = {
                status: n
                for status, n in t.Agent.select(t.Agent.status, pw.fn.COUNT(t.Agent.id))
                .group_by(t.Agent.status)
                .tuples()
            }
            events = {
                str(r["id"]): r
                for r in t.Event.select().order_by(t.Event.id.desc()).limit(EVENT_LIMIT).dicts()
            }
            for name, pool in pools.items():
                latencies = [
                    ms
                    for (ms,) in t.Event.select(t.Event.duration_ms)
                    .where((t.Event.pool == name) & (t.Event.kind == "resume") & t.Event.ok)
                    .order_by(t.Event.id.desc())
                    .limit(LATENCY_WINDOW)
                    .tuples()
                ]
                latencies.reverse()  # oldest first, for the sparkline
                pool["latencies"] = latencies
                pool["counts"] = {}
                pool["vm_count"] = 0
        for vm in vms.values():
            pool = pools.get(vm["pool"]) if vm["pool"] else None
            if pool is not None:
                counts = pool["counts"]
                counts[vm["state"]] = counts.get(vm["state"], 0) + 1
                pool["vm_count"] += 1
        for tpl in templates.values():
            tpl["pools"] = [p["name"] for p in pools.values() if p["template"] == tpl["name"]]
        return Snapshot(
            version=version,
            backend=engine.backend.name,
            simulated=bool(getattr(engine.backend, "simulated", False)),
            readonly=engine.readonly,
            capacity=self._host_capacity(),
            templates=templates,
            pools=pools,
            vms=vms,
            agents=agents,
            events=events,
            agent_counts=agent_counts,
            read_ms=(time.perf_counter() - started) * 1000.0,
        )


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
    when = _aware(when)
    return "-" if when is None else duration_text((now - when).total_seconds())


def ms_text(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 1000:
        return f"{value / 1000:.1f}s"
    return f"{value:.0f}ms" if value >= 10 else f"{value:.1f}ms"


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


def state_cell(state: str) -> Cell:
    from core.models import VMState

    try:
        transitional = VMState(state).transitional
    except ValueError:
        transitional = False
    return (state, TRANSITIONAL_STYLE if transitional else STATE_STYLES.get(state, ""))


def pool_median(pool: dict[str, Any]) -> float | None:
    latencies: list[float] = pool.get("latencies") or []
    return median(latencies) if latencies else None


def format_rows(view: str, snap: Snapshot, now: datetime) -> dict[str, Row]:
    """The view's rows as plain cells, keyed by name or id, in display order."""
    rows: dict[str, Row] = {}
    if view == "pools":
        for name, p in snap.pools.items():
            c = p["counts"]
            rows[name] = (
                name,
                p["template"],
                str(p["desired_count"]),
                f"{c.get('paused', 0)}/{p['hot_count']}",
                f"{c.get('saved', 0)}/{p['warm_count']}",
                str(c.get("off", 0)),
                str(c.get("running", 0)),
                (str(n), "bold red") if (n := c.get("error", 0) + c.get("missing", 0)) else "0",
                ms_text(pool_median(p)),
                (sparkline_text(p["latencies"]), "cyan"),
            )
    elif view == "templates":
        for name, tp in snap.templates.items():
            rows[name] = (
                name,
                f"{tp['memory_mb']} MB",
                str(tp["cpus"]),
                "yes" if tp["gpu"] else "no",
                ", ".join(tp["pools"]) or "-",
                tp["disk_path"],
            )
    elif view == "vms":
        for name, vm in snap.vms.items():
            running = vm["state"] in ("running", "paused")
            rows[name] = (
                name,
                vm["pool"] or "-",
                state_cell(vm["state"]),
                str(vm["agent_id"])
                if vm["agent_id"] is not None
                else ("held" if vm["holder"] else "-"),
                vm["ip"] or "-",
                mb_text(vm["memory_mb"]),
                since(vm["last_resumed_at"], now) if running else "-",
                ms_text(vm["last_resume_ms"]),
            )
    elif view == "agents":
        for key, a in snap.agents.items():
            started = _aware(a["started_at"])
            finished = _aware(a["finished_at"])
            took = None
            if started is not None:
                took = ((finished or now) - started).total_seconds()
            rows[key] = (
                key,
                a["workflow"],
                a["pool"],
                (a["status"], STATE_STYLES.get(a["status"], "")),
                a["vm"] or "-",
                since(a["created_at"], now),
                duration_text(took),
            )
    elif view == "events":
        for key, e in snap.events.items():
            at = _aware(e["started_at"])
            error = (e["error"] or "").splitlines()[0][:60] if e["error"] else ""
            rows[key] = (
                key,
                at.strftime("%H:%M:%S") if at else "-",
                e["kind"],
                e["vm"] or "-",
                e["pool"] or "-",
                ms_text(e["duration_ms"]),
                ("ok", "green") if e["ok"] else (f"failed: {error}", "red"),
            )
    return rows


def all_rows(snap: Snapshot, now: datetime) -> dict[str, dict[str, Row]]:
    return {view: format_rows(view, snap, now) for view in VIEWS}

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

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from core.controller import ControllerStatus, controller_status
from core.engine import Engine
from core.errors import HvkubeError
from core.models import ACTIVE_AGENT_STATUSES, TRANSITIONAL_STATES, HostCapacity
from core.output import STATE_STYLES
from core.output import ms as ms_text
from core.readmodel import RESUME_WINDOW, ResumeFigures
from core.utc import as_utc

Clock = Callable[[], datetime]
# A cell: plain text, or (text, style name) for coloured cells.
Cell = str | tuple[str, str]
Row = tuple[Cell, ...]

AGENT_LIMIT = 1000  # newest agents shown (plus every unfinished one)
EVENT_LIMIT = 200  # newest events shown
LATENCY_WINDOW = RESUME_WINDOW  # recent resume latencies per pool (sparkline, median)
CAPACITY_EVERY_S = 10.0  # host memory is re-read at most this often
ACTIVE_AGENT = tuple(sorted(s.value for s in ACTIVE_AGENT_STATUSES))

VIEWS = ("pools", "templates", "vms", "agents", "events")
ALL = frozenset(VIEWS)

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

TRANSITIONAL_STYLE = "bold yellow"
SPARK_CHARS = "▁▂▃▄▅▆▇█"


def system_clock() -> datetime:
    return datetime.now(UTC)


VM_FIELDS = (
    "name",
    "template",
    "pool",
    "state",
    "ip",
    "rdp_port",
    "memory_mb",
    "last_resumed_at",
    "last_resume_ms",
    "agent_id",
    "holder",
    "error",
    "raw_state",
)
AGENT_FIELDS = (
    "id",
    "pool",
    "workflow",
    "status",
    "vm",
    "created_at",
    "started_at",
    "finished_at",
    "wait_reason",
    "result",
)
EVENT_FIELDS = ("id", "vm", "pool", "kind", "started_at", "duration_ms", "ok", "error")
FIELDS = {"vms": VM_FIELDS, "agents": AGENT_FIELDS, "events": EVENT_FIELDS}
TIMES = frozenset(
    {"created_at", "last_resumed_at", "started_at", "finished_at"}
)  # parsed from text on demand
CLOCK_VIEWS = ("vms", "agents")  # views with text that changes as time passes


@dataclass
class Snapshot:
    """Everything the views need, read in one go. VMs, agents and events are kept as the
    raw row tuples the database returned (cheap to read and to compare); `record()` turns
    one into a dict for the detail pane and the formatting."""

    version: int
    backend: str
    simulated: bool
    readonly: bool
    capacity: HostCapacity | None
    templates: dict[str, dict[str, Any]]
    pools: dict[str, dict[str, Any]]
    raw: dict[str, dict[str, tuple[Any, ...]]]
    agent_counts: dict[str, int] = field(default_factory=dict)
    vm_states: dict[str, int] = field(default_factory=dict)
    read_ms: float = 0.0
    controller: ControllerStatus | None = None

    def count(self, view: str) -> int:
        if view == "pools":
            return len(self.pools)
        if view == "templates":
            return len(self.templates)
        if view == "agents":
            return sum(self.agent_counts.values())
        if view == "vms":
            return sum(self.vm_states.values())
        return len(self.raw[view])

    def record(self, view: str, key: str) -> dict[str, Any] | None:
        if view == "pools":
            return self.pools.get(key)
        if view == "templates":
            return self.templates.get(key)
        row = self.raw[view].get(key)
        if row is None:
            return None
        return to_record(view, row)


def _parse_time(value: Any) -> datetime | None:
    return as_utc(value if value is None or isinstance(value, datetime) else str(value))


def to_record(view: str, row: tuple[Any, ...]) -> dict[str, Any]:
    record = dict(zip(FIELDS[view], row, strict=True))
    for name in TIMES.intersection(record):
        record[name] = _parse_time(record[name])
    if view == "agents" and isinstance(record["result"], str):
        record["result"] = json.loads(record["result"])
    if view == "events":
        record["ok"] = bool(record["ok"])
    return record


def _ticking(view: str, row: tuple[Any, ...]) -> bool:
    """Does this row show a time that moves (an uptime, an age)?"""
    if view == "vms":
        return bool(row[3] in ("running", "paused"))
    return True


_aware = as_utc


class DataReader:
    """Reads snapshots for one dashboard, and formats them into rows incrementally.

    Call it from a single thread: SQLite's data_version is per connection, and the store
    gives each thread its own. Reads are plain SQL on the store's connection (building
    peewee queries costs more Python than the database takes to answer)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.last_version: int | None = None
        self._capacity: HostCapacity | None = None
        self._capacity_at = 0.0
        self._raw: dict[str, dict[str, tuple[Any, ...]]] = {v: {} for v in VIEWS}
        self._agents: dict[int, tuple[Any, ...]] = {}
        self._agent_top: int | None = None
        self._agent_active: list[int] = []
        self._agent_rows: dict[str, tuple[Any, ...]] | None = None
        self._event_rows: dict[str, tuple[Any, ...]] | None = None
        self._event_top = 0
        self._latencies: dict[str, list[float]] = {}
        self._vms: dict[str, tuple[Any, ...]] | None = None
        self._rows: dict[str, dict[str, Row]] = {v: {} for v in VIEWS}

    def poll(self, force: bool = False, views: frozenset[str] | set[str] = ALL) -> Snapshot | None:
        """A new snapshot when the database changed (or `force`), else None. The rows of
        VMs and agents are only read for the views in `views` (the one on screen): the
        others keep their last rows until they are shown."""
        version = self.engine.store.data_version()
        if not force and version == self.last_version:
            return None
        snapshot = self.read(version, views)
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

    def read(self, version: int | None = None, views: frozenset[str] | set[str] = ALL) -> Snapshot:
        started = time.perf_counter()
        engine = self.engine
        rows = engine.store.views
        if version is None:
            version = engine.store.data_version()
        with engine.store.reading():  # one consistent view (a read transaction)
            templates = {
                name: {
                    "name": name,
                    "disk_path": disk,
                    "memory_mb": memory,
                    "cpus": cpus,
                    "gpu": bool(gpu),
                    "software": json.loads(software) if software else [],
                    "rdp_port": rdp,
                    "pools": [],
                }
                for name, disk, memory, cpus, gpu, software, rdp in rows.templates()
            }
            pools = {
                name: {
                    "name": name,
                    "template": template,
                    "desired_count": desired,
                    "warm_count": warm,
                    "hot_count": hot,
                    "max_per_host": max_per_host,
                    "release_policy": release,
                    "counts": {},
                    "vm_count": 0,
                    "latencies": [],
                }
                for name, template, desired, warm, hot, max_per_host, release in rows.pools()
            }
            if "vms" in views or self._vms is None:
                self._vms = {row[0]: row for row in rows.vms(VM_FIELDS)}
            vms = self._vms
            by_pool_state = rows.vms_by_pool_state()
            agents = (
                self._read_agents()
                if "agents" in views or self._agent_rows is None
                else self._agent_rows
            )
            agent_counts = {status: int(n) for status, n in rows.agents_by_status()}
            events, new_events = self._read_events()
            for name, pool in pools.items():
                if name in self._latencies and name not in new_events:
                    pool["latencies"] = self._latencies[name]
                    continue
                latencies = engine.store.recent_resumes(name, LATENCY_WINDOW)  # oldest first
                pool["latencies"] = self._latencies[name] = latencies
        vm_states: dict[str, int] = {}
        for pool_name, state, n in by_pool_state:
            vm_states[state] = vm_states.get(state, 0) + int(n)
            owner = pools.get(pool_name) if pool_name else None
            if owner is not None:
                owner["counts"][state] = owner["counts"].get(state, 0) + int(n)
                owner["vm_count"] += int(n)
        for pool in pools.values():
            if pool["template"] in templates:
                templates[pool["template"]]["pools"].append(pool["name"])
        return Snapshot(
            version=version,
            backend=engine.backend.name,
            simulated=engine.backend.simulated,
            readonly=engine.readonly,
            capacity=self._host_capacity(),
            templates=templates,
            pools=pools,
            raw={"vms": vms, "agents": agents, "events": events},
            agent_counts=agent_counts,
            vm_states=vm_states,
            read_ms=(time.perf_counter() - started) * 1000.0,
            controller=self._controller(),
        )

    def _controller(self) -> ControllerStatus | None:
        try:
            return controller_status(self.engine)
        except HvkubeError:
            return None

    def _read_agents(self) -> dict[str, tuple[Any, ...]]:
        """The newest agents and every unfinished one. A finished agent never changes again
        (the engine refuses to end one twice), so after the first read only new agents and
        the ones that were unfinished last time are read."""
        views = self.engine.store.views
        if self._agent_top is None:
            rows = views.newest_agents(AGENT_FIELDS, AGENT_LIMIT)
            oldest = rows[-1][0] if rows else 0
            rows += views.agents_in(AGENT_FIELDS, ACTIVE_AGENT, oldest, inclusive=False)
            fresh = rows
        else:
            # Two queries, not one with OR: each uses its index (primary key, status).
            fresh = views.agents_after(AGENT_FIELDS, self._agent_top)
            fresh += views.agents_in(AGENT_FIELDS, ACTIVE_AGENT, self._agent_top, inclusive=True)
            seen = {row[0] for row in fresh}
            was_active = [i for i in self._agent_active if i not in seen]
            for start in range(0, len(was_active), 500):
                fresh += views.agents_with_ids(AGENT_FIELDS, was_active[start : start + 500])
        cache = self._agents
        fresh = [row for row in fresh if cache.get(row[0]) != row]  # only what changed
        for row in fresh:
            cache[row[0]] = row
        if fresh:
            ids = sorted(cache, reverse=True)  # newest first, as shown
            keep = set(ids[:AGENT_LIMIT])
            keep.update(i for i in ids[AGENT_LIMIT:] if cache[i][3] in ACTIVE_AGENT)
            self._agents = cache = {i: cache[i] for i in ids if i in keep}
        self._agent_top = max(cache, default=self._agent_top or 0)
        self._agent_active = [i for i, row in cache.items() if row[3] in ACTIVE_AGENT]
        if self._agent_rows is None or fresh:
            self._agent_rows = {str(i): row for i, row in cache.items()}
        return self._agent_rows

    def _read_events(self) -> tuple[dict[str, tuple[Any, ...]], set[str]]:
        """The newest events. Events are only ever added, so only new ones are read."""
        fresh = self.engine.store.views.events_after(EVENT_FIELDS, self._event_top, EVENT_LIMIT)
        if fresh or self._event_rows is None:
            merged = {str(row[0]): row for row in fresh}
            for key, row in (self._event_rows or {}).items():
                if len(merged) >= EVENT_LIMIT:
                    break
                merged[key] = row
            self._event_rows = merged
            self._event_top = (
                max(self._event_top, *(row[0] for row in fresh)) if fresh else self._event_top
            )
        pools = {row[2] for row in fresh if row[3] == "resume" and row[2]}
        return self._event_rows, pools

    def format(
        self, snap: Snapshot, now: datetime, clock: frozenset[str] | set[str] = frozenset()
    ) -> dict[str, dict[str, Row]]:
        """Rows of every view. Only rows whose data changed are formatted again, plus, for
        the views in `clock`, the rows whose text depends on the time (ages, uptimes)."""
        result: dict[str, dict[str, Row]] = {}
        for view in VIEWS:
            if view in ("pools", "templates"):
                result[view] = format_rows(view, snap, now)
                continue
            raw = snap.raw[view]
            before_raw = self._raw[view]
            before = self._rows[view]
            if view in clock and view in CLOCK_VIEWS:
                rows = {
                    key: format_row(view, to_record(view, row), now)
                    if key not in before or before_raw.get(key) != row or _ticking(view, row)
                    else before[key]
                    for key, row in raw.items()
                }
            elif raw is before_raw or raw == before_raw:
                rows = before
            else:
                changed = {key for key, _ in raw.items() - before_raw.items()}
                rows = {
                    key: format_row(view, to_record(view, row), now)
                    if key in changed or key not in before
                    else before[key]
                    for key, row in raw.items()
                }
            self._raw[view] = raw
            self._rows[view] = rows
            result[view] = rows
        return result


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


def format_rows(view: str, snap: Snapshot, now: datetime) -> dict[str, Row]:
    """The view's rows as plain cells, keyed by name or id, in display order."""
    rows: dict[str, Row] = {}
    if view == "pools":
        for name, p in snap.pools.items():
            c = p["counts"]
            errors = c.get("error", 0) + c.get("missing", 0)
            rows[name] = (
                name,
                p["template"],
                str(p["desired_count"]),
                f"{c.get('paused', 0)}/{p['hot_count']}",
                f"{c.get('saved', 0)}/{p['warm_count']}",
                str(c.get("off", 0)),
                str(c.get("running", 0)),
                (str(errors), "bold red") if errors else "0",
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
    else:
        for key, raw in snap.raw[view].items():
            rows[key] = format_row(view, to_record(view, raw), now)
    return rows


def format_row(view: str, r: dict[str, Any], now: datetime) -> Row:
    if view == "vms":
        running = r["state"] in ("running", "paused")
        agent = (
            str(r["agent_id"]) if r["agent_id"] is not None else ("held" if r["holder"] else "-")
        )
        return (
            r["name"],
            r["pool"] or "-",
            state_cell(r["state"]),
            agent,
            r["ip"] or "-",
            mb_text(r["memory_mb"]),
            since(r["last_resumed_at"], now) if running else "-",
            ms_text(r["last_resume_ms"]),
        )
    if view == "agents":
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


def all_rows(snap: Snapshot, now: datetime) -> dict[str, dict[str, Row]]:
    return {view: format_rows(view, snap, now) for view in VIEWS}

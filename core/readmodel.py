"""What the dashboard, `pool list` and the API's `/pools` show about a pool: one summary,
computed here, with one window of recent resumes, so all three print the same numbers."""

from __future__ import annotations

import bisect
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from statistics import median, quantiles
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from core.errors import HvkubeError
from core.fleet import host_rows
from core.models import ACTIVE_AGENT_STATUSES, HostCapacity, VMPool
from core.utc import as_utc

if TYPE_CHECKING:
    from core.controller import ControllerStatus
    from core.engine import Engine

# How many of a pool's most recent successful resumes its latency figures cover.
RESUME_WINDOW = 30


class ResumeFigures(BaseModel):
    """A pool's recent resume latencies (oldest first) and their median and 90th percentile."""

    latencies_ms: list[float] = Field(default_factory=list)
    median_ms: float | None = None
    p90_ms: float | None = None

    @classmethod
    def of(cls, latencies_ms: list[float]) -> ResumeFigures:
        if not latencies_ms:
            return cls()
        p90 = (
            quantiles(latencies_ms, n=10, method="inclusive")[-1]
            if len(latencies_ms) > 1
            else latencies_ms[0]
        )
        return cls(latencies_ms=latencies_ms, median_ms=median(latencies_ms), p90_ms=p90)


class PoolSummary(VMPool):
    counts: dict[str, int] = Field(description="VMs per state, plus `held`")
    median_resume_ms: float | None = Field(
        default=None, description=f"median of the last {RESUME_WINDOW} resumes"
    )
    p90_resume_ms: float | None = Field(
        default=None, description=f"90th percentile of the last {RESUME_WINDOW} resumes"
    )


def resume_figures(engine: Engine, pool: str) -> ResumeFigures:
    return ResumeFigures.of(engine.store.recent_resumes(pool, RESUME_WINDOW))


def pool_summary(engine: Engine, name: str) -> PoolSummary:
    pool = engine.get_pool(name)
    figures = resume_figures(engine, name)
    return PoolSummary(
        **pool.model_dump(),
        counts=engine.pool_counts(name),
        median_resume_ms=figures.median_ms,
        p90_resume_ms=figures.p90_ms,
    )


def pool_summaries(engine: Engine) -> list[PoolSummary]:
    return [pool_summary(engine, p.name) for p in engine.list_pools()]


# -- the snapshot the dashboard polls --------------------------------------------------------
# Every view's data read in one read transaction, only when the store changed (SQLite's
# data_version, PostgreSQL's change counter); VMs, agents and events as the raw row tuples the
# store returns (cheap to read and to compare). After the first read only what changed is
# read: VMs and agents by their change marks (schema 6), events by id (they never change).
# The counts per state, pool, host and status are kept up to date from the same changes.

AGENT_LIMIT = 1000  # newest agents shown (and as many of the newest unfinished ones)
EVENT_LIMIT = 200  # newest events shown
LATENCY_WINDOW = RESUME_WINDOW  # recent resume latencies per pool (sparkline, median)
CAPACITY_EVERY_S = 10.0  # host memory is re-read at most this often
ACTIVE_AGENT = tuple(sorted(s.value for s in ACTIVE_AGENT_STATUSES))
_ACTIVE = frozenset(ACTIVE_AGENT)  # for membership tests, quicker than the tuple's

VIEWS = ("pools", "templates", "vms", "agents", "events", "hosts")

VM_FIELDS = (
    "name",
    "template",
    "pool",
    "host",
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
_VM_POOL, _VM_HOST, _VM_STATE = (VM_FIELDS.index(f) for f in ("pool", "host", "state"))
TIMES = frozenset(
    {"created_at", "last_resumed_at", "started_at", "finished_at"}
)  # parsed from text on demand


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
    hosts: dict[str, dict[str, Any]] = field(default_factory=dict)
    event_total: int | None = None  # every event in the store (the view shows the newest)
    # This reader's count of snapshots, and per raw view the keys added, changed or removed
    # since the one before (None: not known, compare every row).
    serial: int = 0
    changed: dict[str, frozenset[str] | None] = field(default_factory=dict)

    def count(self, view: str) -> int:
        if view == "pools":
            return len(self.pools)
        if view == "hosts":
            return len(self.hosts)
        if view == "templates":
            return len(self.templates)
        if view == "agents":
            return sum(self.agent_counts.values())
        if view == "vms":
            return sum(self.vm_states.values())
        if view == "events" and self.event_total is not None:
            return self.event_total
        return len(self.raw[view])

    def record(self, view: str, key: str) -> dict[str, Any] | None:
        if view == "pools":
            return self.pools.get(key)
        if view == "templates":
            return self.templates.get(key)
        if view == "hosts":
            return self.hosts.get(key)
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


class SnapshotReader:
    """Reads snapshots for one dashboard.

    Call it from a single thread: SQLite's data_version is per connection, and the store
    gives each thread its own. Reads are plain SQL on the store's connection (building
    peewee queries costs more Python than the database takes to answer).

    The first read takes every VM and the (id, status) of every agent; later reads take the
    rows changed since the change mark of the read before. Deletions are counted per table
    (schema 10): when a table's count moved, the reader looks for the rows that went (VM
    names against the table's; agents, which only an operator deletes, read anew)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.last_version: int | None = None
        self._capacity: HostCapacity | None = None
        self._capacity_at = 0.0
        self._mark: Any = None  # the change mark of the last read; None before the first
        self._serial = 0
        self._vm_cache: dict[str, tuple[Any, ...]] = {}
        self._vm_groups: Counter[tuple[Any, Any, str]] = Counter()  # (pool, host, state)
        self._vms: dict[str, tuple[Any, ...]] = {}  # by name: what a snapshot shows
        self._agent_status: dict[int, str] | None = None  # every agent's, from the 2nd read
        self._active: set[int] = set()  # the unfinished ones among them
        # The same ids in order, for the refill: built when first needed, then new ones are
        # merged in and finished ones dropped as the refill walks past them.
        self._active_order: list[int] | None = None
        self._active_new: list[int] = []
        self._deletions: dict[str, int] = {}  # the tables' deletion counts at the last read
        self._agent_counts: Counter[str] = Counter()
        self._agents: dict[int, tuple[Any, ...]] = {}  # the newest and every unfinished one
        self._agent_rows: dict[str, tuple[Any, ...]] = {}
        self._event_rows: dict[str, tuple[Any, ...]] | None = None
        self._event_top = 0
        self._event_total: int | None = None
        self._latencies: dict[str, list[float]] = {}

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

    def read(self, version: int | None = None) -> Snapshot:
        started = time.perf_counter()
        engine = self.engine
        rows = engine.store.views
        self._serial += 1
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
            mark = rows.change_mark()
            deletions = rows.deletions()
            vms_changed = self._read_vms(mark, deletions)
            hosts = {h.name: h.model_dump() for h in host_rows(engine.store)}
            agents_changed = self._read_agents(mark, deletions)
            self._mark = mark
            self._deletions = deletions
            events, new_events = self._read_events()
            for name, pool in pools.items():
                if name in self._latencies and name not in new_events:
                    pool["latencies"] = self._latencies[name]
                    continue
                latencies = engine.store.recent_resumes(name, LATENCY_WINDOW)  # oldest first
                pool["latencies"] = self._latencies[name] = latencies
        vm_states: dict[str, int] = {}
        for (pool_name, host_name, state), n in self._vm_groups.items():
            vm_states[state] = vm_states.get(state, 0) + int(n)
            on = hosts.get(host_name) if host_name else None
            if on is not None:
                on["vms"][state] = on["vms"].get(state, 0) + int(n)
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
            raw={"vms": self._vms, "agents": self._agent_rows, "events": events},
            agent_counts={status: n for status, n in self._agent_counts.items() if n},
            vm_states=vm_states,
            read_ms=(time.perf_counter() - started) * 1000.0,
            controller=self._controller(),
            hosts=hosts,
            event_total=self._event_total,
            serial=self._serial,
            changed={"vms": vms_changed, "agents": agents_changed},
        )

    def _controller(self) -> ControllerStatus | None:
        # The controller module (scheduler, provisioning...) loads only for the dashboard,
        # not for the API and CLI, which also import this module.
        from core.controller import controller_status

        try:
            return controller_status(self.engine)
        except HvkubeError:
            return None

    def _gone(self, table: str, deletions: dict[str, int]) -> bool:
        """Were rows of `table` deleted since the last read?"""
        return self._deletions.get(table) != deletions.get(table)

    def _read_vms(self, mark: Any, deletions: dict[str, int]) -> frozenset[str] | None:
        """Bring the VM cache up to date; the names added, changed or removed (None: all)."""
        views = self.engine.store.views
        cache = self._vm_cache
        groups = self._vm_groups
        if self._mark is None:
            fresh = views.vms(VM_FIELDS)
            cache.clear()
            groups.clear()
        else:
            fresh = views.changed("vm", VM_FIELDS, self._mark)
        touched: set[str] = set()
        added = False
        for row in fresh:
            name = row[0]
            old = cache.get(name)
            if old == row:
                continue
            if old is None:
                added = True
            else:
                groups[(old[_VM_POOL], old[_VM_HOST], old[_VM_STATE])] -= 1
            groups[(row[_VM_POOL], row[_VM_HOST], row[_VM_STATE])] += 1
            cache[name] = row
            touched.add(name)
        if self._mark is not None and self._gone("vm", deletions):
            for name in set(cache) - views.vm_names():
                old = cache.pop(name)
                groups[(old[_VM_POOL], old[_VM_HOST], old[_VM_STATE])] -= 1
                touched.add(name)
        if touched or self._mark is None:
            for key in [k for k, n in groups.items() if n <= 0]:
                del groups[key]
            # A new dict for each snapshot (the UI thread keeps the last one), in name order.
            self._vms = dict(sorted(cache.items())) if added else dict(cache)
        if self._mark is None:
            return None
        return frozenset(touched)

    def _read_agents(self, mark: Any, deletions: dict[str, int]) -> frozenset[str] | None:
        """Bring the agents up to date: the status of every one (for the counts) and the rows
        of the newest AGENT_LIMIT and of the newest AGENT_LIMIT unfinished ones (for the
        view). The ids added, changed or removed in the view (None: all)."""
        views = self.engine.store.views
        status = self._agent_status
        counts = self._agent_counts
        changed: list[tuple[Any, ...]] = []
        full = self._mark is None
        if full:
            # Counted in SQL: quicker before the first paint than every agent's status.
            self._agent_status = None
            self._agent_counts = Counter({str(s): int(n) for s, n in views.agents_by_status()})
        else:
            # Agents are only deleted by hand (hvkube never does): then read them anew.
            full = self._gone("agent", deletions)
            if not full:
                # (id, status) of each changed agent: the counts need no more, and only the
                # few in the view are read whole.
                changed = views.changed("agent", ("id", "status"), self._mark)
            if status is not None and not full:
                for agent, new in changed:
                    before = status.get(agent)
                    if before != new:
                        if before is not None:
                            counts[before] -= 1
                        counts[new] += 1
                        status[agent] = new
                        if new in _ACTIVE:
                            if agent not in self._active:
                                self._active.add(agent)
                                if self._active_order is not None:
                                    self._active_new.append(agent)
                        else:
                            self._active.discard(agent)
                if len(self._active_new) > len(self._active) // 2 + 1000:
                    # Refills are rare when agents run oldest first: rather than keep
                    # every id that came since, sort anew at the next one.
                    self._active_order, self._active_new = None, []
            if status is None or full:
                # Every agent's status (from the second read on): the counts follow it.
                status = self._agent_status = dict(views.agent_statuses())
                self._agent_counts = Counter(status.values())
                self._active = {i for i, now in status.items() if now in _ACTIVE}
                self._active_order = None
                self._active_new = []
                full = full or any(i not in status for i in self._agents)  # deleted since
        if full:
            cache = {row[0]: row for row in views.newest_agents(AGENT_FIELDS, AGENT_LIMIT)}
            for row in views.newest_in(AGENT_FIELDS, ACTIVE_AGENT, AGENT_LIMIT):
                cache[row[0]] = row
            self._agents = cache
            self._agent_rows = {str(i): cache[i] for i in sorted(cache, reverse=True)}
            return None
        touched = self._follow_agents(changed)
        if touched:
            cache = self._agents
            self._agent_rows = {str(i): cache[i] for i in sorted(cache, reverse=True)}
        return frozenset(touched)

    def _follow_agents(self, changed: list[tuple[Any, ...]]) -> set[str]:
        """Apply changed agents, (id, status), to the view's agents: the newest AGENT_LIMIT
        of all and of the unfinished. Every agent newer than the oldest of either set is in
        it, so a changed agent outside it can only be one that joins the unfinished; when
        unfinished ones leave, the next older ones are read."""
        cache = self._agents
        ids = sorted(cache, reverse=True)
        floor = ids[AGENT_LIMIT - 1] if len(ids) >= AGENT_LIMIT else 0
        active = [i for i in ids if cache[i][3] in _ACTIVE]
        active_floor = active[AGENT_LIMIT - 1] if len(active) >= AGENT_LIMIT else 0
        wanted = [
            i
            for i, now in changed
            if i in cache or i >= floor or (now in _ACTIVE and i >= active_floor)
        ]
        fresh = self._agents_with_ids(wanted)
        touched: set[int] = set()
        for row in fresh:
            i = row[0]
            old = cache.get(i)
            if old == row:
                continue
            if old is not None or i >= floor or (row[3] in _ACTIVE and i >= active_floor):
                cache[i] = row
                touched.add(i)
        if not touched:
            return set()
        ids = sorted(cache, reverse=True)
        active = [i for i in ids if cache[i][3] in _ACTIVE and i >= active_floor]
        missing = AGENT_LIMIT - len(active)
        if missing > 0 and active_floor:
            # Unfinished ones left: the next older unfinished ones (those in the cache too),
            # found among the statuses this reader follows and read by id: walking the
            # (status, id) index past the rows that left a status costs the server more.
            below = self._active_below(active_floor, missing)
            older = sorted(self._agents_with_ids(below), key=lambda row: row[0], reverse=True)
            for row in older:
                if cache.get(row[0]) != row:
                    cache[row[0]] = row
                    touched.add(row[0])
            active += [row[0] for row in older]
            ids = sorted(cache, reverse=True)
        keep = set(ids[:AGENT_LIMIT]).union(active[:AGENT_LIMIT])
        for i in ids:
            if i not in keep:
                del cache[i]
                touched.add(i)
        return {str(i) for i in touched}

    def _active_below(self, floor: int, count: int) -> list[int]:
        """The `count` highest ids of unfinished agents below `floor`."""
        order = self._active_order
        if order is None or len(order) > 2 * len(self._active) + 1000:
            order = self._active_order = sorted(self._active)  # (again, once mostly stale)
        elif self._active_new:
            order += self._active_new
            order.sort()  # a sorted run and a short tail: merged in linear time
        self._active_new = []
        end = bisect.bisect_left(order, floor)
        start = end
        picked: list[int] = []
        while start > 0 and len(picked) < count:
            start -= 1
            agent = order[start]
            if agent in self._active and (not picked or picked[-1] != agent):
                picked.append(agent)
        order[start:end] = picked[::-1]  # the finished ones and repeats walked past go
        return picked

    def _agents_with_ids(self, ids: list[int]) -> list[tuple[Any, ...]]:
        views = self.engine.store.views
        rows: list[tuple[Any, ...]] = []
        for start in range(0, len(ids), 500):
            rows += views.agents_with_ids(AGENT_FIELDS, ids[start : start + 500])
        return rows

    def _read_events(self) -> tuple[dict[str, tuple[Any, ...]], set[str]]:
        """The newest events. Events are only ever added, so only new ones are read."""
        fresh = self.engine.store.views.events_after(EVENT_FIELDS, self._event_top, EVENT_LIMIT)
        if self._event_total is None or len(fresh) >= EVENT_LIMIT:
            # Counted once, and again only when more came than one read shows; events are
            # only ever added, so the new ones are the rest.
            self._event_total = self.engine.store.views.event_count()
        else:
            self._event_total += len(fresh)
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

"""Several hosts on one store: what each host is (up, down, idle), taking down a host whose
heartbeat stopped, and where a pool's new VMs go.

Each host's controller acts on its own host's VMs only. The one write to another host's rows
is taking a host down: once its heartbeat has been gone for longer than its lease, any other
host's controller marks it down (one conditional UPDATE, so one of them does it), marks its
VMs `unknown` (not missing: nobody rebuilds them elsewhere) and fails or requeues the agents
on them by each agent's `on_host_down`. When the host's controller starts again, its
reconcile settles those VMs against what the host shows.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from core.models import AgentStatus, Host, VMPool, VMState
from core.utc import as_utc, utcnow

if TYPE_CHECKING:
    from core.store import Store

# States a down host's VMs keep: half-built and half-deleted rows are settled by the host's
# own reconcile when it returns, missing ones are gone anyway.
_KEEP_WHEN_DOWN = (VMState.PROVISIONING.value, VMState.DELETING.value, VMState.MISSING.value)


def _status(row: dict[str, Any], now: datetime) -> str:
    expires = row["expires_at"]
    if row["down"]:
        return "down"
    if expires is None:
        return "idle"
    return "up" if as_utc(expires) > as_utc(now) else "down"  # type: ignore[operator]


def host_summary(store: Store) -> list[Host]:
    """Every host of the store with its status, heartbeat age, memory and VMs by state."""
    counts: dict[str, dict[str, int]] = {}
    for host, state, n in store.hosts.vm_counts():
        counts.setdefault(host, {})[state] = n
    return [h.model_copy(update={"vms": counts.get(h.name, {})}) for h in host_rows(store)]


def host_rows(store: Store) -> list[Host]:
    """Every host of the store with its status, heartbeat age and memory (no VM counts)."""
    now = utcnow()
    out = []
    for row in store.hosts.rows():
        beat = as_utc(row["heartbeat_at"])
        out.append(
            Host(
                name=row["name"],
                status=_status(row, now),  # type: ignore[arg-type]
                draining=bool(row["draining"]),
                heartbeat_at=beat,
                heartbeat_age_s=None
                if beat is None
                else max(0.0, (as_utc(now) - beat).total_seconds()),  # type: ignore[operator]
                lease_s=row["lease_s"],
                down_since=as_utc(row["down_since"]),
                total_memory_mb=row["total_memory_mb"],
                free_memory_mb=row["free_memory_mb"],
                backend=row["backend"],
            )
        )
    return out


def down_hosts(store: Store) -> set[str]:
    now = utcnow()
    return {r["name"] for r in store.hosts.rows() if _status(r, now) == "down"}


def take_down_expired(store: Store, me: str, requeue: Any, fail: Any) -> list[str]:
    """Take down every host (not `me`) whose heartbeat expired: its VMs become unknown, and
    the agents on them are failed (`fail(id, status, why)`) or requeued (`requeue(id,
    status, why)`) by their policy; scheduled agents had not started and are requeued.
    Returns the hosts taken down by this call."""
    taken: list[str] = []
    now = utcnow()
    for name in store.hosts.expired(now):
        if name == me:
            continue
        with store.write():
            if not store.hosts.take_down(name, now):
                continue  # another controller did it, or the host came back
            why = f"host {name} went down (no heartbeat since its lease ran out)"
            settle_agents(store, name, why, requeue, fail)
            store.hosts.mark_vms_unknown(name, _KEEP_WHEN_DOWN, why)
        taken.append(name)
    return taken


def settle_agents(store: Store, host: str, why: str, requeue: Any, fail: Any) -> tuple[int, int]:
    """The agents scheduled or running on `host`, which is lost: scheduled ones had not
    started and are requeued, running ones failed or requeued by their `on_host_down`
    (inside the caller's write transaction). Returns (requeued, failed)."""
    requeued = failed = 0
    active = (AgentStatus.SCHEDULED.value, AgentStatus.RUNNING.value)
    for agent_id, status, policy in store.hosts.agents_on(host, active):
        before = AgentStatus(status)
        if before is AgentStatus.SCHEDULED or policy == "requeue":
            requeue(agent_id, before, f"queued again: {why}")
            requeued += 1
        else:
            fail(agent_id, before, why)
            failed += 1
    return requeued, failed


def pool_hosts(pool: VMPool, hosts: list[Host]) -> list[Host]:
    """The hosts new VMs of `pool` may go to: its hosts (all by default), up or idle, not
    draining."""
    allowed = set(pool.hosts) if pool.hosts is not None else None
    return [
        h
        for h in hosts
        if (allowed is None or h.name in allowed) and h.status != "down" and not h.draining
    ]


def plan_builds(
    pool: VMPool, missing: int, per_host: dict[str, int], hosts: list[Host], memory_mb: int
) -> dict[str, int]:
    """How many of `missing` new VMs each host builds: one at a time to the host with the
    most free memory left (after what this plan already put there), never above the pool's
    `max_per_host`. Every controller computes the same plan from the same rows and builds
    its own share. Hosts that reported no memory count as having none spare but may still
    take VMs when no other can."""
    free = {h.name: (h.free_memory_mb or 0) for h in hosts}
    placed = {h.name: 0 for h in hosts}
    for _ in range(missing):
        candidates = [
            name
            for name in placed
            if pool.max_per_host is None or per_host.get(name, 0) + placed[name] < pool.max_per_host
        ]
        if not candidates:
            break
        best = max(
            candidates, key=lambda n: (free[n] - placed[n] * memory_mb, [-ord(c) for c in n])
        )
        placed[best] += 1
    return {name: n for name, n in placed.items() if n}


def surplus_on(pool: VMPool, per_host: dict[str, int], me: str, usable: set[str]) -> int:
    """How many of its VMs host `me` removes when the pool has more than it wants: the
    surplus comes off the hosts with the most VMs first (hosts no longer usable before all),
    the same split on every host."""
    total = sum(per_host.values())
    surplus = total - pool.desired_count
    over_cap = 0
    if pool.max_per_host is not None:
        over_cap = max(0, per_host.get(me, 0) - pool.max_per_host)
    if surplus <= 0:
        return 0
    counts = dict(per_host)
    taken = {name: 0 for name in counts}
    for _ in range(surplus):
        name = max(counts, key=lambda n: (n not in usable, counts[n], n))
        if counts[name] <= 0:
            break
        counts[name] -= 1
        taken[name] += 1
    return max(taken.get(me, 0), min(over_cap, surplus))


def tier_share(count: int, per_host: dict[str, int], me: str) -> int:
    """Host `me`'s part of a pool-wide tier `count`, in proportion to the VMs each host has
    (largest remainder, ties by name): the same split on every host."""
    total = sum(per_host.values())
    if total <= 0 or count <= 0:
        return 0
    count = min(count, total)
    exact = {h: count * n / total for h, n in per_host.items()}
    base = {h: int(v) for h, v in exact.items()}
    left = count - sum(base.values())
    for h in sorted(exact, key=lambda h: (-(exact[h] - base[h]), h))[:left]:
        base[h] += 1
    return base.get(me, 0)

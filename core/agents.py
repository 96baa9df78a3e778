"""The agent queue's lifecycle: one transition table, each transition one compare-and-swap.

    pending --schedule--> scheduled --start--> running --end--> completed | failed | cancelled
       ^                      |                   |
       +------ requeue -------+-------------------+
    (any active status) --end--> failed | cancelled

An agent's status changes only here, and only from the status the caller saw: a transition
whose agent has moved meanwhile (cancelled, timed out, taken by another process) changes
nothing and says so, so two processes never both act on one agent.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from core.models import ACTIVE_AGENT_STATUSES, AgentResult, AgentStatus
from core.store import Store, utcnow

PENDING, SCHEDULED, RUNNING = AgentStatus.PENDING, AgentStatus.SCHEDULED, AgentStatus.RUNNING
ENDED = frozenset({AgentStatus.COMPLETED, AgentStatus.FAILED, AgentStatus.CANCELLED})

# Which status may follow which.
TRANSITIONS: dict[AgentStatus, frozenset[AgentStatus]] = {
    PENDING: frozenset({SCHEDULED}) | ENDED,
    SCHEDULED: frozenset({RUNNING, PENDING}) | ENDED,
    RUNNING: frozenset({PENDING}) | ENDED,
}


def _statuses(before: AgentStatus | Iterable[AgentStatus]) -> tuple[AgentStatus, ...]:
    if isinstance(before, AgentStatus):
        return (before,)
    return tuple(sorted(before))


class AgentQueue:
    """Transitions of the agents in one store; `guard` refuses them in read-only mode."""

    def __init__(self, store: Store, guard: Callable[[str], None]) -> None:
        self.store = store
        self.guard = guard

    def move(
        self,
        agent_id: int,
        before: AgentStatus | Iterable[AgentStatus],
        after: AgentStatus,
        **fields: Any,
    ) -> bool:
        """Move an agent to `after`, only if it is still in (one of) `before`. Returns
        whether it moved. A transition the table does not allow is a programming error."""
        statuses = _statuses(before)
        for status in statuses:
            if after not in TRANSITIONS.get(status, frozenset()):
                raise ValueError(f"an agent cannot go from {status.value} to {after.value}")
        self.guard(f"change agent {agent_id}")
        return self.store.swaps.agent(
            agent_id, {"status": after.value, **fields}, (s.value for s in statuses)
        )

    def schedule(self, pool: str, limit: int, host: str | None = None) -> list[tuple[Any, ...]]:
        """Mark up to `limit` of the pool's oldest pending agents scheduled (by the controller
        of `host`), in one write transaction. Returns their (id, exec_command, input,
        timeout_s, exec_env) rows."""
        self.guard("schedule agents")
        return self.store.swaps.take_agents(pool, PENDING.value, SCHEDULED.value, limit, host)

    def start(self, agent_id: int, vm: str, before: AgentStatus = SCHEDULED) -> bool:
        """The agent's VM is ready: it runs there from now."""
        return self.move(agent_id, before, RUNNING, vm=vm, started_at=utcnow(), wait_reason=None)

    def requeue(self, agent_id: int, before: AgentStatus, why: str) -> bool:
        """Back to the queue, with the reason it waits."""
        return self.move(agent_id, before, PENDING, vm=None, started_at=None, wait_reason=why)

    def end(
        self,
        agent_id: int,
        after: AgentStatus,
        result: AgentResult | None,
        before: AgentStatus | Iterable[AgentStatus] = ACTIVE_AGENT_STATUSES,
    ) -> bool:
        """Completed, failed or cancelled, with its result."""
        return self.move(
            agent_id,
            before,
            after,
            finished_at=utcnow(),
            wait_reason=None,
            result=result.model_dump() if result else None,
        )

    def fail(
        self,
        agent_id: int,
        why: str,
        before: AgentStatus | Iterable[AgentStatus] = ACTIVE_AGENT_STATUSES,
    ) -> bool:
        return self.end(agent_id, AgentStatus.FAILED, AgentResult(success=False, error=why), before)

    def set_wait_reason(self, pool: str, reason: str | None) -> None:
        """Why the pool's pending agents wait (shown to the operator); no status changes."""
        self.guard("note why agents wait")
        self.store.swaps.wait_reason(pool, PENDING.value, reason)

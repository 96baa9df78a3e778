"""The agent lifecycle: one transition table, each transition a compare-and-swap."""

from __future__ import annotations

import pytest

from core.agents import TRANSITIONS
from core.engine import Engine
from core.errors import ReadOnlyMode
from core.models import ACTIVE_AGENT_STATUSES, AgentResult, AgentStatus


def test_every_active_status_has_its_transitions_and_ended_ones_have_none() -> None:
    assert set(TRANSITIONS) == set(ACTIVE_AGENT_STATUSES)
    for ended in set(AgentStatus) - ACTIVE_AGENT_STATUSES:
        assert ended.finished and ended not in TRANSITIONS


def test_a_transition_from_a_status_the_agent_has_left_changes_nothing(
    engine: Engine, pool: str
) -> None:
    agent = engine.submit_agent(pool, "wf")
    queue = engine.agents
    assert queue.move(agent.id, AgentStatus.PENDING, AgentStatus.SCHEDULED)
    # A second process that still saw it pending cannot schedule it again.
    assert not queue.move(agent.id, AgentStatus.PENDING, AgentStatus.SCHEDULED)
    assert queue.start(agent.id, "bp-001")
    ended = AgentResult(success=True)
    assert queue.end(agent.id, AgentStatus.COMPLETED, ended)
    assert not queue.requeue(agent.id, AgentStatus.RUNNING, "too late")
    got = engine.get_agent(agent.id)
    assert got.status is AgentStatus.COMPLETED and got.vm == "bp-001" and got.finished_at


def test_a_transition_the_table_does_not_allow_is_refused_before_any_write(
    engine: Engine, pool: str
) -> None:
    agent = engine.submit_agent(pool, "wf")
    with pytest.raises(ValueError, match="pending to running"):
        engine.agents.start(agent.id, "bp-001", before=AgentStatus.PENDING)
    assert engine.get_agent(agent.id).status is AgentStatus.PENDING


def test_read_only_mode_refuses_every_transition(engine: Engine, pool: str) -> None:
    agent = engine.submit_agent(pool, "wf")
    engine.readonly = True
    for change in (
        lambda: engine.agents.move(agent.id, AgentStatus.PENDING, AgentStatus.SCHEDULED),
        lambda: engine.agents.schedule(pool, 5),
        lambda: engine.agents.set_wait_reason(pool, "x"),
        lambda: engine.agents.fail(agent.id, "x"),
    ):
        with pytest.raises(ReadOnlyMode):
            change()
    assert engine.get_agent(agent.id).status is AgentStatus.PENDING

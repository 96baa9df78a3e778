"""Blocking until an agent ends (for `agent submit --wait` and scripts)."""

from __future__ import annotations

import time

from core.engine import Engine
from core.errors import OperationTimeout
from core.models import Agent


def wait_for_agent(engine: Engine, agent_id: int, timeout_s: float | None = None) -> Agent:
    """Poll the store until the agent has ended; the controller does the work."""
    agent = engine.get_agent(agent_id)
    limit = timeout_s if timeout_s is not None else agent.task.timeout_s + 120
    deadline = time.monotonic() + limit
    last_version = -1
    delay = 0.02
    while not agent.status.finished:
        if time.monotonic() >= deadline:
            raise OperationTimeout(
                f"agent {agent_id} is still {agent.status.value} after {limit:g} s"
                + (f" ({agent.wait_reason})" if agent.wait_reason else "")
                + "; is 'hvkube run' (the controller) running?"
            )
        version = engine.store.data_version()
        if version != last_version:
            last_version = version
            agent = engine.get_agent(agent_id)
            delay = 0.02
            continue
        time.sleep(delay)
        delay = min(0.25, delay * 1.5)
    return agent

"""`hvkube demo`: the dashboard on a fresh simulated host with something to look at.

`seed_demo()` builds, deterministically, a database and a simulated host with
two templates, two pools, VMs in every state (hot, warm, cold, running with an
agent, one in error) and queued, running and finished agents. `demo_activity()`
then keeps it moving while the dashboard is open: VMs are acquired and
released, queued agents start and finish. That loop is a stand-in for the
controller, for the demo only.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
from pathlib import Path
from typing import Any

from core import open_engine
from core.backends.sim import SimHost
from core.engine import Engine
from core.errors import HvkubeError
from core.models import AgentResult, AgentStatus, VMState
from core.scheduler import agent_holder
from core.settings import Settings

DEMO_SCALE = 0.05  # simulated timings x 0.05: a 2.4 s resume takes about 0.12 s
TEMPLATES: tuple[dict[str, Any], ...] = (
    {
        "name": "win11-base",
        "disk_path": "D:\\templates\\win11-base.vhdx",
        "memory_mb": 4096,
        "cpus": 2,
        "software": ["chrome", "python-3.12"],
        "mcp_endpoint": "http://{ip}:8080/mcp",
    },
    {
        "name": "win11-office",
        "disk_path": "D:\\templates\\win11-office.vhdx",
        "memory_mb": 8192,
        "cpus": 4,
        "software": ["office-365", "python-3.12"],
    },
)
POOLS: tuple[dict[str, Any], ...] = (
    {"name": "browser", "template": "win11-base", "count": 6, "warm": 3, "hot": 1},
    {"name": "office", "template": "win11-office", "count": 4, "warm": 2, "release": "save"},
)
WORKFLOWS = ("checkout-flow", "invoice-entry", "login-smoke", "report-export", "form-fill")


def demo_settings(directory: Path, *, scale: float = DEMO_SCALE, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "db": str(directory / "hvkube.db"),
        "backend": "sim",
        "host": "hv01",  # a fixed name, not the machine's: the demo looks the same anywhere
        "sim_scale": scale,
        "sim_memory_mb": 65536,
        "provision_parallelism": 1,  # one at a time: names, IPs and order are reproducible
        "ready_timeout_s": 120.0,
        "op_timeout_s": 60.0,
    }
    values.update(overrides)
    return Settings(**values)


def _sim(engine: Engine) -> SimHost:
    backend = engine.backend
    assert isinstance(backend, SimHost), "the demo runs on the simulated host"
    return backend


def start_agent(engine: Engine, agent_id: int, pool: str) -> str:
    """Do what the scheduler does for one queued agent: acquire a VM for it, mark it running."""
    engine.agents.move(agent_id, AgentStatus.PENDING, AgentStatus.SCHEDULED)
    got = engine.acquire(pool, agent_id=agent_id, holder=agent_holder(agent_id))
    engine.agents.start(agent_id, got.name)
    return got.name


def finish_agent(engine: Engine, agent_id: int, ok: bool) -> None:
    result = (
        AgentResult(success=True, output={"steps": 12})
        if ok
        else AgentResult(success=False, error="element 'Submit' not found after 30 s")
    )
    engine.finish_agent(agent_id, AgentStatus.COMPLETED if ok else AgentStatus.FAILED, result)


def queue_agent(engine: Engine, pool: str, workflow: str) -> int:
    agent = engine.submit_agent(pool, workflow, input={"run": workflow})
    engine.agents.set_wait_reason(pool, "waiting for a free VM")
    return agent.id


def keep_tiers(engine: Engine) -> None:
    """Pause saved VMs until each pool has its hot count again (the controller's job)."""
    for pool in engine.list_pools():
        vms = engine.list_vms(pool=pool.name)
        hot = sum(1 for vm in vms if vm.state is VMState.PAUSED)
        for vm in [vm for vm in vms if vm.state is VMState.SAVED and not vm.held]:
            if hot >= pool.hot_count:
                break
            engine.resume_vm(vm.name)
            engine.pause_vm(vm.name)
            hot += 1


def seed_demo(directory: Path, *, scale: float = DEMO_SCALE) -> Settings:
    """A fresh demo database and simulated host in `directory` (which should be empty).

    VMs are built at simulated speed 0 (instantly); the acquires and releases that leave the
    latency history run at `scale`, so the figures look like a real host's, scaled.
    """
    directory.mkdir(parents=True, exist_ok=True)
    settings = demo_settings(directory, scale=0.0)
    with open_engine(settings) as engine:
        for template in TEMPLATES:
            engine.create_template(**template)
        for spec in POOLS:
            engine.create_pool(**spec)
            # One at a time: which VM lands in which tier must not depend on thread timing.
            engine.provision_pool(str(spec["name"]), parallelism=1)
        _sim(engine).scale = scale
        # Finished agents leave resume history; their VMs go back by the pool's policy.
        for n, (pool, ok) in enumerate(
            [("browser", True), ("office", True), ("browser", False), ("office", True)]
        ):
            agent_id = queue_agent(engine, pool, WORKFLOWS[n % len(WORKFLOWS)])
            start_agent(engine, agent_id, pool)
            finish_agent(engine, agent_id, ok)
        # Running: one VM per pool busy with an agent.
        for pool, workflow in (("browser", "checkout-flow"), ("office", "invoice-entry")):
            start_agent(engine, queue_agent(engine, pool, workflow), pool)
        # Queued.
        queue_agent(engine, "browser", "login-smoke")
        queue_agent(engine, "office", "report-export")
        keep_tiers(engine)
        # One VM in error: its host refuses to start it.
        cold = engine.list_vms(pool="office", state=VMState.OFF)
        if cold:
            broken = cold[-1].name
            _sim(engine).inject_fault("fail", vm=broken, op="start")
            with contextlib.suppress(HvkubeError):
                engine.resume_vm(broken)
        _sim(engine).scale = 0.0
    return demo_settings(directory)


def demo_activity(settings: Settings, stop: threading.Event, period_s: float = 2.0) -> None:
    """Keep the demo alive until `stop` is set: acquire and release VMs, start queued
    agents and finish running ones. Runs with its own engine (and database connection)."""
    settings = settings.replace(readonly=False)
    pools = itertools.cycle([str(p["name"]) for p in POOLS])
    workflows = itertools.cycle(WORKFLOWS)
    outcomes = itertools.cycle([True, True, True, False])
    with open_engine(settings) as engine:
        held: list[tuple[str, str]] = []
        while not stop.wait(period_s):
            try:
                _demo_step(engine, next(pools), held, workflows, outcomes)
            except HvkubeError:
                continue  # the user may be working on the same VMs: try again next time


def _demo_step(
    engine: Engine,
    pool: str,
    held: list[tuple[str, str]],
    workflows: Any,
    outcomes: Any,
) -> None:
    # Give back what was taken last time round, then take one.
    for name, holder in list(held):
        held.remove((name, holder))
        with contextlib.suppress(HvkubeError):
            engine.release(name, holder=holder)
    try:
        got = engine.acquire(pool)
        held.append((got.name, got.holder))
    except HvkubeError:
        pass
    # The stand-in scheduler: finish the oldest running agent, start the oldest queued one.
    running = engine.list_agents(status=AgentStatus.RUNNING, pool=pool, limit=50)
    if running:
        finish_agent(engine, running[-1].id, next(outcomes))
    queued = engine.list_agents(status=AgentStatus.PENDING, pool=pool, limit=50)
    if queued:
        with contextlib.suppress(HvkubeError):
            start_agent(engine, queued[-1].id, pool)
    if len(queued) < 2:
        queue_agent(engine, pool, next(workflows))
    keep_tiers(engine)

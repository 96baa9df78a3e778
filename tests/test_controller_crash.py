"""The controller killed with SIGKILL at random moments, 20 times: after a restart
(reconcile, one tick) the store and the host always agree and nothing is lost."""

from __future__ import annotations

import random
import signal
import time
from pathlib import Path
from typing import Any

from ctl_support import isolated_env, make_engine, once, start_controller, wait_for

from core import Engine
from core.controller import controller_status
from core.models import AgentStatus, HostState, VMState

TRIALS = 20
PG_TRIALS = 4  # the same seeded kills, fewer of them, on a PostgreSQL store
SEED = 20261128
SCALE = "0.002"  # a 45 s boot takes 90 ms: kills land inside steps


def _other_sessions(engine: Engine) -> int:
    row = engine.store.fetch_one(
        "SELECT COUNT(*) AS n FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid() "
        "AND backend_type = 'client backend'",
        (),
    )
    return int(row["n"]) if row else 0


def check_consistent(engine: Engine, trial: int) -> None:
    where = f"trial {trial}"
    vms = {vm.name: vm for vm in engine.list_vms()}
    agents = engine.list_agents(limit=100_000)
    by_id = {a.id: a for a in agents}
    host = {vm.name: vm for vm in engine.backend.list_vms()}

    stuck = [vm.name for vm in vms.values() if vm.state.transitional]
    assert not stuck, f"{where}: VMs stuck in a transitional state: {stuck}"
    unknown = sorted(set(host) - set(vms))
    assert not unknown, f"{where}: VMs on the host that the store does not know: {unknown}"
    for name, vm in vms.items():
        on_host = host.get(name)
        assert on_host is not None, f"{where}: {name} is in the store but not on the host"
        assert not on_host.state.transitional, f"{where}: {name} is {on_host.raw_state}"
        if vm.state is not VMState.ERROR:
            assert on_host.state is HostState(vm.state.value.capitalize()), (
                f"{where}: {name} is {vm.state.value} in the store, {on_host.raw_state} on host"
            )
        if vm.held:
            agent = by_id.get(vm.agent_id or -1)
            assert agent is not None, f"{where}: {name} held by {vm.holder} without an agent"
            assert agent.status is AgentStatus.RUNNING and agent.vm == name, (
                f"{where}: {name} held by agent {agent.id}, which is {agent.status.value}"
            )
    for agent in agents:
        assert agent.status is not AgentStatus.SCHEDULED, f"{where}: agent {agent.id} scheduled"
        if agent.status is AgentStatus.RUNNING:
            vm = vms.get(agent.vm or "")
            assert vm is not None and vm.agent_id == agent.id, (
                f"{where}: agent {agent.id} runs on {agent.vm}, which is not its"
            )
        if agent.status.finished:
            assert agent.result is not None and agent.finished_at is not None, (
                f"{where}: agent {agent.id} ended without a result"
            )


def test_controller_killed_at_random_moments_leaves_a_consistent_state(tmp_path: Path) -> None:
    run_trials(tmp_path, TRIALS)


def test_controller_killed_on_a_postgresql_store(tmp_path: Path, pg_url: str) -> None:
    run_trials(tmp_path, PG_TRIALS, db=pg_url)


def run_trials(tmp_path: Path, trials: int, db: str | None = None) -> None:
    """`trials` kills; `db`: the store (by default an SQLite file in the test's data folder)."""
    rng = random.Random(SEED)
    env = isolated_env(tmp_path, scale=SCALE)
    store: dict[str, Any] = {}
    if db is not None:
        env["HVKUBE_DB"] = store["db"] = db
    with make_engine(tmp_path, **store) as engine:
        engine.create_template("win11", r"C:\t\win11.vhdx", memory_mb=2048)
        engine.create_template("gpu", r"C:\t\gpu.vhdx", memory_mb=2048, gpu=True)
        engine.create_pool("bp", "win11", count=3, warm=2, hot=1)
        # A GPU VM can be neither saved nor checkpointed: hot, and reset by a new disk.
        engine.create_pool("gp", "gpu", count=1, hot=1)
    submitted = 0
    for trial in range(trials):
        with make_engine(tmp_path, **store) as engine:
            count = rng.randint(1, 6)
            hot = rng.randint(0, min(2, count))
            warm = rng.randint(0, count - hot)
            engine.update_pool("bp", count=count, warm=warm, hot=hot)
            for _ in range(rng.randint(4, 12)):
                command = rng.choice(
                    ["true", "sleep 0.05", "sleep 0.2", "echo hi", "exit 1", "sleep 5", None]
                )
                engine.submit_agent(
                    rng.choice(["bp", "bp", "gp"]),
                    "wf",
                    {"trial": trial},
                    timeout_s=1 if command == "sleep 5" else 60,
                    exec_command=command,
                )
                submitted += 1
            # Agents that wait for an outside completion are finished now and then.
            for agent in engine.list_agents(status=AgentStatus.RUNNING):
                if agent.task.exec_command is None and rng.random() < 0.5:
                    engine.cancel_agent(agent.id)
        proc = start_controller(
            env, "--tick", "0.05", "--grace", "0.2", log=tmp_path / f"run-{trial}.log"
        )
        # Once it is in charge, it is busy: reconcile, builds, tier moves, agents.
        with make_engine(tmp_path, **store) as engine:
            wait_for(
                lambda p=proc, e=engine: controller_status(e).pid == p.pid or p.poll() is not None,
                "the controller to take the lease",
            )
        time.sleep(rng.uniform(0.0, 0.6))
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)

        with make_engine(tmp_path, **store) as engine:
            if engine.store.postgres:
                # A statement the killed process had sent runs to its end on the server (a
                # VM's "resuming" may still be written after the kill): reconcile once its
                # sessions are gone, as an operator told "busy, try again shortly" would.
                wait_for(lambda e=engine: _other_sessions(e) == 0, "its sessions to end")
            report = engine.reconcile()
            assert not report.errors, f"trial {trial}: {report.errors}"
            once(engine)
            check_consistent(engine, trial)
            assert len(engine.list_agents(limit=100_000)) == submitted  # none lost

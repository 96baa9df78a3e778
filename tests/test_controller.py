"""The controller against the simulated host at scale 0: pools, agents, timeouts."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from ctl_support import make_engine, once, running, wait_for

from core import Engine
from core.agent_exec import run_command
from core.controller import controller_status
from core.errors import InvalidInput
from core.models import AgentStatus, HostState, VMState
from core.store import utcnow
from tests.host_support import host_named, ref_named


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    eng = make_engine(tmp_path)
    yield eng
    eng.close()


@pytest.fixture
def pool(engine: Engine) -> str:
    engine.create_template("win11", r"C:\Templates\win11.vhdx", memory_mb=4096)
    engine.create_pool("bp", "win11", count=0)
    engine.update_pool("bp", count=6, warm=3, hot=2)
    once(engine)
    return "bp"


def tiers(engine: Engine, pool: str) -> dict[str, int]:
    counts = engine.pool_counts(pool)
    return {k: v for k, v in counts.items() if v and k != "held"}


def host_states(engine: Engine, pool: str) -> dict[str, HostState]:
    return {vm.name: vm.state for vm in engine.backend.list_vms(prefix=f"{pool}-")}


def test_pool_scaled_from_0_to_6_reaches_exactly_its_tiers(engine: Engine, pool: str) -> None:
    assert tiers(engine, pool) == {"paused": 2, "saved": 3, "off": 1}
    host = host_states(engine, pool)
    assert sorted(host.values()) == sorted(
        [HostState.PAUSED] * 2 + [HostState.SAVED] * 3 + [HostState.OFF]
    )
    for vm in engine.list_vms(pool=pool):
        assert host[vm.name].value.lower() == vm.state.value
    # Another tick changes nothing: the pool is in shape.
    events_before = len(engine.events(limit=10_000))
    once(engine)
    assert tiers(engine, pool) == {"paused": 2, "saved": 3, "off": 1}
    kinds = {e.kind for e in engine.events(limit=10_000)[: -events_before or None]}
    assert not kinds & {"provision", "save", "pause", "delete", "stop", "reset"}


def test_scale_down_removes_idle_surplus_and_tiers_follow(engine: Engine, pool: str) -> None:
    engine.update_pool(pool, count=3, warm=1, hot=1)
    once(engine)
    assert tiers(engine, pool) == {"paused": 1, "saved": 1, "off": 1}
    assert len(host_states(engine, pool)) == 3


def test_demote_and_promote_between_tiers(engine: Engine, pool: str) -> None:
    engine.update_pool(pool, hot=0, warm=5)
    once(engine)
    assert tiers(engine, pool) == {"saved": 5, "off": 1}
    engine.update_pool(pool, hot=4, warm=2)
    once(engine)
    assert tiers(engine, pool) == {"paused": 4, "saved": 2}
    engine.update_pool(pool, hot=0, warm=1)
    once(engine)
    assert tiers(engine, pool) == {"saved": 1, "off": 5}
    engine.update_pool(pool, hot=3, warm=0)  # hot from cold: restore clean, resume, pause
    once(engine)
    assert tiers(engine, pool) == {"paused": 3, "off": 3}
    kinds = [e.kind for e in engine.events(limit=10_000)]
    assert {"save", "pause", "resume", "reset", "stop"} <= set(kinds)


def test_vm_deleted_outside_is_replaced(engine: Engine, pool: str) -> None:
    victim = next(vm.name for vm in engine.list_vms(pool=pool) if vm.state is VMState.SAVED)
    engine.backend.inject_fault("delete-vm", vm=victim)  # type: ignore[attr-defined]
    once(engine)
    assert tiers(engine, pool) == {"paused": 2, "saved": 3, "off": 1}
    assert len(host_states(engine, pool)) == 6
    kinds = [e.kind for e in engine.events(vm=victim, limit=100)]
    assert "delete" in kinds and "provision" in kinds


def test_exec_agent_runs_with_vm_details_and_its_vm_is_reset(engine: Engine, pool: str) -> None:
    command = (
        'printf \'{"vm": "%s", "ip": "%s", "port": "%s", "input": %s}\' '
        '"$HVKUBE_VM_NAME" "$HVKUBE_VM_IP" "$HVKUBE_RDP_PORT" "$HVKUBE_AGENT_INPUT"; '
        "echo to-stderr >&2; exit 0"
    )
    agent = engine.submit_agent(pool, "wf", {"url": "https://example.test"}, exec_command=command)
    once(engine)
    done = engine.get_agent(agent.id)
    assert done.status is AgentStatus.COMPLETED, done.result
    assert done.result is not None and done.result.exit_code == 0
    out = done.result.output or {}
    assert out["stderr"] == "to-stderr\n"
    assert out["json"]["vm"] == done.vm
    assert out["json"]["ip"].startswith("172.20.")
    assert out["json"]["port"] == "3389"
    assert out["json"]["input"] == {"url": "https://example.test"}
    vm = engine.get_vm(done.vm or "")
    assert not vm.held and vm.agent_id is None
    kinds = [e.kind for e in engine.events(vm=vm.name, limit=100)]
    assert "release_reset" in kinds
    # Newest first: the agent's resume, then the reset (then maybe a move to the hot tier).
    assert kinds[kinds.index("release_reset") + 1] == "resume"


def test_failing_command_fails_the_agent_with_its_exit_code(engine: Engine, pool: str) -> None:
    agent = engine.submit_agent(pool, "wf", exec_command="echo nope; exit 3")
    once(engine)
    done = engine.get_agent(agent.id)
    assert done.status is AgentStatus.FAILED
    assert done.result is not None and done.result.exit_code == 3
    assert "code 3" in (done.result.error or "")
    assert not engine.get_vm(done.vm or "").held


def test_timed_out_command_is_killed_and_its_vm_released(engine: Engine, pool: str) -> None:
    agent = engine.submit_agent(pool, "wf", timeout_s=1, exec_command="sleep 60")
    once(engine)
    done = engine.get_agent(agent.id)
    assert done.status is AgentStatus.FAILED
    assert "timed out" in (done.result.error if done.result else "")
    assert not engine.get_vm(done.vm or "").held


def test_timed_out_agent_without_command_is_failed_and_released(engine: Engine, pool: str) -> None:
    agent = engine.submit_agent(pool, "wf", timeout_s=1)
    once(engine)
    running = engine.get_agent(agent.id)
    assert running.status is AgentStatus.RUNNING and running.vm
    assert running.ip and running.rdp_port == 3389
    assert engine.get_vm(running.vm).holder == f"agent:{agent.id}"
    # Make it overdue without waiting: it started long ago.
    engine.store.t.Agent.update(started_at=utcnow().replace(year=2000)).where(
        engine.store.t.Agent.id == agent.id
    ).execute()
    once(engine)
    done = engine.get_agent(agent.id)
    assert done.status is AgentStatus.FAILED
    assert "timed out after 1 s" in (done.result.error if done.result else "")
    vm = engine.get_vm(running.vm)
    assert not vm.held
    assert "release_reset" in [e.kind for e in engine.events(vm=vm.name, limit=50)]


def test_agent_completed_through_the_api_releases_its_vm(engine: Engine, pool: str) -> None:
    agent = engine.submit_agent(pool, "wf")
    once(engine)
    vm = engine.get_agent(agent.id).vm
    assert vm and engine.get_vm(vm).held
    from core.models import AgentResult

    engine.finish_agent(agent.id, AgentStatus.COMPLETED, AgentResult(success=True, output={"a": 1}))
    assert not engine.get_vm(vm).held


def test_agents_are_scheduled_oldest_first_and_wait_with_a_reason(
    engine: Engine, pool: str
) -> None:
    ids = [engine.submit_agent(pool, "wf").id for _ in range(8)]
    once(engine)
    statuses = {i: engine.get_agent(i).status for i in ids}
    assert [statuses[i] for i in ids[:6]] == [AgentStatus.RUNNING] * 6
    for i in ids[6:]:
        waiting = engine.get_agent(i)
        assert waiting.status is AgentStatus.PENDING
        assert waiting.wait_reason and "no VM ready in pool bp" in waiting.wait_reason
    # The hot ones went first.
    first = engine.get_agent(ids[0])
    assert "unpause" not in (first.wait_reason or "")
    engine.cancel_agent(ids[0])
    once(engine)
    assert engine.get_agent(ids[6]).status is AgentStatus.RUNNING
    assert engine.get_agent(ids[7]).status is AgentStatus.PENDING


def test_host_full_is_the_reason_shown(tmp_path: Path) -> None:
    engine = make_engine(tmp_path, sim_memory_mb=10240)  # ceiling 8192 MB: two 4 GB VMs
    try:
        engine.create_template("win11", r"C:\t.vhdx", memory_mb=4096)
        engine.create_pool("bp", "win11", count=3, warm=3)
        once(engine)
        ids = [engine.submit_agent("bp", "wf").id for _ in range(3)]
        once(engine)
        assert [engine.get_agent(i).status for i in ids[:2]] == [AgentStatus.RUNNING] * 2
        third = engine.get_agent(ids[2])
        assert third.status is AgentStatus.PENDING
        assert third.wait_reason and third.wait_reason.startswith("host full")
        assert not any(vm.state is VMState.ERROR for vm in engine.list_vms())
    finally:
        engine.close()


def test_gpu_agent_never_lands_on_a_pool_without_gpu(engine: Engine, pool: str) -> None:
    engine.create_template("gpu", r"C:\gpu.vhdx", memory_mb=4096, gpu=True)
    engine.create_pool("gp", "gpu", count=1)  # cold: a GPU VM cannot be saved
    with pytest.raises(InvalidInput):
        engine.submit_agent(pool, "wf", requires_gpu=True)
    # Even a row written behind the API's back is never placed on the non-GPU pool.
    row = engine.store.t.Agent.create(
        pool=pool, workflow="wf", input={}, requires_gpu=True, status="pending"
    )
    good = engine.submit_agent("gp", "wf", requires_gpu=True)
    once(engine)
    bad = engine.get_agent(row.id)
    assert bad.status is AgentStatus.FAILED and bad.vm is None
    assert "GPU" in (bad.result.error if bad.result else "")
    placed = engine.get_agent(good.id)
    assert placed.status is AgentStatus.RUNNING and placed.vm == "gp-001"
    assert not any(vm.agent_id == row.id for vm in engine.list_vms())


def test_cancelled_running_command_is_killed_and_vm_released(
    engine: Engine, pool: str, tmp_path: Path
) -> None:
    import threading

    from core.controller import Controller

    marker = tmp_path / "started"
    agent = engine.submit_agent(pool, "wf", exec_command=f"touch {marker}; sleep 60")
    stop = threading.Event()
    controller = Controller(engine, tick_s=0.05)
    thread = threading.Thread(target=controller.run, args=(stop,))
    thread.start()
    try:
        wait_for(marker.exists, "the command to start")
        engine.cancel_agent(agent.id)
        wait_for(lambda: controller.scheduler and not controller.scheduler.busy(), "worker")
    finally:
        stop.set()
        thread.join(60)
    done = engine.get_agent(agent.id)
    assert done.status is AgentStatus.CANCELLED
    assert not engine.get_vm(done.vm or "").held
    assert controller_status(engine).state == "stopped"


def test_stop_requeues_running_commands_after_the_grace(engine: Engine, pool: str) -> None:
    import threading

    from core.controller import Controller

    agent = engine.submit_agent(pool, "wf", exec_command="sleep 60")
    stop = threading.Event()
    controller = Controller(engine, tick_s=0.05, grace_s=0.2)
    thread = threading.Thread(target=controller.run, args=(stop,))
    thread.start()
    wait_for(lambda: engine.get_agent(agent.id).status is AgentStatus.RUNNING, "agent to run")
    stop.set()
    thread.join(60)
    assert not thread.is_alive()
    again = engine.get_agent(agent.id)
    assert again.status is AgentStatus.PENDING and again.vm is None
    assert "controller stopped" in (again.wait_reason or "")
    assert not any(vm.held or vm.state.transitional for vm in engine.list_vms())


def test_agent_vm_stopped_under_it_is_resumed(engine: Engine, pool: str) -> None:
    agent = engine.submit_agent(pool, "wf")
    with running(engine) as controller:
        wait_for(lambda: engine.get_agent(agent.id).status is AgentStatus.RUNNING, "agent")
        vm = engine.get_agent(agent.id).vm or ""
        before = len(engine.events(vm=vm, kind="resume", limit=100))
        engine.backend.save(ref_named(engine, vm))  # something outside saved it
        wait_for(
            lambda: len(engine.events(vm=vm, kind="resume", limit=100)) > before,
            "the controller to resume it",
        )
        wait_for(lambda: not engine.get_vm(vm).state.transitional, "the resume to end")
        assert controller.ticks > 1
    assert engine.get_agent(agent.id).status is AgentStatus.RUNNING
    assert engine.get_vm(vm).state is VMState.RUNNING
    assert host_named(engine, vm).state is HostState.RUNNING  # type: ignore[union-attr]


def test_agent_vm_deleted_outside_fails_the_agent_and_is_replaced(
    engine: Engine, pool: str
) -> None:
    agent = engine.submit_agent(pool, "wf")
    with running(engine):
        wait_for(lambda: engine.get_agent(agent.id).status is AgentStatus.RUNNING, "agent")
        vm = engine.get_agent(agent.id).vm or ""
        engine.backend.inject_fault("delete-vm", vm=vm)  # type: ignore[attr-defined]
        wait_for(lambda: engine.get_agent(agent.id).status.finished, "the agent to fail")
        wait_for(lambda: tiers(engine, pool) == {"paused": 2, "saved": 3, "off": 1}, "shape")
    done = engine.get_agent(agent.id)
    assert done.status is AgentStatus.FAILED
    assert "deleted outside" in (done.result.error if done.result else "")
    assert len(host_states(engine, pool)) == 6


def test_run_command_kills_the_whole_group_at_the_timeout(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    outcome = run_command(f"sleep 60 & echo $! > {pid_file}; wait", {}, timeout_s=5)
    assert outcome.timed_out
    child = int(pid_file.read_text())

    def gone() -> bool:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return True
        # A zombie waiting for its parent to reap it is dead too.
        stat = Path(f"/proc/{child}/stat")
        return stat.exists() and stat.read_text().split()[2] == "Z"

    wait_for(gone, "the background child to be killed", timeout=10)


def test_controller_status_shows_in_lease_row(engine: Engine, pool: str) -> None:
    status = controller_status(engine)
    assert status.state == "stopped" and not status.running
    assert status.pid == os.getpid()
    assert "controller: stopped" in status.summary()
    data = json.loads(status.model_dump_json())
    assert data["counts"]["vms"] == 6


def test_no_controller_yet(tmp_path: Path) -> None:
    engine = make_engine(tmp_path)
    try:
        status = controller_status(engine)
        assert status.state == "none" and "not running" in status.summary()
    finally:
        engine.close()


def test_leases_one_winner_and_takeover_of_the_dead(engine: Engine) -> None:
    from core.store import leases

    store = engine.store
    assert leases.acquire(store, "x", "a", 30, {"owner": "nohost:1:1"})
    assert not leases.try_take(store, "x", "b", 30)
    assert leases.renew(store, "x", "a", 30)
    # "a" is recorded as a process on another host: alive for us until it expires.
    assert not leases.acquire(store, "x", "b", 30)
    store.t.Lease.update(data={"owner": f"{os.uname().nodename}:999999:1"}).execute()
    assert leases.acquire(store, "x", "b", 30, {"owner": "b"})  # dead holder: taken over
    assert not leases.renew(store, "x", "a", 30)  # "a" notices it lost the lease
    assert leases.release(store, "x", "b")
    assert leases.try_take(store, "x", "c", 30)  # released: free at once


def test_wait_reason_clears_and_time_is_not_asserted(engine: Engine, pool: str) -> None:
    ids = [engine.submit_agent(pool, "wf", exec_command="true").id for _ in range(20)]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and any(not engine.get_agent(i).status.finished for i in ids):
        once(engine)
    assert all(engine.get_agent(i).status is AgentStatus.COMPLETED for i in ids)
    assert not any(vm.held for vm in engine.list_vms())
    assert tiers(engine, pool) == {"paused": 2, "saved": 3, "off": 1}


def test_step_left_by_a_dead_process_is_settled_while_agents_run(
    engine: Engine, pool: str, tmp_path: Path
) -> None:
    import socket

    marker = tmp_path / "started"
    agent = engine.submit_agent(pool, "wf", exec_command=f"touch {marker}; sleep 1; echo done")
    with running(engine):
        wait_for(marker.exists, "the agent's command to start")

        # A CLI that claimed a VM was killed before it resumed it. The claim is made as a
        # real one is, conditionally, so that it never lands on a VM the controller's tier
        # upkeep is moving at that moment.
        def claim_as_dead_cli() -> str | None:
            for vm in engine.list_vms(pool=pool):
                if vm.state is VMState.SAVED and engine.store.update_vm(
                    vm.name,
                    {
                        "state": VMState.RESUMING.value,
                        "holder": "lease-dead",
                        "op_owner": f"{socket.gethostname()}:999999:1",
                        "op_kind": "acquire",
                    },
                    '"state" = ? AND "holder" IS NULL',
                    (VMState.SAVED.value,),
                ):
                    return vm.name
            return None

        victim = wait_for(claim_as_dead_cli, "a saved VM to claim")
        wait_for(lambda: not engine.get_vm(victim).held, "the dead claim to be rolled back")
        wait_for(lambda: engine.get_agent(agent.id).status.finished, "the agent to end")
    done = engine.get_agent(agent.id)
    assert done.status is AgentStatus.COMPLETED, done.result
    assert (done.result.output or {})["stdout"] == "done\n" if done.result else False
    # Back in the pool (the tier upkeep may have moved it on since).
    back = engine.get_vm(victim)
    assert not back.held and back.state in {VMState.SAVED, VMState.PAUSED, VMState.OFF}

"""A fleet as real processes: three `hvkube run --host` controllers, each with its own
simulated host, on one store. Pools spread over them, agents run on all three; one host's
controller is SIGKILLed and its heartbeat left to expire: the others keep serving, nothing
is held twice, nothing is rebuilt on the wrong host."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from ctl_support import REPO, isolated_env, wait_for

from core import Engine, open_engine
from core.backends.sim import SimHost, sim_host_dir
from core.models import AgentStatus, VMState

HOSTS = ("h1", "h2", "h3")
LEASE_S = 2.0
TICK_S = 0.2


@pytest.fixture
def fleet_store(store_url: str) -> str:
    """The store every host shares: an SQLite file (hosts on one machine), then PostgreSQL."""
    return store_url


@pytest.fixture
def env(tmp_path: Path, fleet_store: str) -> dict[str, str]:
    env = isolated_env(tmp_path)
    env["HVKUBE_DB"] = fleet_store
    return env


@pytest.fixture
def engine(fleet_store: str, tmp_path: Path) -> Iterator[Engine]:
    # The test's own engine watches the store; it is the host of no VM.
    with open_engine(db=fleet_store, backend="sim", sim_scale=0, host="watcher") as eng:
        yield eng


def start_host(env: dict[str, str], host: str, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "core.cli",
                "run",
                "--host",
                host,
                "--tick",
                str(TICK_S),
                "--lease-ttl",
                str(LEASE_S),
                "--grace",
                "1",
            ],
            stdout=out,
            stderr=out,
            env=env,
            cwd=REPO,
            start_new_session=True,
        )


def intervals(log: Path) -> dict[str, list[tuple[float, float, str]]]:
    """VM -> [(start, end, agent)] from the lines the agents' commands wrote."""
    starts: dict[str, tuple[str, float]] = {}
    out: dict[str, list[tuple[float, float, str]]] = {}
    for line in log.read_text().splitlines():
        what, agent, vm, at = line.split()
        if what == "start":
            starts[agent] = (vm, float(at))
        elif agent in starts:
            vm_, began = starts.pop(agent)
            out.setdefault(vm_, []).append((began, float(at), agent))
    return out


def test_three_hosts_one_killed_the_others_keep_serving(
    tmp_path: Path, env: dict[str, str], engine: Engine
) -> None:
    engine.create_template("win11", r"C:\t\win11.vhdx", memory_mb=2048)
    engine.create_pool("bp", "win11", count=6, warm=3, hot=0, max_per_host=2)
    runs = tmp_path / "runs.log"
    # Each run writes when it starts and ends on its VM; the time is the shell's clock.
    command = (
        f"echo start $HVKUBE_AGENT_ID $HVKUBE_VM_NAME $(date +%s.%N) >> {runs}; "
        "sleep 0.3; "
        f"echo end $HVKUBE_AGENT_ID $HVKUBE_VM_NAME $(date +%s.%N) >> {runs}"
    )
    procs = {h: start_host(env, h, tmp_path / f"{h}.log") for h in HOSTS}
    try:
        wait_for(
            lambda: (
                {vm.host for vm in engine.list_vms(pool="bp")} == set(HOSTS)
                and len(engine.list_vms(pool="bp")) == 6
                and all(vm.state in {VMState.SAVED, VMState.OFF} for vm in engine.list_vms())
            ),
            "six VMs built, two on each host",
            timeout=120,
        )
        placed = {vm.name: vm.host for vm in engine.list_vms(pool="bp")}
        assert sorted(placed.values()) == ["h1", "h1", "h2", "h2", "h3", "h3"]

        first = [engine.submit_agent("bp", "wf", exec_command=command) for _ in range(24)]
        wait_for(
            lambda: all(engine.get_agent(a.id).status.finished for a in first),
            "the first agents",
            timeout=120,
        )
        done = [engine.get_agent(a.id) for a in first]
        assert {a.status for a in done} == {AgentStatus.COMPLETED}
        assert {a.host for a in done} == set(HOSTS), "agents ran on every host"

        # Long agents, so that some are running on h3 when it dies: half fail with it, half
        # are queued again by their policy.
        slow = command.replace("sleep 0.3", "sleep 2")
        long_ones = [
            engine.submit_agent(
                "bp", "slow", exec_command=slow, on_host_down="requeue" if i % 2 else "fail"
            )
            for i in range(6)
        ]
        wait_for(
            lambda: any(
                engine.get_agent(a.id).status is AgentStatus.RUNNING
                and engine.get_agent(a.id).host == "h3"
                for a in long_ones
            ),
            "an agent running on h3",
            timeout=60,
        )
        on_h3 = {a.id for a in long_ones if engine.get_agent(a.id).host == "h3"}
        os.killpg(procs["h3"].pid, signal.SIGKILL)
        procs["h3"].wait(30)

        wait_for(lambda: engine.get_host("h3").status == "down", "h3 seen down", timeout=60)
        wait_for(
            lambda: {vm.state for vm in engine.list_vms(host="h3")} == {VMState.UNKNOWN},
            "h3's VMs unknown",
            timeout=30,
        )
        wait_for(
            lambda: all(engine.get_agent(a.id).status.finished for a in long_ones),
            "the long agents to end or run again elsewhere",
            timeout=120,
        )
        for agent in (engine.get_agent(a.id) for a in long_ones):
            if agent.id in on_h3 and agent.task.on_host_down == "fail":
                assert agent.status is AgentStatus.FAILED, agent
                assert "went down" in (agent.result.error or "")  # type: ignore[union-attr]
            else:
                assert agent.status is AgentStatus.COMPLETED, agent
                assert agent.host in {"h1", "h2"} or agent.id not in on_h3

        # The other two keep serving.
        later = [engine.submit_agent("bp", "wf", exec_command=command) for _ in range(8)]
        wait_for(
            lambda: all(engine.get_agent(a.id).status.finished for a in later),
            "agents after h3 went down",
            timeout=120,
        )
        assert {engine.get_agent(a.id).status for a in later} == {AgentStatus.COMPLETED}
        assert {engine.get_agent(a.id).host for a in later} <= {"h1", "h2"}

        hosts = json.loads(
            subprocess.run(
                [sys.executable, "-m", "core.cli", "host", "list", "--json"],
                capture_output=True,
                text=True,
                env=env,
                cwd=REPO,
                timeout=60,
                check=True,
            ).stdout
        )
        assert {h["name"]: h["status"] for h in hosts if h["name"] in HOSTS} == {
            "h1": "up",
            "h2": "up",
            "h3": "down",
        }
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs.values():
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)

    # Nothing held twice: on every VM, no two agents' runs overlap.
    for vm, spans in intervals(runs).items():
        spans.sort()
        for (_, end, agent), (start, _, other) in itertools.pairwise(spans):
            assert start >= end, f"{vm} held by agents {agent} and {other} at once"

    # Nothing rebuilt on the wrong host: the same six VMs, each on the host that built it,
    # and each simulated host has exactly the VMs the store says live there.
    assert {vm.name: vm.host for vm in engine.list_vms(pool="bp")} == placed
    root = Path(engine.settings.state_dir())
    for host in HOSTS:
        sim = SimHost(sim_host_dir(root, host), scale=0)
        on_sim = {vm.id for vm in sim.list_vms()}
        assert on_sim == {vm.host_id for vm in engine.list_vms(host=host)}, host

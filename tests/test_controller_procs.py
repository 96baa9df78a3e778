"""The controller as real processes: one active per database, takeover, CLI wiring."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from ctl_support import hvkube, isolated_env, make_engine, start_controller, wait_for

from core import Engine
from core.controller import ControllerStatus, controller_status
from core.models import AgentStatus


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    env = isolated_env(tmp_path)
    with make_engine(tmp_path) as eng:
        eng.create_template("win11", r"C:\t\win11.vhdx")
        eng.create_pool("bp", "win11", count=2, warm=2)
    return env


@pytest.fixture
def engine(tmp_path: Path, env: dict[str, str]) -> Engine:
    eng = make_engine(tmp_path)
    yield eng  # type: ignore[misc]
    eng.close()


def status(engine: Engine) -> ControllerStatus:
    return controller_status(engine)


def test_second_controller_stays_passive_until_the_first_dies(
    engine: Engine, env: dict[str, str], tmp_path: Path
) -> None:
    args = ("--tick", "0.1", "--lease-ttl", "30")  # takeover after a kill needs no expiry
    first = start_controller(env, *args, log=tmp_path / "first.log")
    second = None
    try:
        wait_for(lambda: status(engine).running and status(engine).pid == first.pid, "first")
        second = start_controller(env, *args, log=tmp_path / "second.log")
        wait_for(
            lambda: "another controller is active" in (tmp_path / "second.log").read_text(),
            "the second controller to say it waits",
        )
        ticks = status(engine).ticks
        wait_for(lambda: status(engine).ticks >= ticks + 3, "the first to keep ticking")
        assert status(engine).pid == first.pid
        assert second.poll() is None
        agent = engine.submit_agent("bp", "wf", exec_command="echo one")
        wait_for(lambda: engine.get_agent(agent.id).status.finished, "agent run by the first")

        first.send_signal(signal.SIGKILL)
        first.wait(30)
        wait_for(lambda: status(engine).running and status(engine).pid == second.pid, "takeover")
        agent = engine.submit_agent("bp", "wf", exec_command="echo two")
        wait_for(lambda: engine.get_agent(agent.id).status.finished, "agent run by the second")
        assert engine.get_agent(agent.id).status is AgentStatus.COMPLETED

        second.send_signal(signal.SIGTERM)
        assert second.wait(60) == 0
        final = status(engine)
        assert final.state == "stopped" and not final.running
        assert "controller stopped" in (tmp_path / "second.log").read_text()
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(30)


def test_submit_wait_and_complete_through_the_cli(
    engine: Engine, env: dict[str, str], tmp_path: Path
) -> None:
    proc = start_controller(env, "--tick", "0.1", log=tmp_path / "ctl.log")
    try:
        wait_for(lambda: status(engine).running, "the controller")
        done = hvkube(
            "agent",
            "submit",
            "--pool",
            "bp",
            "--workflow",
            "wf",
            "--input",
            '{"n": 7}',
            "--exec",
            'echo "$HVKUBE_AGENT_INPUT on $HVKUBE_VM_NAME"',
            "--wait",
            "--json",
            env=env,
        )
        assert done.returncode == 0, done.stderr
        agent = json.loads(done.stdout)
        assert agent["status"] == "completed"
        assert agent["result"]["output"]["stdout"] == f'{{"n": 7}} on {agent["vm"]}\n'

        queued = hvkube("agent", "submit", "--pool", "bp", "--workflow", "wf", "--json", env=env)
        agent_id = json.loads(queued.stdout)["id"]
        wait_for(lambda: engine.get_agent(agent_id).status is AgentStatus.RUNNING, "agent running")
        running = engine.get_agent(agent_id)
        assert running.ip and running.rdp_port == 3389
        shot = tmp_path / "shot.png"
        shot.write_bytes(b"\x89PNG")
        bad = hvkube("agent", "complete", str(agent_id), "--output", "not json", env=env)
        assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
        assert engine.get_agent(agent_id).status is AgentStatus.RUNNING
        ok = hvkube(
            "agent",
            "complete",
            str(agent_id),
            "--output",
            '{"answer": 42}',
            "--screenshot",
            str(shot),
            env=env,
        )
        assert ok.returncode == 0, ok.stderr
        ended = engine.get_agent(agent_id)
        assert ended.status is AgentStatus.COMPLETED
        assert ended.result is not None and ended.result.output == {"answer": 42}
        assert ended.result.screenshots == [str(shot.resolve())]
        assert not engine.get_vm(running.vm or "").held

        shown = hvkube("run", "--status", env=env)
        assert shown.returncode == 0 and "controller: running" in shown.stdout
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0


@pytest.mark.parametrize(
    "args",
    [
        ["run", "--tick", "0"],
        ["run", "--tick", "soon"],
        ["run", "--lease-ttl", "0.5"],
        ["run", "--workers", "0"],
    ],
)
def test_run_rejects_bad_input_in_one_line(env: dict[str, str], args: list[str]) -> None:
    done = hvkube(*args, env=env)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert done.stderr.startswith("hvkube: error:")


def test_status_without_a_controller(env: dict[str, str]) -> None:
    done = hvkube("run", "--status", "--json", env=env)
    assert done.returncode == 1
    assert json.loads(done.stdout)["state"] == "none"

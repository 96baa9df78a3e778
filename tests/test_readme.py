"""The README's commands and script work as written."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO, run_cli
from tests.pg_support import PgServer

README = (REPO / "README.md").read_text(encoding="utf-8")


def test_readme_starts_with_the_two_commands() -> None:
    first_block = re.search(r"```sh\n(.*?)```", README, re.S)
    assert first_block is not None
    lines = first_block.group(1).strip().splitlines()
    assert lines[0].endswith("hvkube demo")
    assert lines[1] == "bash .ci/run"
    assert (REPO / ".ci" / "run").exists()


def test_the_headless_script_runs_as_written(tmp_path: Path) -> None:
    block = re.search(
        r"<!-- headless-script -->\s*```python\n(.*?)```\s*<!-- /headless-script -->", README, re.S
    )
    assert block is not None
    script = tmp_path / "script.py"
    script.write_text(block.group(1), encoding="utf-8")
    for args in (
        ["template", "create", "--name", "win11-chrome", "--vhdx", r"C:\Templates\win11.vhdx"],
        [
            "pool",
            "create",
            "--name",
            "browser-pool",
            "--template",
            "win11-chrome",
            "--count",
            "2",
            "--warm",
            "2",
        ],
        ["pool", "provision", "browser-pool"],
    ):
        assert run_cli(*args).returncode == 0
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=REPO
    )
    assert result.returncode == 0, result.stderr
    name, ip, *_ = result.stdout.split()
    assert name.startswith("browser-pool-") and ip.count(".") == 3
    listing = run_cli("vm", "list", "--json").stdout
    assert '"holder": null' in listing and '"holder": "' not in listing  # released


def _session(marker: str) -> list[list[str]]:
    """The commands of a README block between `<!-- marker -->` and `<!-- /marker -->`."""
    import shlex

    block = re.search(rf"<!-- {marker} -->\s*```sh\n(.*?)```\s*<!-- /{marker} -->", README, re.S)
    assert block is not None, marker
    commands = [shlex.split(line, comments=True) for line in block.group(1).splitlines()]
    assert all(c[0] == "hvkube" for c in commands if c), commands
    return [c[1:] for c in commands if c]


def _run_as_typed(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "core.cli", *args],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def test_the_first_session_and_the_controller_run_as_written(tmp_path: Path) -> None:
    outputs = {}
    for args in _session("first-session"):
        result = _run_as_typed(args, tmp_path)
        assert result.returncode == 0, (args, result.stderr)
        outputs[" ".join(args[:2])] = result.stdout
    # The VM the session goes on with is the one acquire hands out (the hot one).
    assert "browser-pool-001" in outputs["acquire --pool"]
    assert (tmp_path / "screen.png").read_bytes().startswith(b"\x89PNG")

    # `hvkube run` in one shell, the rest in another.
    controller = subprocess.Popen(
        [sys.executable, "-m", "core.cli", "run", "--tick", "0.2"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        submit, status = _session("controller-session")
        result = _run_as_typed(submit, tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "completed" in result.stdout and "checked browser-pool-" in result.stdout
        result = _run_as_typed(status, tmp_path)
        assert result.returncode == 0, result.stderr
    finally:
        controller.send_signal(signal.SIGTERM)
        _, log = controller.communicate(timeout=60)
    # The controller's log tells of the agent: placed on a VM, then completed.
    assert re.search(r"agent 1 placed on browser-pool-\d{3}", log), log
    assert "agent 1 completed" in log, log


def test_the_fleet_section_runs_as_written(tmp_path: Path, pg_server: PgServer) -> None:
    """Each host's lines, on this machine's simulated host, against a real PostgreSQL server
    standing for the README's (the dashboard line is left out: it needs a terminal)."""
    import shlex
    import time

    from tests.ctl_support import isolated_env, start_controller

    block = re.search(r"<!-- fleet-session -->\s*```sh\n(.*?)```\s*<!-- /fleet-session -->",
                      README, re.S)  # fmt: skip
    assert block is not None
    lines = [shlex.split(line, comments=True) for line in block.group(1).splitlines()]
    lines = [line for line in lines if line]
    env = {k: v for k, v in isolated_env(tmp_path).items() if k != "HVKUBE_DB"}
    assert lines.pop(0) == ["createdb", "hvkube"]
    url = pg_server.create_database()
    assert lines[-1] == ["hvkube"]  # the dashboard
    controller = None
    try:
        for line in lines[:-1]:
            if line[0] == "export":
                name, _, value = line[1].partition("=")
                env[name] = url if name == "HVKUBE_DB" else value
            elif line == ["hvkube", "run"]:
                controller = start_controller(env, "--tick", "0.2", log=tmp_path / "run.log")
            else:
                assert line == ["hvkube", "host", "list"], line
                deadline = time.monotonic() + 60
                while True:
                    shown = run_cli(*line[1:], env=env)
                    assert shown.returncode == 0, shown.stderr
                    row = [r.split() for r in shown.stdout.splitlines() if r.startswith("hv01")]
                    if row and row[0][1] == "up":
                        break
                    assert time.monotonic() < deadline, shown.stdout
                    time.sleep(0.2)
        assert env["HVKUBE_HOST"] == "hv01" and controller is not None
    finally:
        if controller is not None:
            controller.send_signal(signal.SIGTERM)
            controller.wait(timeout=60)
    assert controller.returncode == 0, (tmp_path / "run.log").read_text()

"""An agent's --exec command: its environment is an allow-list, and its words are sh's."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from ctl_support import make_engine, once

from core import Engine
from core.agent_exec import command_env, env_names, run_command
from core.errors import InvalidInput
from core.models import AgentStatus
from core.settings import load_settings

SECRET = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY"

pytestmark = pytest.mark.skipif(os.name != "posix", reason="sh semantics")


@pytest.fixture
def engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    # A secret set only for the controller, and a value the operator chooses to pass on.
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("HVKUBE_TEST_PROXY", "http://proxy.test:3128")
    monkeypatch.setenv("LANG", "C.UTF-8")
    eng = make_engine(tmp_path, exec_env="HVKUBE_TEST_PROXY")
    eng.create_template("win11", r"C:\Templates\win11.vhdx", memory_mb=4096)
    eng.create_pool("bp", "win11", count=1, warm=1)
    once(eng)
    yield eng
    eng.close()


def test_a_controller_secret_never_reaches_the_agent_or_its_stored_output(
    engine: Engine,
) -> None:
    agent = engine.submit_agent("bp", "wf", {"k": 1}, exec_command="env")
    once(engine)
    done = engine.get_agent(agent.id)
    assert done.status is AgentStatus.COMPLETED, done.result
    stdout = (done.result.output or {})["stdout"] if done.result else ""
    seen = dict(line.split("=", 1) for line in stdout.splitlines() if "=" in line)
    assert SECRET not in stdout and "AWS_SECRET_ACCESS_KEY" not in seen
    # What it does get: its VM and input, PATH, HOME, LANG, and what the operator named.
    assert seen["HVKUBE_VM_NAME"] == done.vm
    assert seen["HVKUBE_AGENT_INPUT"] == '{"k": 1}'
    assert seen["PATH"] == os.environ["PATH"] and seen["LANG"] == "C.UTF-8"
    assert seen["HVKUBE_TEST_PROXY"] == "http://proxy.test:3128"
    allowed = {"PATH", "HOME", "LANG", "HVKUBE_TEST_PROXY", "PWD", "SHLVL", "_"}
    assert {k for k in seen if not k.startswith("HVKUBE_")} <= allowed


def test_the_shell_path_gets_the_same_allow_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    outcome = run_command(
        'echo "[$AWS_SECRET_ACCESS_KEY][$HVKUBE_VM_NAME]" | cat', {"HVKUBE_VM_NAME": "v"}, 10
    )
    assert outcome.stdout == "[][v]\n"


def test_command_env_is_built_from_the_allow_list_only() -> None:
    source = {"PATH": "/bin", "HOME": "/h", "LANG": "C", "AWS_SECRET_ACCESS_KEY": SECRET, "X": "1"}
    env = command_env({"HVKUBE_VM_NAME": "v"}, ("X", "MISSING"), source)
    assert env == {"PATH": "/bin", "HOME": "/h", "LANG": "C", "X": "1", "HVKUBE_VM_NAME": "v"}


@pytest.mark.parametrize("bad", ["A B", "1ABC", "X=1", "PATH;rm", "É"])
def test_exec_env_names_are_checked(bad: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(InvalidInput, match="exec_env"):
        env_names(bad)
    monkeypatch.setenv("HVKUBE_EXEC_ENV", f"OK,{bad}")
    with pytest.raises(InvalidInput, match="exec_env"):
        load_settings()


SH = shutil.which("sh") or "/bin/sh"


@pytest.mark.parametrize(
    "command",
    [
        "printf [%s] a\u2003b",  # EM SPACE: one word to sh, two to str.split()
        "printf [%s] a\u00a0b c",  # NO-BREAK SPACE
        "printf [%s] a\x0bb\x0cc",  # vertical tab, form feed
        "printf [%s] a\x1cb\x1dc\x1ed\x1fe",  # separators str.split() splits on
        "printf [%s] a\u0085b\u2028c",
        "printf [%s]   a \t b\t",
        "printf [%s] \u3000",
    ],
)
def test_the_fast_path_splits_exactly_as_sh(command: str, tmp_path: Path) -> None:
    expected = subprocess.run(
        [SH, "-c", command], capture_output=True, check=True, env={"PATH": os.environ["PATH"]}
    ).stdout.decode("utf-8", errors="replace")
    outcome = run_command(command, {}, 10)
    assert outcome.exit_code == 0, outcome.stderr
    assert outcome.stdout == expected


def test_rm_with_em_spaces_is_one_word_as_in_sh(tmp_path: Path) -> None:
    """`rm\u2003-rf\u2003/tmp/x` is a single (missing) program name to sh, not `rm -rf`."""
    victim = tmp_path / "x"
    victim.mkdir()
    outcome = run_command(f"rm\u2003-rf\u2003{victim}", {}, 10)
    assert outcome.exit_code != 0
    assert victim.exists()

"""Running an agent's `--exec` command on the controller's machine.

The command gets an environment built from an allow-list, never the controller's own:
`HVKUBE_*` for its VM and input, `PATH`, `HOME` and `LANG` (and on Windows what a
process needs to start at all), and the variables named in the `exec_env` setting, by the
agent's pool and by the agent itself (names only: the values are the controller's, read
when the command starts). A secret set only for the controller stays there. Its output and
exit code become the agent's result, and at the timeout (or when the agent is
cancelled, or the controller stops) the command is killed with everything it
started: it runs in its own process group (a new session on POSIX, a new
process group on Windows) and the whole group is killed.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from core.errors import InvalidInput
from core.models import AgentResult

OUTPUT_LIMIT = 64 * 1024  # characters of stdout and of stderr kept in the result


@dataclass
class ExecOutcome:
    exit_code: int | None
    stdout: str
    stderr: str
    duration_ms: float
    timed_out: bool = False
    stopped: bool = False  # killed because the agent ended elsewhere or the controller stops
    error: str | None = None  # the command could not be started

    def result(self, timeout_s: float) -> AgentResult:
        output: dict[str, Any] = {"stdout": self.stdout, "stderr": self.stderr}
        parsed = _json_object(self.stdout)
        if parsed is not None:
            output["json"] = parsed
        error: str | None = None
        if self.error:
            error = self.error
        elif self.timed_out:
            error = f"timed out after {timeout_s:g} s; the command was killed"
        elif self.stopped:
            error = "stopped: the command was killed"
        elif self.exit_code != 0:
            error = f"the command exited with code {self.exit_code}"
        return AgentResult(
            success=error is None,
            output=output,
            error=error,
            exit_code=self.exit_code,
            duration_ms=self.duration_ms,
        )


def _json_object(text: str) -> dict[str, Any] | None:
    stripped = text.strip()
    if not stripped.startswith("{"):
        return None
    try:
        value = json.loads(stripped)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def agent_env(
    vm_name: str,
    ip: str | None,
    rdp_port: int,
    agent_input: Mapping[str, Any],
    agent_id: int,
    mcp_endpoint: str | None = None,
) -> dict[str, str]:
    env = {
        "HVKUBE_VM_NAME": vm_name,
        "HVKUBE_VM_IP": ip or "",
        "HVKUBE_RDP_PORT": str(rdp_port),
        "HVKUBE_AGENT_INPUT": json.dumps(dict(agent_input), sort_keys=True),
        "HVKUBE_AGENT_ID": str(agent_id),
    }
    if mcp_endpoint:
        env["HVKUBE_MCP_ENDPOINT"] = mcp_endpoint
    return env


# What every agent's command gets from the controller's environment, when it is set there.
PASSED = ("PATH", "HOME", "LANG")
# Without these a Windows process cannot start (SYSTEMROOT) or find programs and temp.
PASSED_WINDOWS = ("SYSTEMROOT", "SYSTEMDRIVE", "COMSPEC", "PATHEXT", "TEMP", "TMP", "USERPROFILE")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")


def env_names(text: str) -> tuple[str, ...]:
    """The comma-separated variable names of the `exec_env` setting, checked."""
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    for name in names:
        if not _ENV_NAME.fullmatch(name):
            raise InvalidInput(
                f"exec_env names {name!r}, which is not an environment variable name; "
                "give names such as AWS_PROFILE,HTTP_PROXY separated by commas"
            )
    return names


# More names than any real command needs: a bound on what a request can store.
MAX_PASSED_NAMES = 64


def check_env_names(names: Iterable[str], option: str = "--exec-env") -> list[str]:
    """Names a pool or an agent passes from the controller's environment, checked; in their
    order, without repeats. Only names: the values are read when the command runs."""
    out: list[str] = []
    for name in names:
        if not isinstance(name, str) or not _ENV_NAME.fullmatch(name):
            raise InvalidInput(
                f"{option} {str(name)[:80]!r} is not an environment variable name (letters, "
                "digits and _, not starting with a digit); give only the name, such as "
                "AWS_PROFILE: its value is read from the controller's environment when the "
                "command runs"
            )
        if name not in out:
            out.append(name)
    if len(out) > MAX_PASSED_NAMES:
        raise InvalidInput(
            f"{option} names {len(out)} variables; at most {MAX_PASSED_NAMES} are allowed"
        )
    return out


def command_env(
    agent: Mapping[str, str],
    passed: Iterable[str] = (),
    source: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The whole environment of an agent's command: the allow-listed variables of `source`
    (the controller's environment), the names in `passed`, then the agent's own values."""
    source = os.environ if source is None else source
    allowed = [*PASSED, *(PASSED_WINDOWS if os.name == "nt" else ()), *passed]
    env = {name: source[name] for name in allowed if name in source}
    env.update(agent)
    return env


def _decode(data: bytes | None) -> str:
    text = (data or b"").decode("utf-8", errors="replace")
    return text if len(text) <= OUTPUT_LIMIT else text[-OUTPUT_LIMIT:]


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    if os.name == "posix":
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        return
    subprocess.run(  # pragma: no cover - Windows only
        ["taskkill", "/F", "/T", "/PID", str(proc.pid)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=False,
    )
    with contextlib.suppress(OSError):  # pragma: no cover
        proc.kill()


# A command with none of these needs no shell: it is split into words and run directly,
# which saves starting a shell for every agent. Anything else goes through the shell.
_SHELL_CHARS = frozenset("|&;<>()$`\\\"' \t\n*?[]#~=%{}!")


# Words the shell itself gives meaning to: such commands always go through the shell.
_SHELL_WORDS = frozenset(
    {
        *("exit", "cd", "export", "set", "unset", "exec", "source", ".", "eval", "read"),
        *("alias", "return", "shift", "trap", "wait", "ulimit", "umask", "time", "function"),
        *("if", "then", "else", "elif", "fi", "for", "while", "until", "do", "done"),
        *("case", "esac"),
    }
)


@functools.lru_cache(maxsize=256)
def _program(word: str, path: str) -> str | None:
    return shutil.which(word, path=path)


# The only characters `sh` splits words on (its default IFS, newline aside, which ends a
# command and so goes to the shell). str.split() would also split on U+2003, U+00A0, U+0085,
# form feed, vertical tab and others, which are ordinary characters to `sh`.
_BLANKS = re.compile(r"[ \t]+")


def _argv(command: str, path: str) -> list[str] | None:
    """The command as words to run without a shell, exactly as `sh` would split it, when
    that changes nothing; None sends it through the shell."""
    if os.name != "posix":
        return None
    words = [w for w in _BLANKS.split(command) if w]
    if not words or words[0] in _SHELL_WORDS:
        return None
    if any(ch in _SHELL_CHARS for word in words for ch in word):
        return None
    program = _program(words[0], path)
    return [program, *words[1:]] if program else None


def run_command(
    command: str,
    env: Mapping[str, str],
    timeout_s: float,
    should_stop: Callable[[], bool] | None = None,
    check_every_s: float = 0.5,
    passed: Iterable[str] = (),
) -> ExecOutcome:
    """Run `command` with `env` and the allow-listed variables of the controller (see
    `command_env`, `passed` the operator's extra names); kill its group at `timeout_s`."""
    full_env = command_env(env, passed)
    started = time.perf_counter()
    kwargs: dict[str, Any] = {}
    if os.name == "posix":
        kwargs["start_new_session"] = True
    else:  # pragma: no cover - Windows only
        kwargs["creationflags"] = getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)
    try:
        argv = _argv(command, full_env.get("PATH", os.defpath))
        proc = subprocess.Popen(
            argv or command,
            shell=argv is None,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=full_env,
            **kwargs,
        )
    except OSError as exc:
        return ExecOutcome(
            None, "", "", (time.perf_counter() - started) * 1000.0, error=f"cannot start: {exc}"
        )
    deadline = time.monotonic() + timeout_s
    timed_out = stopped = False
    while True:
        remaining = deadline - time.monotonic()
        try:
            out, err = proc.communicate(timeout=max(0.0, min(check_every_s, remaining)))
            break
        except subprocess.TimeoutExpired:
            pass
        if proc.poll() is not None:
            # The shell is done but something it started still holds the output open.
            _kill_group(proc)
        elif time.monotonic() >= deadline:
            timed_out = True
            _kill_group(proc)
        elif should_stop is not None and should_stop():
            stopped = True
            _kill_group(proc)
        else:
            continue
        try:
            out, err = proc.communicate(timeout=5.0)
        except subprocess.TimeoutExpired:  # a grandchild left the group and kept the pipes
            proc.kill()
            out, err = b"", b""
        break
    if not timed_out and not stopped:
        _kill_group(proc)  # nothing it started outlives it
    return ExecOutcome(
        exit_code=proc.returncode,
        stdout=_decode(out),
        stderr=_decode(err),
        duration_ms=(time.perf_counter() - started) * 1000.0,
        timed_out=timed_out,
        stopped=stopped,
    )

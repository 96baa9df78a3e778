"""Hostile input, generated: every command's arguments, the global flags and `--input` JSON.

Every run ends with exit 0, or with exactly one error line and exit 2 (bad input) or 1 (a
guard or a failed operation): never a traceback, never an internal error. After a refused
command the store and the simulated host are unchanged, row for row. Most examples call
`core.cli.main` in this process; a sample runs as real processes with invalid UTF-8 bytes.

HVKUBE_HOSTILE_EXAMPLES sets the examples per command (CI: 25), HVKUBE_HOSTILE_SEED the seed.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from reliability.stats import count

from core import open_engine
from core.cli import main

EXAMPLES = int(os.environ.get("HVKUBE_HOSTILE_EXAMPLES", "25"))
SEED = int(os.environ.get("HVKUBE_HOSTILE_SEED", "7"))
REPO = Path(__file__).resolve().parent.parent

# Built to reach PowerShell or the file system as code or paths, or to break parsers.
HOSTILE = [
    "x'; Remove-VM -Name * -Force; '",
    "$(Stop-Computer)",
    "`whoami`",
    "a\u2018b",
    "\u2019; calc; \u2019",
    "\u201a",
    "\u201b",
    '"; calc; "',
    "${env:PATH}",
    "@{a=1}",
    "%PATH%",
    "*",
    "bp-*",
    "bp-00?",
    "[a-z]*",
    "..",
    "../bp",
    "..\\bp",
    "bp/../bp",
    "C:\\Windows\\System32",
    "/etc/passwd",
    "\\\\server\\share",
    "a\x00b",
    "a\nb",
    "a\r\nhvkube: error: forged",
    "\x1b[31mred",
    "\t",
    " ",
    "",
    "-",
    "--",
    "con",
    "NUL.txt",
    "bp.",
    "p;q",
    "p|q",
    "p&q",
    "p>q",
    "\u202eevil",
    "\ufeffbp",
    "\uff42\uff50",  # full-width letters
    "名前",
    "\udcff\udcfe",
    "bp\udc80",
    "\ud800",
    "p" * 49,
    "p" * 5000,
    "p" * 200_000,
]
VALID = ["bp", "bp-001", "bp-002", "win11", "1"]

any_chars = st.characters(exclude_categories=())  # surrogates too: invalid UTF-8 in argv
hostile_text = st.one_of(
    st.sampled_from(HOSTILE),
    st.text(any_chars, max_size=60),
    st.text(st.sampled_from("'\"`$();|&*?[]{}\\/.-_ \u2018\u2019\u201a\u201bab0"), max_size=30),
)
names = st.one_of(hostile_text, st.sampled_from(VALID))
numbers = st.one_of(
    st.integers(min_value=-(10**40), max_value=10**40).map(str),
    st.sampled_from(
        ["0", "-1", "-0", "1e9", "1e400", "inf", "-inf", "nan", "NaN", "0x10", "1_0", " 2 ", "٣"]
    ),
    hostile_text,
)


def _not_long_wait(text: str) -> bool:
    """A valid wait (or size) could really wait (or build a thousand VMs): keep it short."""
    try:
        value = float(text)
    except ValueError:
        return True
    return not 0.5 < value <= 86400


small_numbers = numbers.filter(_not_long_wait)


def _would_start(text: str, parse: type) -> bool:
    """A value `run --tick` or `serve --port` accepts would start a long-running service."""
    try:
        value = parse(text)
    except ValueError:
        return False
    if parse is float:
        return bool(value > 0)
    return bool(0 <= value <= 65535)


bad_ticks = numbers.filter(lambda t: not _would_start(t, float))
bad_ports = numbers.filter(lambda t: not _would_start(t, int))
# Commands that run until stopped (the controller, the HTTP API, the dashboard) are given
# only arguments they must refuse; a generated command name never names them.
LONG_RUNNING = {"run", "serve", "ui", "demo", "mcp"}
json_text = st.one_of(
    st.sampled_from(
        [
            "{bad json",
            "[1,2]",
            "null",
            "1",
            '"s"',
            "{}",
            '{"a": NaN}',
            '{"a": 1, "a": 2}',
            "[" * 100_000 + "]" * 100_000,
            '{"a":' * 50_000 + "1" + "}" * 50_000,
            '{"big": "' + "x" * 1_100_000 + '"}',
            '{"\udcff": 1}',
            "\udcff",
            '{"password": "hunter2"}',
        ]
    ),
    st.text(any_chars, max_size=200),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=10),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
        max_leaves=20,
    ).map(lambda v: __import__("json").dumps(v)),
)
flags = st.lists(st.sampled_from(["--json", "--readonly", "--backend=sim"]), max_size=2)


def _cmd(*parts: st.SearchStrategy[list[str]] | list[str]) -> st.SearchStrategy[list[str]]:
    strategies = [p if isinstance(p, st.SearchStrategy) else st.just(p) for p in parts]
    return st.tuples(*strategies, flags).map(lambda t: [a for part in t for a in part])


def opt(flag: str, values: st.SearchStrategy[str]) -> st.SearchStrategy[list[str]]:
    return st.one_of(
        st.just([]), values.map(lambda v: [flag, v]), values.map(lambda v: [f"{flag}={v}"])
    )


def one(values: st.SearchStrategy[str]) -> st.SearchStrategy[list[str]]:
    return values.map(lambda v: [v])


COMMANDS: dict[str, st.SearchStrategy[list[str]]] = {
    "template create": _cmd(
        ["template", "create"],
        opt("--name", names),
        opt("--vhdx", st.one_of(hostile_text, st.just("C:\\T\\x.vhdx"))),
        opt("--memory-mb", numbers),
        opt("--cpus", numbers),
        opt("--rdp-port", numbers),
        opt("--mcp-endpoint", hostile_text.map(lambda t: t + "{ip}")),
        opt("--software", hostile_text),
        opt("--probe", hostile_text),
    ),
    "template show/delete": _cmd(
        ["template"], one(st.sampled_from(["show", "delete"])), one(names)
    ),
    "pool create": _cmd(
        ["pool", "create"],
        opt("--name", names),
        opt("--template", names),
        opt("--count", numbers),
        opt("--warm", numbers),
        opt("--hot", numbers),
        opt("--release", hostile_text),
        opt("--max-per-host", numbers),
    ),
    "pool status/provision/delete": _cmd(
        ["pool"], one(st.sampled_from(["status", "provision", "delete"])), one(names)
    ),
    "pool provision --parallel": _cmd(
        ["pool", "provision"], one(names), opt("--parallel", numbers)
    ),
    "pool scale": _cmd(["pool", "scale"], one(names), opt("--count", small_numbers)),
    "pool edit": _cmd(
        ["pool", "edit"],
        one(names),
        opt("--count", small_numbers),
        opt("--warm", numbers),
        opt("--hot", numbers),
        opt("--release", hostile_text),
    ),
    "vm list": _cmd(["vm", "list"], opt("--pool", names), opt("--state", hostile_text)),
    "vm actions": _cmd(
        ["vm"],
        one(st.sampled_from(["info", "resume", "save", "pause", "reset", "stop", "delete", "ip"])),
        one(names),
    ),
    "vm input": st.one_of(
        _cmd(["vm", "type"], one(names), one(hostile_text)),
        _cmd(["vm", "key"], one(names), one(hostile_text)),
        _cmd(["vm", "click"], one(names), one(numbers), one(numbers)),
        _cmd(["vm", "console"], one(hostile_text)),
        _cmd(["vm", "rdp"], one(hostile_text)),
        _cmd(["vm", "screenshot"], one(hostile_text), ["-o", "shot.png"]),
        _cmd(["vm", "screenshot"], one(names), one(st.sampled_from(["-o"])), one(hostile_text)),
    ),
    "acquire/release": st.one_of(
        _cmd(["acquire"], opt("--pool", names), opt("--wait", small_numbers)),
        _cmd(
            ["release"],
            one(names),
            st.lists(st.sampled_from(["--reset", "--save", "--destroy"]), max_size=2),
        ),
    ),
    "agent submit": _cmd(
        ["agent", "submit"],
        opt("--pool", names),
        opt("--workflow", names),
        opt("--input", json_text),
        opt("--timeout", numbers),
        opt("--exec", hostile_text),
    ),
    "agent others": st.one_of(
        _cmd(["agent"], one(st.sampled_from(["show", "cancel", "complete"])), one(numbers)),
        _cmd(
            ["agent", "complete"],
            one(numbers),
            opt("--output", json_text),
            opt("--failed", hostile_text),
        ),
        _cmd(["agent", "recording"], one(hostile_text)),
        _cmd(["agent", "recording"], one(hostile_text), one(st.just("-o")), one(hostile_text)),
        _cmd(
            ["agent", "list"],
            opt("--status", hostile_text),
            opt("--pool", names),
            opt("--limit", numbers),
        ),
    ),
    "events/reconcile/config": st.one_of(
        _cmd(["events"], opt("--vm", names), opt("--pool", names), opt("--limit", numbers)),
        _cmd(["reconcile"], st.lists(st.just("--remove-orphans"), max_size=1)),
        _cmd(["config", "show"]),
        _cmd(one(hostile_text.filter(lambda t: t.strip() not in LONG_RUNNING))),
    ),
    "run/serve (refused)": st.one_of(
        _cmd(["run"], ["--tick"], one(bad_ticks)),
        _cmd(["serve"], ["--port"], one(bad_ports)),
    ),
    "sim": st.one_of(
        _cmd(
            ["sim", "fault"],
            one(hostile_text),
            opt("--vm", names),
            opt("--op", hostile_text),
            opt("--seconds", numbers),
        ),
        _cmd(["sim"], one(st.sampled_from(["faults", "clear"]))),
    ),
    "global --db": _cmd(
        opt("--db", st.one_of(hostile_text, st.sampled_from([".", "..", "sub/", "a\x00b"]))),
        ["pool", "list"],
    ),
}


def sql_dump(path: Path) -> list[str]:
    con = sqlite3.connect(path)
    try:
        return list(con.iterdump())
    finally:
        con.close()


def snapshot(data: Path) -> tuple[list[str], list[str], list[str]]:
    files = sorted(p.name for p in data.iterdir() if not p.name.endswith(("-wal", "-shm")))
    return files, sql_dump(data / "hvkube.db"), sql_dump(data / "sim-host.db")


def run_main(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse: --help (0) and usage errors (2)
            code = exc.code if isinstance(exc.code, int) else 1
    return code, out.getvalue(), err.getvalue()


def check_outcome(code: int, out: str, err: str, as_json: bool = False) -> None:
    assert code in (0, 1, 2), (code, err)
    assert "Traceback" not in out + err
    assert "internal error" not in err, err
    if code != 0:
        lines = [line for line in err.splitlines() if not line.startswith("simulated host")]
        assert len(lines) == 1, err
        if as_json:  # under --json, the error is one JSON object
            error = json.loads(lines[0])["error"]
            assert set(error) == {"code", "message"} and error["message"], err
            assert error["code"] != "internal", err
        else:
            assert lines[0].startswith("hvkube: error: "), err


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A template, a provisioned pool of two (one held), an agent: made once."""
    data = tmp_path_factory.mktemp("pristine") / "data"
    with open_engine(db=str(data / "hvkube.db"), backend="sim", sim_scale=0) as engine:
        engine.create_template("win11", r"C:\T\win11.vhdx", memory_mb=2048)
        engine.create_pool("bp", "win11", count=2, warm=1)
        engine.provision_pool("bp")
        engine.acquire("bp")
        engine.submit_agent("bp", "wf", {"k": "v"})
    return data


@pytest.fixture
def home(pristine: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    data = tmp_path / "data"
    shutil.copytree(pristine, data)
    monkeypatch.setenv("HVKUBE_DATA_DIR", str(data))
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)  # relative paths given to commands land here, never in the repo
    yield data


def _example(home: Path, pristine: Path, argv: list[str]) -> None:
    count("inputs tried")
    before = snapshot(home)
    code, out, err = run_main(argv)
    check_outcome(code, out, err, as_json="--json" in argv)
    if code != 0:
        assert snapshot(home) == before, f"{argv!r} was refused but changed the store"
    else:  # accepted: start the next example from the same state
        shutil.rmtree(home)
        shutil.copytree(pristine, home)


@pytest.mark.parametrize("command", sorted(COMMANDS))
@seed(SEED)
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)
@given(data=st.data())
def test_hostile_arguments(command: str, home: Path, pristine: Path, data: st.DataObject) -> None:
    argv = data.draw(COMMANDS[command], label="argv")
    _example(home, pristine, argv)


SUBPROCESS_SAMPLE: list[list[bytes]] = [
    [b"pool", b"create", b"--name", b"\xff\xfe", b"--template", b"win11", b"--count", b"1"],
    [b"template", b"create", b"--name", b"t", b"--vhdx", b"C:\\\xff.vhdx"],
    [b"agent", b"submit", b"--pool", b"bp", b"--workflow", b"w", b"--input", b'{"a": "\xff"}'],
    [b"template", b"create", b"--name", b"t", b"--vhdx", b"C:\\t.vhdx", b"--software", b"\xc3"],
    [b"vm", b"info", b"bp-001\xed\xa0\x80"],
    [
        b"pool",
        b"create",
        b"--name",
        b"x'; Remove-VM -Name * -Force; '",
        b"--template",
        b"win11",
        b"--count",
        b"1",
    ],
]


@pytest.mark.parametrize("argv", SUBPROCESS_SAMPLE, ids=range(len(SUBPROCESS_SAMPLE)))
def test_invalid_utf8_in_a_real_process(argv: list[bytes], home: Path) -> None:
    count("inputs tried")
    before = snapshot(home)
    result = subprocess.run(
        [sys.executable.encode(), b"-m", b"core.cli", *argv],
        capture_output=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    out = result.stdout.decode("utf-8", "replace")
    err = result.stderr.decode("utf-8", "replace")
    check_outcome(result.returncode, out, err)
    assert result.returncode == 2
    assert snapshot(home) == before

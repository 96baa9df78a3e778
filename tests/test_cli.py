"""The command line as a new user drives it, in real processes."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from tests.conftest import run_cli


def ok(*args: str) -> str:
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_first_walkthrough(tmp_path: Path) -> None:
    ok("template", "create", "--name", "win11-chrome", "--vhdx", r"C:\Templates\win11.vhdx")
    ok(
        "pool",
        "create",
        "--name",
        "browser-pool",
        "--template",
        "win11-chrome",
        "--count",
        "5",
        "--warm",
        "3",
        "--hot",
        "1",
    )
    ok("pool", "provision", "browser-pool")
    vms = json.loads(ok("vm", "list", "--json"))
    assert sorted(v["state"] for v in vms) == ["off", "paused", "saved", "saved", "saved"]
    listing = ok("vm", "list")
    assert "browser-pool-001" in listing and "saved" in listing

    acquired = json.loads(ok("acquire", "--pool", "browser-pool", "--json"))
    assert acquired["from_state"] == "paused" and acquired["ip"]
    name = acquired["name"]
    shot = tmp_path / "screen.png"
    assert str(shot) in ok("vm", "screenshot", name, "-o", str(shot))
    assert shot.read_bytes().startswith(b"\x89PNG")
    assert "released (saved)" in ok("release", name, "--reset")
    events = json.loads(ok("events", "--json", "--limit", "200"))
    kinds = {e["kind"] for e in events}
    assert {"provision", "resume", "release_reset", "screenshot"} <= kinds
    assert "release_reset" in ok("events")


def test_simulated_host_is_announced() -> None:
    result = run_cli("template", "list")
    assert result.returncode == 0
    assert "simulated host" in result.stderr


def test_config_show_names_sources(tmp_path: Path) -> None:
    config = tmp_path / "no-config.toml"
    config.write_text("provision_parallelism = 3\n")
    out = json.loads(ok("config", "show", "--json"))
    assert out["provision_parallelism"] == {"value": 3, "source": f"config {config}"}
    assert out["sim_scale"]["source"] == "env HVKUBE_SIM_SCALE"
    flagged = json.loads(ok("config", "show", "--json", "--db", str(tmp_path / "x.db")))
    assert flagged["db"] == {"value": str(tmp_path / "x.db"), "source": "flag"}


def test_bad_config_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "no-config.toml").write_text("nonsense = [\n")
    result = run_cli("pool", "list")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "not valid TOML" in result.stderr


def dump_state(data: Path) -> dict[str, bytes]:
    """The bytes of every file the engine keeps (after all connections closed)."""
    return {p.name: p.read_bytes() for p in sorted(data.iterdir()) if p.is_file()}


def sql_dump(path: Path) -> list[str]:
    con = sqlite3.connect(path)
    try:
        return list(con.iterdump())
    finally:
        con.close()


BAD_COMMANDS = [
    [
        "pool",
        "create",
        "--name",
        "x'; Remove-VM -Name * -Force; '",
        "--template",
        "win11",
        "--count",
        "1",
    ],
    ["pool", "create", "--name", "$(calc)", "--template", "win11", "--count", "1"],
    ["pool", "create", "--name", "p`x", "--template", "win11", "--count", "1"],
    ["pool", "create", "--name", "p;x", "--template", "win11", "--count", "1"],
    ["pool", "create", "--name", "agent-*", "--template", "win11", "--count", "1"],
    ["pool", "create", "--name", "../p", "--template", "win11", "--count", "1"],
    ["pool", "create", "--name", "", "--template", "win11", "--count", "1"],
    ["pool", "create", "--name", "p" * 60, "--template", "win11", "--count", "1"],
    ["pool", "create", "--name", "ok", "--template", "win11", "--count", "0", "--warm", "1"],
    ["pool", "create", "--name", "ok", "--template", "win11", "--count", "-3"],
    [
        "pool",
        "create",
        "--name",
        "ok",
        "--template",
        "win11",
        "--count",
        "2",
        "--warm",
        "2",
        "--hot",
        "1",
    ],
    ["pool", "create", "--name", "ok", "--template", "nope", "--count", "1"],
    ["pool", "scale", "bp", "--count", "-1"],
    ["pool", "delete", "nope"],
    ["template", "create", "--name", "t", "--vhdx", "C:\\a\\..\\b.vhdx"],
    ["template", "create", "--name", "t\x07", "--vhdx", "C:\\b.vhdx"],
    ["template", "create", "--name", "t", "--vhdx", "C:\\b.vhdx", "--memory-mb", "0"],
    ["vm", "resume", "nope-001"],
    ["vm", "info", "bp-*"],
    ["acquire", "--pool", "nope"],
    ["acquire", "--pool", "bp", "--wait", "-5"],
    ["release", "bp-001", "--reset", "--save"],
    ["agent", "submit", "--pool", "bp", "--workflow", "w", "--input", "{bad json"],
    ["agent", "submit", "--pool", "bp", "--workflow", "w", "--input", "[1,2]"],
    ["agent", "submit", "--pool", "nope", "--workflow", "w"],
    ["agent", "submit", "--pool", "bp", "--workflow", "w", "--gpu"],
    ["agent", "show", "999"],
    ["agent", "show", "abc"],
    ["events", "--limit", "0"],
    ["vm", "list", "--state", "sideways"],
    ["no-such-command"],
]


@pytest.fixture(scope="module")
def provisioned(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data folder with a template and a provisioned pool, made once and copied per test."""
    home = tmp_path_factory.mktemp("provisioned")
    env = {
        "HVKUBE_DATA_DIR": str(home / "data"),
        "HVKUBE_CONFIG": str(home / "none.toml"),
        "HVKUBE_SIM_SCALE": "0",
    }
    for args in (
        ["template", "create", "--name", "win11", "--vhdx", r"C:\T\win11.vhdx"],
        ["pool", "create", "--name", "bp", "--template", "win11", "--count", "2", "--warm", "1"],
        ["pool", "provision", "bp"],
    ):
        assert run_cli(*args, env=env).returncode == 0
    return home / "data"


def refused(args: list[str], code: int, provisioned: Path, tmp_path: Path) -> str:
    """Run a command that must be refused; check the exit code, the one-line error, and
    that every file and row is as it was. Returns the error line."""
    data = tmp_path / "data"
    shutil.copytree(provisioned, data)
    files_before = dump_state(data)
    rows_before = sql_dump(data / "hvkube.db")
    result = run_cli(*args)
    assert result.returncode == code, (result.stdout, result.stderr)
    errors = [line for line in result.stderr.splitlines() if not line.startswith("simulated")]
    assert len(errors) == 1 and errors[0].startswith("hvkube: error: "), result.stderr
    assert "Traceback" not in result.stderr
    assert sql_dump(data / "hvkube.db") == rows_before
    assert dump_state(data) == files_before
    return errors[0]


def test_guards_refuse_with_exit_1_and_change_nothing(provisioned: Path, tmp_path: Path) -> None:
    line = refused(["template", "delete", "win11"], 1, provisioned, tmp_path)
    assert "used by pool(s) bp" in line


@pytest.mark.parametrize("args", BAD_COMMANDS, ids=[" ".join(a)[:50] for a in BAD_COMMANDS])
def test_bad_input_is_one_line_exit_2_and_changes_nothing(
    args: list[str], provisioned: Path, tmp_path: Path
) -> None:
    refused(args, 2, provisioned, tmp_path)


def test_help_explains_every_command() -> None:
    top = ok("--help")
    for command in (
        "template",
        "pool",
        "vm",
        "acquire",
        "release",
        "agent",
        "events",
        "reconcile",
        "config",
        "sim",
    ):
        assert command in top
    assert "--warm" in ok("pool", "create", "--help")
    assert "Exit codes" in top


def test_sim_faults_from_the_cli() -> None:
    ok("template", "create", "--name", "win11", "--vhdx", r"C:\T\win11.vhdx")
    ok("pool", "create", "--name", "bp", "--template", "win11", "--count", "1", "--warm", "1")
    ok("pool", "provision", "bp")
    ok("sim", "fault", "delete-vm", "--vm", "bp-001")
    report = json.loads(ok("reconcile", "--json"))
    assert report["missing"] == ["bp-001"]
    assert json.loads(ok("vm", "info", "bp-001", "--json"))["state"] == "missing"
    provisioned = json.loads(ok("pool", "provision", "bp", "--json"))
    assert provisioned["created"] == ["bp-001"]


# -- the operator's details (issue 16) -----------------------------------------------------------


def test_short_forms_and_template_register() -> None:
    ok("template", "register", "-n", "tpl", "--vhdx", r"C:\t.vhdx")
    ok("pool", "create", "-n", "bp", "-t", "tpl", "-c", "2", "--warm", "2")
    ok("pool", "provision", "bp")
    vms = json.loads(ok("vm", "list", "-p", "bp", "--json"))
    assert [v["name"] for v in vms] == ["bp-001", "bp-002"]
    # -p names the pool wherever a pool is asked for: acquire as in vm list.
    held = json.loads(ok("--json", "acquire", "-p", "bp"))
    assert held["pool"] == "bp" and held["name"] in {"bp-001", "bp-002"}
    from core.cli import build_parser

    assert build_parser(["serve"]).parse_args(["serve", "-p", "9090"]).port == 9090


def test_errors_under_json_are_one_json_object_on_stderr() -> None:
    result = run_cli("--json", "vm", "info", "nope")
    assert result.returncode == 2 and result.stdout == ""
    error = json.loads(result.stderr)["error"]
    assert error["code"] == "not_found" and "nope" in error["message"]
    usage = run_cli("--json", "pool", "create", "--name", "x")  # argparse's own refusal
    assert usage.returncode == 2
    assert json.loads(usage.stderr)["error"]["code"] == "invalid_input"


def test_a_mistyped_command_gets_a_did_you_mean() -> None:
    result = run_cli("pol", "list")
    assert result.returncode == 2
    assert "did you mean 'pool'?" in result.stderr
    assert "did you mean 'list'?" in run_cli("vm", "lst").stderr


def test_version() -> None:
    result = run_cli("--version")
    assert result.returncode == 0 and result.stdout.startswith("hvkube ")


def test_exit_codes_are_consistent_for_release() -> None:
    """Releasing a VM nobody holds is bad input, as an unknown VM is: 2, nothing changed."""
    ok("template", "create", "--name", "tpl", "--vhdx", r"C:\t.vhdx")
    ok("pool", "create", "--name", "bp", "--template", "tpl", "--count", "1", "--warm", "1")
    ok("pool", "provision", "bp")
    assert run_cli("release", "bp-001").returncode == 2
    assert run_cli("release", "bp-999").returncode == 2


def test_acquire_from_a_pool_never_built_says_how_to_build_it() -> None:
    ok("template", "create", "--name", "tpl", "--vhdx", r"C:\t.vhdx")
    ok("pool", "create", "--name", "bp", "--template", "tpl", "--count", "2")
    result = run_cli("acquire", "--pool", "bp")
    assert result.returncode == 1
    assert "hvkube pool provision bp" in result.stderr and "hvkube run" in result.stderr

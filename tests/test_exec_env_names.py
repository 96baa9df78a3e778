"""Pools and agents name the controller's variables their `--exec` commands get: only the
names are stored, the values are read from the controller's environment when a command
starts, and a bad name is refused before anything is written."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest
from ctl_support import hvkube, isolated_env, make_engine, once

from core import open_engine
from core.models import AgentStatus
from core.store import SCHEMA_VERSION, Store

pytestmark = pytest.mark.skipif(os.name != "posix", reason="the commands are sh commands")

POOL_VALUE = "pool-value-3f1c"
AGENT_VALUE = "agent-value-9d2e"
SECRET = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY"


def stored_bytes(data: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(data.iterdir()) if p.is_file())


def rows_and_files(data: Path) -> tuple[list[str], list[str]]:
    """Every row of every database in the data folder, and the folder's file names."""
    rows: list[str] = []
    for path in sorted(data.glob("*.db")):
        con = sqlite3.connect(path)
        try:
            rows += [f"{path.name}: {line}" for line in con.iterdump()]
        finally:
            con.close()
    return rows, sorted(p.name for p in data.iterdir())


def printed_env(stdout: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in stdout.splitlines() if "=" in line)


def test_the_command_gets_the_variables_its_pool_and_it_name_and_no_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("T_POOL_VAR", POOL_VALUE)
    monkeypatch.setenv("T_AGENT_VAR", AGENT_VALUE)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    engine = make_engine(tmp_path)
    engine.create_template("win11", r"C:\Templates\win11.vhdx", memory_mb=4096)
    engine.create_pool("bp", "win11", count=2, warm=2, exec_env=["T_POOL_VAR"])
    once(engine)
    named = engine.submit_agent("bp", "wf", exec_command="env", exec_env=["T_AGENT_VAR"])
    plain = engine.submit_agent("bp", "wf", exec_command="env")
    # Names are stored, values are not: they are read when the command starts.
    engine.close()
    stored = stored_bytes(tmp_path / "data")
    assert b"T_POOL_VAR" in stored and b"T_AGENT_VAR" in stored
    assert POOL_VALUE.encode() not in stored and AGENT_VALUE.encode() not in stored
    monkeypatch.setenv("T_POOL_VAR", POOL_VALUE + "-at-run")

    engine = make_engine(tmp_path)
    once(engine)
    seen = {}
    for agent in (named, plain):
        done = engine.get_agent(agent.id)
        assert done.status is AgentStatus.COMPLETED, done.result
        seen[agent.id] = printed_env((done.result.output or {})["stdout"] if done.result else "")
    assert seen[named.id]["T_POOL_VAR"] == POOL_VALUE + "-at-run"
    assert seen[named.id]["T_AGENT_VAR"] == AGENT_VALUE
    assert seen[plain.id]["T_POOL_VAR"] == POOL_VALUE + "-at-run"
    assert "T_AGENT_VAR" not in seen[plain.id]
    for env in seen.values():
        assert "AWS_SECRET_ACCESS_KEY" not in env and SECRET not in json.dumps(env)
    assert engine.get_agent(named.id).task.exec_env == ["T_AGENT_VAR"]

    # Edited: the new names replace the old; cleared: none.
    assert engine.update_pool("bp", exec_env=["T_AGENT_VAR", "T_AGENT_VAR"]).exec_env == [
        "T_AGENT_VAR"
    ]
    assert engine.update_pool("bp", count=2).exec_env == ["T_AGENT_VAR"]
    assert engine.update_pool("bp", exec_env=[]).exec_env == []
    engine.close()


BAD_NAMES = ["A=B", "", "1ABC", "A B", "PATH;rm", "Ä", "A" * 200]


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    env = isolated_env(tmp_path)
    with open_engine(db=env["HVKUBE_DB"], backend="sim", sim_scale=0) as engine:
        engine.create_template("win11", r"C:\Templates\win11.vhdx", memory_mb=4096)
        engine.create_pool("bp", "win11", count=1, exec_env=["T_POOL_VAR"])
    return env


@pytest.mark.parametrize("bad", BAD_NAMES)
def test_a_bad_name_is_one_line_exit_2_and_nothing_is_written(
    tmp_path: Path, cli_env: dict[str, str], bad: str
) -> None:
    before = rows_and_files(tmp_path / "data")
    cases = [
        ("pool", "create", "-n", "p2", "-t", "win11", "-c", "1", "--exec-env", bad),
        ("pool", "edit", "bp", "--count", "3", "--exec-env", "OK_NAME", "--exec-env", bad),
        ("agent", "submit", "--pool", "bp", "--workflow", "w", "--exec", "env", "--exec-env", bad),
    ]
    for args in cases:
        result = hvkube(*args, env=cli_env)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        errors = [line for line in result.stderr.splitlines() if line.startswith("hvkube:")]
        assert len(errors) == 1, result.stderr
        assert errors[0].startswith("hvkube: error: --exec-env "), result.stderr
        assert "not an environment variable name" in errors[0]
        assert "Traceback" not in result.stderr
    assert rows_and_files(tmp_path / "data") == before


def test_agent_names_without_a_command_are_refused(tmp_path: Path, cli_env: dict[str, str]) -> None:
    before = rows_and_files(tmp_path / "data")
    result = hvkube(
        "agent", "submit", "--pool", "bp", "--workflow", "w", "--exec-env", "X", env=cli_env
    )
    assert result.returncode == 2 and "give --exec too" in result.stderr
    assert rows_and_files(tmp_path / "data") == before


def test_pool_status_and_agent_show_list_the_names(cli_env: dict[str, str]) -> None:
    shown = hvkube("pool", "status", "bp", env=cli_env)
    assert shown.returncode == 0, shown.stderr
    assert "exec env" in shown.stdout and "T_POOL_VAR" in shown.stdout
    as_json = json.loads(hvkube("--json", "pool", "status", "bp", env=cli_env).stdout)
    assert as_json["exec_env"] == ["T_POOL_VAR"]
    edited = hvkube("pool", "edit", "bp", "--exec-env", "A", "--exec-env", "B", env=cli_env)
    assert edited.returncode == 0, edited.stderr
    assert json.loads(hvkube("--json", "pool", "status", "bp", env=cli_env).stdout)["exec_env"] == [
        "A",
        "B",
    ]
    assert hvkube("pool", "edit", "bp", "--no-exec-env", env=cli_env).returncode == 0
    assert "T_POOL_VAR" not in hvkube("pool", "status", "bp", env=cli_env).stdout

    submitted = hvkube(
        "--json",
        "agent",
        "submit",
        "--pool",
        "bp",
        "--workflow",
        "w",
        "--exec",
        "env",
        "--exec-env",
        "HTTPS_PROXY",
        env=cli_env,
    )
    assert submitted.returncode == 0, submitted.stderr
    agent_id = json.loads(submitted.stdout)["id"]
    shown = hvkube("agent", "show", str(agent_id), env=cli_env)
    assert "exec env" in shown.stdout and "HTTPS_PROXY" in shown.stdout


def test_schema_7_adds_the_names_to_an_existing_store(store_url: str) -> None:
    assert SCHEMA_VERSION >= 7
    with open_engine(db=store_url, backend="sim", sim_scale=0) as engine:
        engine.create_template("win11", r"C:\Templates\win11.vhdx", memory_mb=4096)
        engine.create_pool("bp", "win11", count=1)
        engine.submit_agent("bp", "wf", exec_command="true")
    # The store as schema 6 left it: no exec_env columns.
    store = Store(store_url)
    for table in ("pool", "agent"):
        store.db.execute_sql(f'ALTER TABLE "{table}" DROP COLUMN "exec_env"')
    store.db.execute_sql('UPDATE "meta" SET "value" = \'6\' WHERE "key" = \'schema_version\'')
    store.close()
    if not store_url.startswith("postgresql"):
        con = sqlite3.connect(store_url)
        assert "exec_env" not in {r[1] for r in con.execute("PRAGMA table_info(pool)")}
        con.close()

    with open_engine(db=store_url, backend="sim", sim_scale=0) as engine:
        assert engine.store.schema_version() == SCHEMA_VERSION
        assert engine.get_pool("bp").exec_env == []
        assert engine.list_agents()[0].task.exec_env == []
        assert engine.update_pool("bp", exec_env=["HTTPS_PROXY"]).exec_env == ["HTTPS_PROXY"]

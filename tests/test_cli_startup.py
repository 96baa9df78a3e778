"""The command line starts cheaply: building its parser loads no engine, store, models,
rich or dashboard, and only the running command's group builds its parsers; `--version`
reads no package metadata; `vm list` reads an up-to-date SQLite store through sqlite3,
without the engine, peewee, pydantic or a backend, and prints what the models would.

Every command group in core.cli.GROUPS (and every `hvkube.commands` plugin) is held to
this: a group that imports something heavy at its top fails here. The CPU these paths take
is measured by bench/cli_start.py, not asserted.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from core.cli import GROUPS, build_parser
from core.cli.parsing import add_command, command_word
from core.cli.plugins import command_plugins
from core.engine import Engine
from core.models import VM, VMState
from core.vm_rows import VMRow
from tests.conftest import run_cli

# What the command line may load only when a command runs.
HEAVY = (
    "core.engine",
    "core.models",
    "core.settings",
    "core.store",
    "core.backends",
    "peewee",
    "pydantic",
    "rich",
    "textual",
    "fastapi",
    "uvicorn",
    "psutil",
    "importlib.metadata",
)
# What `vm list` may not load on a store that needs nothing done first: it reads through
# plain sqlite3 (core.store.reading), so the settings and the store package itself load,
# but not what opening the whole store or the engine takes.
NOT_FOR_A_LISTING = (
    "core.engine",
    "core.models",
    "core.backends",
    "core.store.sqlite",
    "core.store.postgres",
    "peewee",
    "playhouse",
    "psycopg",
    "pydantic",
    "textual",
    "fastapi",
    "psutil",
    "platform",
    "importlib.metadata",
    "dataclasses",
)


def _loaded_after(code: str, heavy: tuple[str, ...] = HEAVY) -> list[str]:
    probe = (
        "import sys, json\n"
        f"{code}\n"
        f"heavy = {heavy!r}\n"
        "print(json.dumps(sorted(m for m in sys.modules "
        "if any(m == h or m.startswith(h + '.') for h in heavy))))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    loaded: list[str] = json.loads(result.stdout.splitlines()[-1])
    return loaded


def test_building_the_whole_parser_loads_nothing_heavy() -> None:
    assert _loaded_after("from core.cli import build_parser; build_parser()") == []


@pytest.mark.parametrize("argv", [["--help"], ["pool", "--help"], ["--version"], ["agent", "-h"]])
def test_help_and_version_load_nothing_heavy(argv: list[str]) -> None:
    code = f"from core.cli import main\ntry:\n    main({argv!r})\nexcept SystemExit:\n    pass"
    assert _loaded_after(code) == []


def _main(argv: list[str]) -> str:
    return f"from core.cli import main\nassert main({argv!r}) == 0"


def test_version_reads_no_package_metadata() -> None:
    code = "from core.cli import main\ntry:\n    main(['--version'])\nexcept SystemExit:\n    pass"
    assert _loaded_after(code, (*HEAVY, "platform")) == []


def test_a_json_listing_loads_no_engine_store_models_or_rich(pool: str) -> None:
    assert _loaded_after(_main(["--json", "vm", "list"]), (*NOT_FOR_A_LISTING, "rich")) == []
    assert _loaded_after(_main(["--json", "vm", "list", "-p", pool, "--state", "saved"])) == [
        "core.settings",
        "core.store",
        "core.store.reading",
        "core.store.target",
        "core.store.views",
    ]


def test_a_listing_for_people_loads_rich_but_no_engine_store_or_models(pool: str) -> None:
    rich_needs = ("dataclasses",)
    wanted_absent = tuple(m for m in NOT_FOR_A_LISTING if m not in rich_needs)
    assert _loaded_after(_main(["vm", "list"]), wanted_absent) == []


def test_a_store_that_needs_work_first_is_opened_whole(tmp_path: Path) -> None:
    """A new store is created (and an old one migrated) by the whole store, as by any
    command; the listing is then read and printed the same way."""
    db = tmp_path / "data" / "hvkube.db"
    loaded = _loaded_after(_main(["--json", "vm", "list"]), ("peewee", "core.engine"))
    assert loaded == ["core.engine", "peewee"] and db.stat().st_size > 0
    assert _loaded_after(_main(["--json", "vm", "list"]), ("peewee", "core.engine")) == []


def test_a_readonly_listing_of_a_quiescent_store_creates_nothing(tmp_path: Path) -> None:
    for step in (
        ["template", "create", "--name", "w", "--vhdx", r"C:\w.vhdx"],
        ["pool", "create", "--name", "bp", "--template", "w", "--count", "2", "--warm", "2"],
    ):
        assert run_cli(*step).returncode == 0
    folder = tmp_path / "data"
    before = sorted(p.name for p in folder.iterdir())
    assert "hvkube.db-wal" not in before  # no process has the store open
    code = _main(["--readonly", "--json", "vm", "list"])
    assert _loaded_after(code, ("peewee", "core.engine")) == []
    assert sorted(p.name for p in folder.iterdir()) == before
    listed = run_cli("--json", "vm", "list")  # not read-only: follows writers, as the store
    assert listed.returncode == 0 and json.loads(listed.stdout) == []
    assert "hvkube.db-wal" in sorted(p.name for p in folder.iterdir())


def _vary(engine: Engine, pool: str) -> None:
    """VMs with every field a listing prints: held by an agent and by a lease, resumed
    (a time with and without microseconds, a whole-number duration), in error."""
    names = [vm.name for vm in engine.list_vms(pool=pool)]
    engine.acquire(pool, holder="script-1")
    engine.store.update_vm(names[1], {"agent_id": 7, "holder": "agent-7"})
    engine.store.update_vm(
        names[2],
        {
            "state": "error",
            "error": "[/oops] resume failed: the saved state is corrupt",
            "raw_state": "Other",
            "last_resumed_at": datetime(2020, 1, 2, 3, 4, 5, tzinfo=UTC),
            "last_resume_ms": 1500,
        },
    )
    engine.store.update_vm(names[3], {"ip": None, "created_at": datetime(2020, 1, 2, tzinfo=UTC)})


@pytest.mark.parametrize(
    "filters",
    [{}, {"pool": "bp"}, {"state": "saved"}, {"host": "HERE"}, {"pool": "bp", "state": "error"}],
)
def test_the_listing_prints_what_the_models_print(
    engine: Engine, pool: str, filters: dict[str, str]
) -> None:
    _vary(engine, pool)
    filters = {k: engine.host if v == "HERE" else v for k, v in filters.items()}
    models = engine.list_vms(
        pool=filters.get("pool"),
        state=VMState(filters["state"]) if "state" in filters else None,
        host=filters.get("host"),
    )
    assert models, "each filter lists some VMs"
    listed = run_cli("--json", "vm", "list", *(f"--{k}={v}" for k, v in filters.items()))
    assert listed.returncode == 0, listed.stderr
    expected = json.dumps([vm.model_dump(mode="json") for vm in models], indent=2) + "\n"
    assert listed.stdout == expected


def test_a_postgresql_store_lists_the_same_through_the_whole_store(pg_url: str) -> None:
    from core import open_engine

    with open_engine(db=pg_url, backend="sim", sim_scale=0) as engine:
        engine.create_template("win11", r"C:\Templates\win11.vhdx", memory_mb=4096, cpus=2)
        engine.create_pool("bp", "win11", count=4, warm=3, hot=1)
        engine.provision_pool("bp")
        _vary(engine, "bp")
        models = engine.list_vms(pool="bp")
    listed = run_cli("--db", pg_url, "--json", "vm", "list", "-p", "bp")
    assert listed.returncode == 0, listed.stderr
    expected = json.dumps([vm.model_dump(mode="json") for vm in models], indent=2) + "\n"
    assert listed.stdout == expected


def test_the_table_for_people_is_the_one_the_models_make(
    engine: Engine, pool: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from core.cli.output import vm_table

    _vary(engine, pool)
    listed = run_cli("vm", "list")
    assert listed.returncode == 0, listed.stderr
    assert "simulated host (sim)" in listed.stderr
    vm_table(engine.list_vms())
    assert listed.stdout == capsys.readouterr().out
    assert "agent 7" in listed.stdout and "[/oops]" in listed.stdout


def test_a_row_has_the_models_fields_in_its_order() -> None:
    assert VMRow._fields == tuple(VM.model_fields)


def test_an_empty_filtered_listing_still_says_what_does_not_exist(pool: str) -> None:
    missing = run_cli("--json", "vm", "list", "-p", "nope")
    assert missing.returncode == 2
    assert json.loads(missing.stderr)["error"]["code"] == "not_found"
    assert run_cli("vm", "list", "--host", "elsewhere").returncode == 2
    assert run_cli("vm", "list", "-p", "bad name!").returncode == 2
    none_in_state = run_cli("--json", "vm", "list", "-p", pool, "--state", "running")
    assert none_in_state.returncode == 0 and json.loads(none_in_state.stdout) == []


def test_a_store_of_another_backend_is_refused_as_before(pool: str) -> None:
    result = run_cli("--json", "vm", "list", env={"HVKUBE_BACKEND": "qemu"})
    assert result.returncode == 2
    assert "made with the 'sim' backend" in json.loads(result.stderr)["error"]["message"]


def _top_commands(parser: argparse.ArgumentParser) -> dict[str, str | None]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return {c.dest: c.help for c in action._choices_actions}
    return {}


def test_each_group_declares_the_commands_it_adds() -> None:
    """`hvkube --help` lists a group's commands from its COMMANDS without building them:
    the table must say exactly what `register` adds."""
    for group in GROUPS:
        parser = argparse.ArgumentParser()
        commands = parser.add_subparsers()
        group.register(commands, add_command)
        assert _top_commands(parser) == group.COMMANDS, group.__name__


def test_the_short_help_lists_what_the_whole_parser_has() -> None:
    assert _top_commands(build_parser(["--help"])) == _top_commands(build_parser())


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _command_lines(parser: argparse.ArgumentParser) -> list[list[str]]:
    """Every command and action path of the whole parser: ["vm", "list"], ["serve"], ..."""
    lines = []
    for name, below in _subcommands(parser).items():
        actions = _subcommands(below)
        lines += [[name, action] for action in actions] if actions else [[name]]
    return lines


_WHOLE = build_parser()


@pytest.mark.parametrize("line", _command_lines(_WHOLE), ids=" ".join)
def test_a_command_line_gets_the_parsers_the_whole_parser_has(line: list[str]) -> None:
    """Built for one command line, the command it runs has the whole parser's help and
    arguments, and its group lists the same actions with the same help (the top level
    lists the plugins' commands only when it may run one: see the short help's test)."""
    whole = _subcommands(_WHOLE)[line[0]]
    partial = _subcommands(build_parser(line))[line[0]]
    if len(line) == 2:
        assert _top_commands(partial) == _top_commands(whole)
        whole, partial = _subcommands(whole)[line[1]], _subcommands(partial)[line[1]]
    assert partial.format_help() == whole.format_help()


@pytest.mark.parametrize(
    ("argv", "word"),
    [
        (["vm", "list"], "vm"),
        (["--db", "x.db", "pool", "list"], "pool"),
        (["--db=x.db", "--json", "events"], "events"),
        (["--backend", "sim"], None),
        (["-v", "--", "vm"], None),
    ],
)
def test_the_command_word_skips_options_and_their_values(argv: list[str], word: str | None) -> None:
    assert command_word(argv) == word


def test_plugins_are_the_entry_points_importlib_metadata_finds() -> None:
    from importlib.metadata import entry_points

    expected = [e.load() for e in entry_points(group="hvkube.commands")]
    assert command_plugins() == expected
    assert expected, "the dashboard's ui/demo plugin is installed"

"""The command line starts cheaply: building its parser loads no engine, store, models,
rich or dashboard, and only the running command's group builds its parsers.

Every command group in core.cli.GROUPS (and every `hvkube.commands` plugin) is held to
this: a group that imports something heavy at its top fails here.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest

from core.cli import GROUPS, build_parser
from core.cli.parsing import add_command, command_word
from core.cli.plugins import command_plugins

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
)


def _loaded_after(code: str) -> list[str]:
    probe = (
        "import sys, json\n"
        f"{code}\n"
        f"heavy = {HEAVY!r}\n"
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

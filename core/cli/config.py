"""`hvkube config`: the effective settings and where each came from."""

from __future__ import annotations

import argparse
from typing import Any

from core.cli.context import Context
from core.cli.output import console
from core.cli.parsing import AddCommand, Parser
from core.output import print_json, table

# The commands this module adds, with their help: `hvkube --help` lists them without
# building their parsers.
COMMANDS = {
    "config": "effective settings",
}


def cmd_config_show(args: argparse.Namespace, ctx: Context) -> int:
    values = ctx.settings.values()
    values["db"] = ctx.settings.db_shown()
    if ctx.json:
        print_json({k: {"value": v, "source": ctx.sources[k]} for k, v in values.items()})
        return 0
    from core.settings import config_path

    rows = [(k, v, ctx.sources[k]) for k, v in values.items()]
    table(console, ["SETTING", "VALUE", "FROM"], rows, "Settings")
    console.print(f"config file: {config_path()}", style="dim")
    return 0


def register(commands: Any, sub: AddCommand) -> None:
    cfg = sub(commands, "config", None, COMMANDS["config"])
    cfg_cmds = cfg.add_subparsers(dest="subcommand", metavar="ACTION", parser_class=Parser)
    sub(cfg_cmds, "show", cmd_config_show, "each setting with where it came from")

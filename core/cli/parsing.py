"""The parser class and `add_command`, which every command group registers its commands with.

A group (and a plugin in the `hvkube.commands` entry point group) is a function
`register(commands, add_command)`: `commands` is the subparsers action to add to, and
`add_command(commands, name, handler, help_text, **kw)` returns the new command's parser.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any, NoReturn

from core.cli.context import Handler
from core.cli.options import global_options


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors and exit code 2."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"hvkube: error: {message} (see '{self.prog} --help')\n")
        raise SystemExit(2)


def add_command(
    group: Any, name: str, handler: Handler | None, help_text: str, **kw: Any
) -> argparse.ArgumentParser:
    """Add command `name` to `group` (a subparsers action), with the global options; a
    command with actions below it has no handler."""
    p: argparse.ArgumentParser = group.add_parser(name, help=help_text, description=help_text, **kw)
    global_options(p, top=False)
    if handler is not None:
        p.set_defaults(handler=handler)
    return p


# What a group's `register` gets to add its commands with.
AddCommand = Callable[..., argparse.ArgumentParser]

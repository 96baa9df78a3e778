"""The parser class and `add_command`, which every command group registers its commands with.

A group (and a plugin in the `hvkube.commands` entry point group) is a function
`register(commands, add_command)`: `commands` is the subparsers action to add to, and
`add_command(commands, name, handler, help_text, **kw)` returns the new command's parser.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Collection, Sequence
from typing import Any, NoReturn

from core.cli.context import Handler
from core.cli.options import VALUE_OPTIONS, global_options

_INVALID_CHOICE = re.compile(r"invalid choice: '(?P<word>[^']*)' \(choose from (?P<choices>.*)\)")


def did_you_mean(word: str, choices: Sequence[str]) -> str:
    """' Did you mean pool?' when `word` is close to one of `choices`, else ''."""
    import difflib

    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.5)
    if not close:
        close = [c for c in choices if c.startswith(word)][:1] if word else []
    return f"; did you mean {close[0]!r}?" if close else ""


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (JSON with --json), a did-you-mean, and exit code 2."""

    json_errors = False  # set by main() when the command line has --json
    command_names: Collection[str] = ()  # the commands below it (set by build_parser)

    def error(self, message: str) -> NoReturn:
        from core.cli.errors import report_error
        from core.errors import InvalidInput

        match = _INVALID_CHOICE.search(message)
        if match:
            choices = re.findall(r"'([^']*)'", match.group("choices"))
            word = match.group("word")
            message = (
                f"{message.split(':')[0]}: {word!r} is not one of "
                f"{', '.join(choices)}{did_you_mean(word, choices)}"
            )
        raise SystemExit(
            report_error(InvalidInput(f"{message} (see '{self.prog} --help')"), self.json_errors)
        )


def command_word(argv: Sequence[str]) -> str | None:
    """The command on a command line: its first word that is neither an option nor an
    option's value."""
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--":
            return None
        elif arg.startswith("-"):
            skip = arg in VALUE_OPTIONS
        else:
            return arg
    return None


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

"""The parser class and `add_command`, which every command group registers its commands with.

A group (and a plugin in the `hvkube.commands` entry point group) is a function
`register(commands, add_command)`: `commands` is the subparsers action to add to, and
`add_command(commands, name, handler, help_text, **kw)` returns the new command's parser,
to which the group adds arguments (`add_argument`, `add_mutually_exclusive_group`) and, for
a command with actions below it, `add_subparsers`.

Building a parser costs more than most commands' work (argparse asks the terminal's width
and the translations for every argument), so for a given command line only the commands it
can run are built: `commands_on(argv)` gives an `add_command` that builds a command in full
only when its name is on the command line; any other is listed with its help (for `--help`
and "did you mean") as a bare parser that is never used, and what its group adds to it is
dropped.
"""

from __future__ import annotations

import argparse
import functools
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
    group: Any,
    name: str,
    handler: Handler | None,
    help_text: str,
    *,
    words: Collection[str] | None = None,
    **kw: Any,
) -> argparse.ArgumentParser:
    """Add command `name` to `group` (a subparsers action), with the global options; a
    command with actions below it has no handler. With `words` (the command line's), a
    command that runs but is not named there is only listed (see the module's doc)."""
    named = words is None or name in words or bool(set(kw.get("aliases", ())) & set(words))
    if handler is not None and not named:
        group.add_parser(name, help=help_text, add_help=False, **kw)
        return _NOT_BUILT
    p: argparse.ArgumentParser = group.add_parser(name, help=help_text, description=help_text, **kw)
    global_options(p, top=False)
    if handler is not None:
        p.set_defaults(handler=handler)
    return p


def commands_on(argv: Sequence[str]) -> AddCommand:
    """`add_command` for a parser that will parse `argv` and nothing else."""
    return functools.partial(add_command, words=frozenset(argv))


class _NotBuilt(argparse.ArgumentParser):
    """What a group gets for a command the command line does not run: everything it adds
    is dropped (the command is listed by a bare parser of its own, never used)."""

    def __init__(self) -> None:  # none of ArgumentParser's set-up: nothing is ever parsed
        pass

    def add_argument(self, *args: Any, **kwargs: Any) -> Any:
        return None

    def add_mutually_exclusive_group(self, **kwargs: Any) -> Any:
        return self


_NOT_BUILT = _NotBuilt()


# What a group's `register` gets to add its commands with.
AddCommand = Callable[..., argparse.ArgumentParser]

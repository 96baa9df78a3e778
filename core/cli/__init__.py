"""`hvkube`: the headless command line over the engine.

Exit codes: 0 done, 1 the operation failed, 2 bad input (nothing changed), 130 interrupted.
Each command group is a module here with its handlers, a `COMMANDS` table (each command it
adds, with its help) and a `register(commands, add_command)` that adds its commands to the
parser. Commands from other packages (the dashboard's `ui` and `demo`) plug in the same way
through the `hvkube.commands` entry point group, so core never imports them.

Start-up is kept cheap: a group module imports at its top only what argparse needs (no
engine, store, models, rich or backends; handlers import those when they run), and only the
group of the command being run builds its parsers; the others are listed by their
`COMMANDS`. tests/test_cli_startup.py holds every group to this.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from types import ModuleType

from core.cli import (
    acquire,
    agent,
    config,
    events,
    host,
    mcp,
    pool,
    reconcile,
    run,
    serve,
    sim,
    template,
    token,
    vm,
)
from core.cli.context import Context, Handler
from core.cli.errors import report_error
from core.cli.options import global_options, top_options
from core.cli.parsing import Parser, add_command, command_word, commands_on
from core.cli.plugins import command_plugins
from core.errors import HvkubeError, InvalidInput
from core.names import NAME_RULE, is_utf8

__all__ = ["EXIT_CODES", "GROUPS", "build_parser", "main"]

# The command groups, in the order `hvkube --help` lists them.
GROUPS: tuple[ModuleType, ...] = (
    template,
    pool,
    vm,
    host,
    acquire,
    agent,
    events,
    reconcile,
    run,
    serve,
    mcp,
    token,
    config,
    sim,
)

EXIT_CODES = "0 done, 1 the operation failed, 2 bad input (nothing changed), 130 interrupted"


def build_parser(argv: Sequence[str] | None = None) -> Parser:
    """The whole parser; given the command line, only the parsers its command needs (the
    other commands are listed, with their help, and built when they run)."""
    parser = Parser(
        prog="hvkube",
        description=(
            "Keep pools of Windows VMs ready for UI-automation agents: cloned from a template, "
            "checkpointed clean, parked Saved, handed out with a 2-5 s resume. With no command, "
            "opens the dashboard."
        ),
        epilog=f"Names of templates, pools and VMs: {NAME_RULE}. Exit codes: {EXIT_CODES}.",
    )
    top_options(parser)
    global_options(parser, top=True)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    parser.command_names = commands.choices.keys()

    wanted = None if argv is None else command_word(argv)
    add = add_command if argv is None else commands_on(argv)
    core_commands: set[str] = set()
    for group in GROUPS:
        names: dict[str, str] | None = getattr(group, "COMMANDS", None)
        if names is None or wanted is None or wanted in names:
            group.register(commands, add)
        else:
            for name, help_text in names.items():
                commands.add_parser(name, help=help_text, add_help=False)
        core_commands.update(names or ())
    if wanted is None or wanted not in core_commands:
        for register in command_plugins():
            register(commands, add)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    as_json = "--json" in argv
    # Invalid UTF-8 on the command line reaches Python as lone surrogates, which can be
    # neither stored nor printed: refuse it before anything else looks at it.
    for index, arg in enumerate(argv, start=1):
        if not is_utf8(arg):
            return report_error(
                InvalidInput(f"argument {index} ({ascii(arg)[:60]}) is not valid UTF-8 text"),
                as_json,
            )
    no_command = command_word(argv) is None
    asks_help = "-h" in argv or "--help" in argv or "--version" in argv
    parser = build_parser(argv if not no_command else ["ui"])
    # No command: the dashboard, when it is installed.
    if no_command and not asks_help and "ui" in parser.command_names:
        argv = [*argv, "ui"]
    Parser.json_errors = as_json
    args = parser.parse_args(argv)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    ctx: Context | None = None
    try:
        ctx = Context(args)
        return handler(args, ctx)
    except HvkubeError as exc:
        return report_error(exc, as_json, verbose=getattr(args, "verbose", False))
    except KeyboardInterrupt:
        return report_error(KeyboardInterrupt(), as_json)
    except BrokenPipeError:
        return 0
    except Exception as exc:  # a bug: one line by default, the traceback with --verbose
        return report_error(exc, as_json, verbose=getattr(args, "verbose", False))
    finally:
        if ctx is not None:
            ctx.close()

"""`hvkube`: the headless command line over the engine.

Exit codes: 0 done, 1 the operation failed, 2 bad input (nothing changed).
Each command group is a module here with its handlers and a `register(commands, add_command)`
that adds its commands to the parser. Commands from other packages (the dashboard's `ui` and
`demo`) plug in the same way through the `hvkube.commands` entry point group, so core never
imports them.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Sequence
from importlib.metadata import entry_points

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
    vm,
)
from core.cli.context import Context, Handler
from core.cli.options import global_options
from core.cli.parsing import Parser, add_command
from core.errors import HvkubeError
from core.names import NAME_RULE, is_utf8

__all__ = ["build_parser", "main"]

# The command groups, in the order `hvkube --help` lists them.
GROUPS = (
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
    config,
    sim,
)


def build_parser() -> Parser:
    parser = Parser(
        prog="hvkube",
        description=(
            "Keep pools of Windows VMs ready for UI-automation agents: cloned from a template, "
            "checkpointed clean, parked Saved, handed out with a 2-5 s resume. With no command, "
            "opens the dashboard."
        ),
        epilog=f"Names of templates, pools and VMs: {NAME_RULE}. Exit codes: 0 done, "
        "1 the operation failed, 2 bad input (nothing changed).",
    )
    global_options(parser, top=True)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)

    for group in GROUPS:
        group.register(commands, add_command)
    for plugin in entry_points(group="hvkube.commands"):
        register = plugin.load()
        register(commands, add_command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    no_command = not any(a for a in argv if not a.startswith("-"))
    asks_help = "-h" in argv or "--help" in argv
    # No command: the dashboard, when it is installed.
    if (
        no_command
        and not asks_help
        and any(p.name == "ui" for p in entry_points(group="hvkube.commands"))
    ):
        argv = [*argv, "ui"]
    # Invalid UTF-8 on the command line reaches Python as lone surrogates, which can be
    # neither stored nor printed: refuse it before anything else looks at it.
    for index, arg in enumerate(argv, start=1):
        if not is_utf8(arg):
            sys.stderr.write(
                f"hvkube: error: argument {index} ({ascii(arg)[:60]}) is not valid UTF-8 text\n"
            )
            return 2
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
        sys.stderr.write(f"hvkube: error: {exc.message}\n")
        if getattr(args, "verbose", False) and exc.detail:
            sys.stderr.write(f"{exc.detail}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("hvkube: interrupted\n")
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # a bug: one line by default, the traceback with --verbose
        if getattr(args, "verbose", False):
            traceback.print_exc()
        sys.stderr.write(
            f"hvkube: internal error: {type(exc).__name__}: {exc} (rerun with --verbose)\n"
        )
        return 1
    finally:
        if ctx is not None:
            ctx.close()

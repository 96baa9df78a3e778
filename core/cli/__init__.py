"""`hvkube`: the headless command line over the engine.

Exit codes: 0 done, 1 the operation failed, 2 bad input (nothing changed).
Commands from other packages (the dashboard's `ui` and `demo`) plug in through
the `hvkube.commands` entry point group, so core never imports them.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Sequence
from importlib.metadata import entry_points
from typing import Any

from core.cli import acquire, agent, config, events, pool, reconcile, run, serve, template, vm
from core.cli.argtypes import seconds
from core.cli.context import Context, Handler
from core.cli.options import global_options
from core.cli.output import console, done
from core.cli.parsing import Parser, add_command
from core.errors import HvkubeError, InvalidInput
from core.names import NAME_RULE, is_utf8
from core.output import print_json, table

# -- handlers ----------------------------------------------------------------------------------


def _sim(ctx: Context) -> Any:
    from core.backends.sim import SimHost

    backend = ctx.engine.backend
    inner = getattr(backend, "sim", backend)
    if not isinstance(inner, SimHost):
        raise InvalidInput("fault injection needs the simulated host (--backend sim)")
    return inner


def _sim_to_change(ctx: Context, what: str) -> Any:
    """The simulated host, for a command that changes it: refused in read-only mode."""
    from core.errors import ReadOnlyMode

    host = _sim(ctx)
    if ctx.settings.readonly:
        raise ReadOnlyMode(f"read-only mode: refusing to {what}; run without --readonly")
    return host


def cmd_sim_fault(args: argparse.Namespace, ctx: Context) -> int:
    from core.names import check_name

    if args.vm is not None:
        check_name(args.vm, "--vm")
    host = _sim_to_change(ctx, "inject a fault")
    try:
        host.inject_fault(args.kind, vm=args.vm, op=args.op, seconds=args.seconds)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None
    done(ctx, {"fault": args.kind, "vm": args.vm, "op": args.op}, f"fault {args.kind} injected")
    return 0


def cmd_sim_faults(args: argparse.Namespace, ctx: Context) -> int:
    faults = _sim(ctx).faults()
    if ctx.json:
        print_json(faults)
    else:
        rows = [(f["kind"], f.get("vm"), f.get("op"), f.get("seconds")) for f in faults]
        table(console, ["KIND", "VM", "OPERATION", "SECONDS"], rows, "Faults")
    return 0


def cmd_sim_clear(args: argparse.Namespace, ctx: Context) -> int:
    count = _sim_to_change(ctx, "clear faults").clear_faults()
    done(ctx, {"cleared": count}, f"{count} pending fault(s) cleared")
    return 0


# -- parser ------------------------------------------------------------------------------------


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

    sub = add_command

    template.register(commands, sub)

    pool.register(commands, sub)

    vm.register(commands, sub)

    acquire.register(commands, sub)

    agent.register(commands, sub)

    events.register(commands, sub)

    reconcile.register(commands, sub)

    run.register(commands, sub)

    serve.register(commands, sub)

    config.register(commands, sub)

    from core.backends.sim import FAULT_KINDS

    sim = sub(commands, "sim", None, "the simulated host: inject faults")
    sim_cmds = sim.add_subparsers(dest="subcommand", metavar="ACTION", parser_class=Parser)
    p = sub(
        sim_cmds,
        "fault",
        cmd_sim_fault,
        "inject a fault: " + "; ".join(f"{k}: {v}" for k, v in FAULT_KINDS.items()),
    )
    p.add_argument("kind", choices=sorted(FAULT_KINDS))
    p.add_argument("--vm", help="the VM it applies to")
    p.add_argument("--op", help="the operation it applies to (start, save, ...)")
    p.add_argument("--seconds", type=seconds, help="how long a hang lasts")
    sub(sim_cmds, "faults", cmd_sim_faults, "list pending faults")
    sub(sim_cmds, "clear", cmd_sim_clear, "clear pending faults and repair saved states")

    for plugin in entry_points(group="hvkube.commands"):
        register = plugin.load()
        register(commands, sub)
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

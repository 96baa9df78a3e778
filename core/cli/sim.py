"""`hvkube sim`: inject faults into the simulated host, list and clear them."""

from __future__ import annotations

import argparse
from typing import Any

from core.cli.argtypes import seconds
from core.cli.context import Context
from core.cli.output import console, done
from core.cli.parsing import AddCommand, Parser
from core.errors import InvalidInput
from core.output import print_json, table

# The commands this module adds, with their help: `hvkube --help` lists them without
# building their parsers.
COMMANDS = {
    "sim": "the simulated host: inject faults",
}


def _sim(ctx: Context) -> Any:
    from core.backends.sim import SimHost

    backend = ctx.engine.backend
    if not isinstance(backend, SimHost):
        raise InvalidInput("fault injection needs the simulated host (--backend sim)")
    return backend


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


def register(commands: Any, sub: AddCommand) -> None:
    from core.sim_faults import FAULT_KINDS

    sim = sub(commands, "sim", None, COMMANDS["sim"])
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

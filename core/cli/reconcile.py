"""`hvkube reconcile`: make the store and the host agree after a crash."""

from __future__ import annotations

import argparse
from typing import Any

from core.cli.context import Context
from core.cli.output import console, err_console
from core.cli.parsing import AddCommand
from core.markup import assemble
from core.output import print_json

# The commands this module adds, with their help: `hvkube --help` lists them without
# building their parsers.
COMMANDS = {
    "reconcile": "make store and host agree after a crash",
}


def cmd_reconcile(args: argparse.Namespace, ctx: Context) -> int:
    report = ctx.engine.reconcile(remove_orphans=args.remove_orphans)
    if ctx.json:
        print_json(report)
        return 0 if not report.errors else 1
    console.print(f"checked {report.checked} VM(s)")
    for line in report.fixed:
        console.print(f"  fixed: {line}")
    for name in report.missing:
        console.print(assemble("  ", ("missing from host", "red"), f": {name}"))
    for name in report.orphans:
        console.print(
            assemble(
                "  ",
                ("made by this store but not in it", "yellow"),
                f": {name} (reconcile --remove-orphans removes it)",
            )
        )
    for name in report.orphans_removed:
        console.print(f"  removed orphan: {name}")
    for name in report.foreign:
        console.print(
            assemble(
                "  ",
                ("foreign", "yellow"),
                f": {name} has a pool's name but this store did not make it; "
                "hvkube leaves it alone",
            )
        )
    for agent_id in report.agents_failed:
        console.print(f"  agent {agent_id} failed (see 'hvkube agent show {agent_id}')")
    for agent_id in report.agents_requeued:
        console.print(f"  agent {agent_id} queued again")
    for line in report.busy:
        console.print(f"  busy (another process is working on it): {line}")
    for line in report.errors:
        err_console.print(assemble("  ", ("error", "red"), f": {line}"))
    if not (report.fixed or report.missing or report.orphans or report.errors):
        console.print("store and host agree")
    return 0 if not report.errors else 1


def register(commands: Any, sub: AddCommand) -> None:
    p = sub(commands, "reconcile", cmd_reconcile, COMMANDS["reconcile"])
    p.add_argument(
        "--remove-orphans", action="store_true", help="delete host VMs of our pools not in store"
    )

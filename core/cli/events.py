"""`hvkube events`: the lifecycle steps, newest first."""

from __future__ import annotations

import argparse
from typing import Any

from core.cli.argtypes import positive_int
from core.cli.context import Context
from core.cli.output import console
from core.cli.parsing import AddCommand
from core.markup import literal
from core.output import ms, print_json, table

# The commands this module adds, with their help: `hvkube --help` lists them without
# building their parsers.
COMMANDS = {
    "events": "lifecycle steps, newest first",
}


def cmd_events(args: argparse.Namespace, ctx: Context) -> int:
    events = ctx.engine.events(vm=args.vm, pool=args.pool, limit=args.limit)
    if ctx.json:
        print_json(events)
        return 0
    rows = [
        (
            e.started_at.strftime("%H:%M:%S"),
            e.kind,
            e.vm,
            e.pool,
            ms(e.duration_ms),
            literal("ok", "green") if e.ok else literal("failed", "bold red"),
            (e.error or "")[:70],
        )
        for e in events
    ]
    table(console, ["TIME", "STEP", "VM", "POOL", "TOOK", "RESULT", "ERROR"], rows, "Events")
    return 0


def register(commands: Any, sub: AddCommand) -> None:
    p = sub(commands, "events", cmd_events, COMMANDS["events"])
    p.add_argument("--vm")
    p.add_argument("--pool")
    p.add_argument("--limit", type=positive_int, default=50)

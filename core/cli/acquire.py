"""`hvkube acquire` and `hvkube release`: take a ready VM from a pool, give it back."""

from __future__ import annotations

import argparse
from typing import Any

from core.cli.argtypes import seconds
from core.cli.context import Context
from core.cli.output import console, done
from core.cli.parsing import AddCommand
from core.output import key_values, ms, print_json

# The commands this module adds, with their help: `hvkube --help` lists them without
# building their parsers.
COMMANDS = {
    "acquire": "take a ready VM from a pool and resume it",
    "release": "give a VM back (default: the pool's policy)",
}


def cmd_acquire(args: argparse.Namespace, ctx: Context) -> int:
    vm = ctx.engine.acquire(args.pool, wait_s=args.wait, prefer_host=args.prefer_host)
    if ctx.json:
        print_json(vm)
        return 0
    key_values(
        console,
        [
            ("vm", vm.name),
            ("host", vm.host),
            ("ip", vm.ip),
            ("rdp port", vm.rdp_port),
            ("mcp endpoint", vm.mcp_endpoint),
            ("resume", f"{ms(vm.resume_ms)} (from {vm.from_state.value})"),
            ("lease", vm.holder),
        ],
    )
    return 0


def cmd_release(args: argparse.Namespace, ctx: Context) -> int:
    policy = args.policy
    vm = ctx.engine.release(args.name, policy=policy)
    if vm is None:
        done(ctx, {"name": args.name, "destroyed": True}, f"{args.name}: destroyed")
    else:
        done(ctx, vm, f"{args.name}: released ({vm.state.value})")
    return 0


def register(commands: Any, sub: AddCommand) -> None:
    p = sub(commands, "acquire", cmd_acquire, COMMANDS["acquire"])
    p.add_argument("-p", "--pool", required=True, help="the pool to take a VM from")
    p.add_argument("--wait", type=seconds, default=0.0, metavar="SECONDS", help="wait for one")
    p.add_argument("--prefer-host", metavar="NAME", help="among equally ready VMs, this host's")
    p = sub(commands, "release", cmd_release, COMMANDS["release"])
    p.add_argument("name")
    how = p.add_mutually_exclusive_group()
    how.add_argument("--reset", dest="policy", action="store_const", const="reset")
    how.add_argument("--save", dest="policy", action="store_const", const="save")
    how.add_argument("--destroy", dest="policy", action="store_const", const="destroy")

"""`hvkube host`: the hosts of a fleet sharing one store (list, show, drain, remove)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from core.cli.context import Context
from core.cli.output import console, done
from core.cli.parsing import AddCommand, Parser
from core.output import key_values, print_json, styled, table

# The commands this module adds, with their help: `hvkube --help` lists them without
# building their parsers.
COMMANDS = {
    "host": "the hosts sharing this store",
}


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds:.0f}s" if seconds < 120 else f"{seconds / 60:.0f}m"


def _mb(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def _vms(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {state}" for state, n in sorted(counts.items())) or "-"


def cmd_host_list(args: argparse.Namespace, ctx: Context) -> int:
    hosts = ctx.engine.list_hosts()
    if ctx.json:
        print_json(hosts)
        return 0
    table(
        console,
        ["NAME", "STATUS", "HEARTBEAT", "MEM USED", "MEM FREE", "VMS"],
        [
            (
                h.name,
                styled(h.status) + (" draining" if h.draining else ""),
                _age(h.heartbeat_age_s),
                _mb(h.used_memory_mb),
                _mb(h.free_memory_mb),
                _vms(h.vms),
            )
            for h in hosts
        ],
        "hosts",
    )
    return 0


def cmd_host_show(args: argparse.Namespace, ctx: Context) -> int:
    host = ctx.engine.get_host(args.name)
    if ctx.json:
        print_json(host)
        return 0
    key_values(
        console,
        [
            ("name", host.name),
            ("status", styled(host.status)),
            ("draining", "yes" if host.draining else "no"),
            ("heartbeat", f"{_age(host.heartbeat_age_s)} ago" if host.heartbeat_at else None),
            ("lease", f"{host.lease_s:g} s" if host.lease_s else None),
            ("down since", host.down_since),
            ("memory used", f"{_mb(host.used_memory_mb)} MB"),
            ("memory free", f"{_mb(host.free_memory_mb)} MB"),
            ("backend", host.backend),
            ("VMs", _vms(host.vms)),
        ],
    )
    return 0


def cmd_host_drain(args: argparse.Namespace, ctx: Context) -> int:
    host = ctx.engine.drain_host(args.name, undo=args.undo)
    what = "no longer draining" if args.undo else "draining: no new VMs; idle ones go"
    done(ctx, host, f"host {host.name}: {what}")
    return 0


def _confirm(question: str) -> bool:
    """Ask on the terminal; False when the answer is not yes."""
    sys.stderr.write(f"{question} [y/N] ")
    sys.stderr.flush()
    answer = sys.stdin.readline()
    return answer.strip().lower() in {"y", "yes"}


def cmd_host_remove(args: argparse.Namespace, ctx: Context) -> int:
    from core.errors import InvalidInput

    if (args.forget_vms or args.force) and not args.yes:
        host = ctx.engine.get_host(args.name)  # an unknown host is reported first
        vms = sum(host.vms.values())
        what = (
            f"forget host {args.name} ({host.status}) and the rows of its {vms} VM(s)"
            if args.forget_vms
            else f"forget host {args.name} ({host.status})"
        )
        if not sys.stdin.isatty():
            raise InvalidInput(
                f"{what}? this drops store rows for good (no hypervisor is touched); "
                "add --yes to confirm, nothing was changed"
            )
        if not _confirm(f"{what}? No hypervisor is touched; the rows are gone for good."):
            console.print("nothing was changed")
            return 1
    result = ctx.engine.remove_host(args.name, forget_vms=args.forget_vms, force=args.force)
    text = f"host {args.name} removed"
    if result["vms_forgotten"] or result["agents_requeued"] or result["agents_failed"]:
        text += (
            f": {result['vms_forgotten']} VM row(s) forgotten, {result['agents_requeued']} "
            f"agent(s) queued again, {result['agents_failed']} failed"
        )
    done(ctx, result, text)
    return 0


def register(commands: Any, sub: AddCommand) -> None:
    host = sub(commands, "host", None, COMMANDS["host"])
    host_cmds = host.add_subparsers(dest="subcommand", metavar="ACTION", parser_class=Parser)
    sub(host_cmds, "list", cmd_host_list, "every host: up or down, heartbeat, memory, VMs")
    p = sub(host_cmds, "show", cmd_host_show, "one host")
    p.add_argument("name")
    p = sub(host_cmds, "drain", cmd_host_drain, "no new VMs there; idle ones removed")
    p.add_argument("name")
    p.add_argument("--undo", action="store_true", help="take new VMs again")
    p = sub(host_cmds, "remove", cmd_host_remove, "forget a host: empty, or gone for good")
    p.add_argument("name")
    p.add_argument(
        "--forget-vms",
        action="store_true",
        help="the host is gone for good: drop its VMs' rows too (no hypervisor is touched)",
    )
    p.add_argument(
        "--force", action="store_true", help="even while it heartbeats or its VMs are held"
    )
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")

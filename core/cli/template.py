"""`hvkube template`: register and inspect golden templates."""

from __future__ import annotations

import argparse
from typing import Any

from core.cli.argtypes import positive_int, probe
from core.cli.context import Context
from core.cli.output import console, done
from core.cli.parsing import AddCommand, Parser
from core.output import key_values, print_json, table

# The commands this module adds, with their help: `hvkube --help` lists them without
# building their parsers.
COMMANDS = {
    "template": "register and inspect golden templates",
}


def cmd_template_create(args: argparse.Namespace, ctx: Context) -> int:
    tpl = ctx.engine.create_template(
        args.name,
        args.vhdx,
        memory_mb=args.memory_mb,
        cpus=args.cpus,
        gpu=args.gpu,
        software=args.software or [],
        rdp_port=args.rdp_port,
        mcp_endpoint=args.mcp_endpoint,
        probe=args.probe,
    )
    if ctx.json:
        print_json(tpl)
    else:
        console.print(f"template {tpl.name} created ({tpl.memory_mb} MB, {tpl.cpus} CPUs)")
    return 0


def cmd_template_list(args: argparse.Namespace, ctx: Context) -> int:
    templates = ctx.engine.list_templates()
    if ctx.json:
        print_json(templates)
        return 0
    pools = ctx.engine.list_pools()
    rows = [
        (
            t.name,
            t.disk_path,
            t.memory_mb,
            t.cpus,
            "yes" if t.gpu else "no",
            ", ".join(p.name for p in pools if p.template == t.name) or "-",
        )
        for t in templates
    ]
    table(console, ["NAME", "DISK", "MEMORY MB", "CPUS", "GPU", "POOLS"], rows, "Templates")
    return 0


def cmd_template_show(args: argparse.Namespace, ctx: Context) -> int:
    t = ctx.engine.get_template(args.name)
    if ctx.json:
        print_json(t)
        return 0
    key_values(
        console,
        [
            ("name", t.name),
            ("disk", t.disk_path),
            ("memory", f"{t.memory_mb} MB"),
            ("cpus", t.cpus),
            ("gpu", "yes" if t.gpu else "no"),
            ("software", ", ".join(t.software)),
            ("rdp port", t.rdp_port),
            ("mcp endpoint", t.mcp_endpoint),
            ("readiness", t.probe.kind + (f" {t.probe.port or t.probe.url or ''}")),
            ("created", t.created_at),
        ],
    )
    return 0


def cmd_template_delete(args: argparse.Namespace, ctx: Context) -> int:
    ctx.engine.delete_template(args.name)
    done(ctx, {"deleted": args.name}, f"template {args.name} deleted")
    return 0


def register(commands: Any, sub: AddCommand) -> None:
    tpl = sub(commands, "template", None, COMMANDS["template"])
    tpl_cmds = tpl.add_subparsers(dest="subcommand", metavar="ACTION", parser_class=Parser)
    p = sub(
        tpl_cmds,
        "create",
        cmd_template_create,
        "register a template disk (also: template register)",
        aliases=["register"],
    )
    p.add_argument("-n", "--name", required=True, help="template name")
    p.add_argument("--vhdx", required=True, metavar="PATH", help="template disk on the host")
    p.add_argument("--memory-mb", type=positive_int, default=4096, help="memory (default 4096)")
    p.add_argument("--cpus", type=positive_int, default=2, help="virtual CPUs (default 2)")
    p.add_argument("--gpu", action="store_true", help="VMs get a GPU partition")
    p.add_argument("--software", action="append", metavar="NAME", help="installed software")
    p.add_argument("--rdp-port", type=positive_int, default=3389, help="guest RDP port")
    p.add_argument("--mcp-endpoint", metavar="PATTERN", help="e.g. http://{ip}:8080/mcp")
    p.add_argument(
        "--probe",
        type=probe,
        default="heartbeat",
        help="readiness: heartbeat (default), tcp:PORT or http:URL",
    )
    sub(tpl_cmds, "list", cmd_template_list, "list templates")
    p = sub(tpl_cmds, "show", cmd_template_show, "show one template")
    p.add_argument("name")
    p = sub(tpl_cmds, "delete", cmd_template_delete, "delete a template no pool uses")
    p.add_argument("name")

"""`hvkube agent`: queue agents on pools, follow them, report their results."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from core.cli.argtypes import positive_int, seconds
from core.cli.context import Context
from core.cli.output import console, done
from core.cli.parsing import AddCommand, Parser
from core.errors import InvalidInput
from core.files import write_atomic
from core.names import parse_json_object
from core.output import ago, key_values, ms, print_json, styled, table
from core.states import AgentStatus

# The commands this module adds, with their help: `hvkube --help` lists them without
# building their parsers.
COMMANDS = {
    "agent": "queue and follow agents",
}


def recording_arg(text: str) -> str:
    from core.recording.archive import check_recording_id

    try:
        return check_recording_id(text)
    except InvalidInput as exc:
        raise argparse.ArgumentTypeError(exc.message) from None


def cmd_agent_submit(args: argparse.Namespace, ctx: Context) -> int:
    data = parse_json_object(args.input) if args.input is not None else {}
    agent = ctx.engine.submit_agent(
        args.pool,
        args.workflow,
        data,
        timeout_s=args.timeout,
        requires_gpu=args.gpu,
        exec_command=args.exec_command,
        on_host_down=args.on_host_down,
        exec_env=args.exec_env,
    )
    if args.wait:
        from core.waiting import wait_for_agent

        agent = wait_for_agent(ctx.engine, agent.id, args.wait_timeout)
        if ctx.json:
            print_json(agent)
        else:
            _agent_details(agent)
        return 0 if agent.status is AgentStatus.COMPLETED else 1
    done(ctx, agent, f"agent {agent.id} queued on pool {agent.pool} ({agent.task.workflow})")
    return 0


def _agent_details(a: Any) -> None:
    import json

    result = a.result
    outcome = None
    if result is not None:
        outcome = "success" if result.success else "failed"
        if result.exit_code is not None:
            outcome += f" (exit code {result.exit_code})"
        if result.duration_ms is not None:
            outcome += f" in {ms(result.duration_ms)}"
    key_values(
        console,
        [
            ("id", a.id),
            ("workflow", a.task.workflow),
            ("pool", a.pool),
            ("status", styled(a.status.value)),
            ("vm", a.vm),
            ("input", json.dumps(a.task.input, ensure_ascii=False) if a.task.input else None),
            ("timeout", f"{a.task.timeout_s}s"),
            ("gpu", "yes" if a.task.requires_gpu else "no"),
            ("exec", a.task.exec_command),
            ("exec env", ", ".join(a.task.exec_env) or None),
            ("created", a.created_at),
            ("started", a.started_at),
            ("finished", a.finished_at),
            ("waiting because", a.wait_reason),
            ("result", outcome),
            ("error", result.error if result else None),
            # Whole, one key a line: a long output wraps between lines, never mid-word.
            (
                "output",
                json.dumps(result.output, indent=2, ensure_ascii=False)
                if result and result.output
                else None,
            ),
            ("screenshots", "\n".join(result.screenshots) if result else None),
        ],
    )


def cmd_agent_list(args: argparse.Namespace, ctx: Context) -> int:
    agents = ctx.engine.list_agents(status=args.status, pool=args.pool, limit=args.limit)
    if ctx.json:
        print_json(agents)
        return 0
    rows = [
        (
            a.id,
            a.task.workflow,
            a.pool,
            styled(a.status.value),
            a.vm,
            ago(a.created_at),
            ms(a.result.duration_ms) if a.result else "-",
        )
        for a in agents
    ]
    table(console, ["ID", "WORKFLOW", "POOL", "STATUS", "VM", "AGE", "DURATION"], rows, "Agents")
    return 0


def cmd_agent_show(args: argparse.Namespace, ctx: Context) -> int:
    agent = ctx.engine.get_agent(args.id)
    if ctx.json:
        print_json(agent)
    else:
        _agent_details(agent)
    return 0


def cmd_agent_cancel(args: argparse.Namespace, ctx: Context) -> int:
    agent = ctx.engine.cancel_agent(args.id)
    done(ctx, agent, f"agent {agent.id} cancelled")
    return 0


def cmd_agent_complete(args: argparse.Namespace, ctx: Context) -> int:
    output = parse_json_object(args.output, "--output") if args.output is not None else None
    for shot in args.screenshot or []:
        if not Path(shot).is_file():
            raise InvalidInput(f"--screenshot {shot!r} is not a file")
    from core.models import AgentResult

    result = AgentResult(
        success=args.failed is None,
        output=output,
        error=args.failed,
        screenshots=[str(Path(s).resolve()) for s in args.screenshot or []],
    )
    status = AgentStatus.COMPLETED if args.failed is None else AgentStatus.FAILED
    agent = ctx.engine.finish_agent(args.id, status, result)
    done(ctx, agent, f"agent {agent.id} {agent.status.value}")
    return 0


def cmd_agent_recording(args: argparse.Namespace, ctx: Context) -> int:
    from core.recording.archive import FOLDER_NAME, Archive
    from core.recording.export import describe, export, format_for

    archive = Archive(ctx.settings.state_dir() / FOLDER_NAME)
    if args.id is None:
        found = archive.recordings()
        if ctx.json:
            print_json([vars(r) for r in found])
            return 0
        rows = [(r.id, ", ".join(r.vms), r.frames, r.entries, r.bytes, r.last_at) for r in found]
        table(console, ["ID", "VMS", "FRAMES", "ENTRIES", "BYTES", "LAST"], rows, "Recordings")
        return 0
    rec = args.id
    if args.output is None:
        entries = archive.entries(rec)
        if ctx.json:
            print_json([e.to_json() for e in entries])
            return 0
        from rich.markup import escape

        # Typed text is the agent's: shown as it is, never read as markup.
        lines = [(e.seq, e.at, e.vm, e.frame or "-", escape(describe(e.action))) for e in entries]
        table(console, ["#", "AT", "VM", "FRAME", "ACTION"], lines, f"Recording {rec}")
        return 0
    out = Path(args.output)
    fmt = format_for(args.output)
    if out.is_dir():
        raise InvalidInput(f"-o {args.output!r} is a folder; give a file name such as session.gif")
    if not out.parent.exists():
        raise InvalidInput(f"-o {args.output!r}: folder {out.parent} does not exist")
    data = export(archive, rec, fmt)
    write_atomic(out, data)
    done(ctx, {"id": rec, "path": str(out), "bytes": len(data)}, f"saved {out}")
    return 0


def register(commands: Any, sub: AddCommand) -> None:
    agent = sub(commands, "agent", None, COMMANDS["agent"])
    agent_cmds = agent.add_subparsers(dest="subcommand", metavar="ACTION", parser_class=Parser)
    p = sub(agent_cmds, "submit", cmd_agent_submit, "queue an agent on a pool")
    p.add_argument("--pool", required=True)
    p.add_argument("--workflow", required=True)
    p.add_argument("--input", metavar="JSON", help="JSON object handed to the agent")
    p.add_argument("--timeout", type=positive_int, default=600, metavar="S")
    p.add_argument("--gpu", action="store_true", help="needs a GPU template's pool")
    p.add_argument(
        "--exec",
        dest="exec_command",
        metavar="COMMAND",
        help="command the controller runs with HVKUBE_VM_* variables",
    )
    p.add_argument(
        "--exec-env",
        action="append",
        metavar="NAME",
        help="the controller's environment variable NAME is passed to the --exec command too "
        "(besides its pool's; the value is read when it starts, never stored); repeat for more",
    )
    p.add_argument(
        "--on-host-down",
        choices=["fail", "requeue"],
        default="fail",
        help="if its VM's host goes down while it runs: fail it (default) or run it again",
    )
    p.add_argument("--wait", action="store_true", help="block until it ends; print its result")
    p.add_argument("--wait-timeout", type=seconds, default=None, metavar="S")
    p = sub(agent_cmds, "list", cmd_agent_list, "list agents")
    p.add_argument(
        "--status",
        type=AgentStatus,
        choices=list(AgentStatus),
        metavar="STATUS",
        help="only agents with this status: " + ", ".join(v.value for v in AgentStatus),
    )
    p.add_argument("--pool")
    p.add_argument("--limit", type=positive_int, default=100)
    p = sub(agent_cmds, "show", cmd_agent_show, "one agent with its result")
    p.add_argument("id", type=positive_int)
    p = sub(agent_cmds, "cancel", cmd_agent_cancel, "cancel an agent (its VM is released)")
    p.add_argument("id", type=positive_int)
    p = sub(agent_cmds, "complete", cmd_agent_complete, "report an agent's result")
    p.add_argument("id", type=positive_int)
    p.add_argument("--output", metavar="JSON")
    p.add_argument("--failed", metavar="REASON")
    p.add_argument("--screenshot", action="append", metavar="FILE")
    p = sub(
        agent_cmds,
        "recording",
        cmd_agent_recording,
        "a recorded session: list them, show its actions, or export it (-o x.webp|gif|mp4)",
    )
    p.add_argument(
        "id",
        nargs="?",
        type=recording_arg,
        help="an agent id, or the lease an MCP client or API caller held; none: list them",
    )
    p.add_argument("-o", "--output", metavar="FILE", help="export to .webp, .gif or .mp4")

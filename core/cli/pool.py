"""`hvkube pool`: create, provision and scale pools."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from core.cli.argtypes import host_list, positive_int
from core.cli.context import Context
from core.cli.errors import INTERRUPTED
from core.cli.output import console, done, err_console, vm_table
from core.cli.parsing import AddCommand, Parser
from core.output import key_values, ms, print_json, table
from core.states import ReleasePolicy

if TYPE_CHECKING:
    from core.engine import Engine


# The commands this module adds, with their help: `hvkube --help` lists them without
# building their parsers.
COMMANDS = {
    "pool": "create, provision and scale pools",
}
EXEC_ENV_HELP = (
    "the controller's environment variable NAME is passed to its agents' --exec commands "
    "(its value is read when a command starts, never stored); repeat for more"
)


def cmd_pool_create(args: argparse.Namespace, ctx: Context) -> int:
    pool = ctx.engine.create_pool(
        args.name,
        args.template,
        args.count,
        warm=args.warm,
        hot=args.hot,
        release=args.release,
        max_per_host=args.max_per_host,
        hosts=args.hosts,
        exec_env=args.exec_env,
    )
    if ctx.json:
        print_json(pool)
    else:
        console.print(
            f"pool {pool.name} created: {pool.desired_count} VMs of {pool.template} "
            f"({pool.hot_count} hot, {pool.warm_count} warm), release={pool.release_policy.value}."
            f" Next: hvkube pool provision {pool.name}"
        )
        if ctx.engine.get_template(pool.template).gpu:
            console.print(
                "GPU pool: Hyper-V can neither save nor checkpoint a VM with a GPU partition, so "
                "its VMs are kept hot (paused) or cold (off), and a reset makes the VM's "
                "differencing disk anew (it then boots cold)."
            )
    return 0


def _pool_summary(engine: Engine, name: str) -> dict[str, Any]:
    from core.readmodel import pool_summary

    return pool_summary(engine, name).model_dump(mode="json")


def cmd_pool_list(args: argparse.Namespace, ctx: Context) -> int:
    summaries = [_pool_summary(ctx.engine, p.name) for p in ctx.engine.list_pools()]
    if ctx.json:
        print_json(summaries)
        return 0
    rows = []
    for s in summaries:
        c = s["counts"]
        rows.append(
            (
                s["name"],
                s["template"],
                s["desired_count"],
                f"{c.get('paused', 0)}/{s['hot_count']}",
                f"{c.get('saved', 0)}/{s['warm_count']}",
                c.get("off", 0),
                c.get("running", 0),
                c.get("error", 0) + c.get("missing", 0),
                s["release_policy"],
                ms(s["median_resume_ms"]),
            )
        )
    table(
        console,
        [
            "NAME",
            "TEMPLATE",
            "DESIRED",
            "HOT",
            "WARM",
            "COLD",
            "RUNNING",
            "ERROR",
            "RELEASE",
            "P50",
        ],
        rows,
        "Pools",
    )
    return 0


def cmd_pool_status(args: argparse.Namespace, ctx: Context) -> int:
    summary = _pool_summary(ctx.engine, args.name)
    vms = ctx.engine.list_vms(pool=args.name)
    if ctx.json:
        print_json({**summary, "vms": vms})
        return 0
    c = summary["counts"]
    key_values(
        console,
        [
            ("pool", summary["name"]),
            ("template", summary["template"]),
            ("desired", summary["desired_count"]),
            ("hot (paused)", f"{c.get('paused', 0)} of {summary['hot_count']}"),
            ("warm (saved)", f"{c.get('saved', 0)} of {summary['warm_count']}"),
            ("cold (off)", c.get("off", 0)),
            ("running", c.get("running", 0)),
            ("held", c.get("held", 0)),
            ("error/missing", c.get("error", 0) + c.get("missing", 0)),
            ("release", summary["release_policy"]),
            ("exec env", ", ".join(summary["exec_env"]) or None),
            ("median resume", ms(summary["median_resume_ms"])),
        ],
    )
    vm_table(vms)
    return 0


# The steps that end a VM's build, one way or the other.
FINAL_STEPS = frozenset({"ready", "failed", "rolled back", "not started"})


def _progress_printer(ctx: Context, total: int) -> tuple[Callable[[str, str, str], None], Any]:
    """A progress bar on a terminal, plain lines otherwise (and nothing with --json)."""
    if ctx.json:
        return (lambda vm, step, detail: None), None
    if sys.stderr.isatty():
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TimeElapsedColumn(),
            TextColumn("{task.fields[last]}", markup=False),
            console=err_console,
        )
        task = progress.add_task("provisioning", total=total, last="")

        def on_step(vm: str, step: str, detail: str) -> None:
            if step == "stopping":
                progress.update(task, description="stopping")
                return
            last = f"{vm}: {step} {detail}".strip()
            advance = 1 if step in FINAL_STEPS else 0
            progress.update(task, advance=advance, last=last)

        return on_step, progress

    def plain(vm: str, step: str, detail: str) -> None:
        if step not in {"disk", "boot", "replace", "remove", "rollback", *FINAL_STEPS}:
            return
        err_console.print(f"{vm}: {step} {detail}".rstrip(), soft_wrap=True)

    return plain, None


def _provision_report(ctx: Context, report: Any) -> int:
    if ctx.json:
        print_json(
            {
                "pool": report.pool,
                "requested": report.requested,
                "created": sorted(report.created),
                "failed": report.failed,
                "seconds": round(report.seconds, 3),
                "interrupted": report.interrupted,
                "rolled_back": sorted(report.rolled_back),
                "not_started": sorted(report.not_started),
                "half_done": report.half_done,
            }
        )
    elif report.interrupted:
        _interrupted_summary(report)
    elif report.requested == 0 and not report.failed:
        console.print(f"pool {report.pool} already has its VMs")
    else:
        console.print(
            f"pool {report.pool}: {len(report.created)} of {report.requested} VM(s) ready "
            f"in {report.seconds:.1f}s"
        )
        for vm, why in sorted(report.failed.items()):
            err_console.print(f"{vm}: {why}", style="red")
    if report.interrupted:
        return INTERRUPTED
    return 1 if report.failed else 0


def _names(names: Any) -> str:
    return ", ".join(sorted(names)) or "none"


def _interrupted_summary(report: Any) -> None:
    """What a stopped provisioning built, undid and left: the operator's next step."""
    console.print(f"pool {report.pool}: stopped after {report.seconds:.1f}s")
    console.print(f"  built and ready: {len(report.created)} ({_names(report.created)})")
    if report.rolled_back:
        console.print(
            f"  begun, then removed again: {len(report.rolled_back)} ({_names(report.rolled_back)})"
        )
    if report.not_started:
        console.print(f"  not begun: {len(report.not_started)} ({_names(report.not_started)})")
    for vm, why in sorted(report.failed.items()):
        err_console.print(f"  failed: {vm}: {why}", style="red")
    if report.half_done:
        for vm, why in sorted(report.half_done.items()):
            err_console.print(f"  half-done: {vm}: {why}", style="red")
        console.print("  Run 'hvkube reconcile' to settle the half-done VMs.")
    else:
        console.print(
            f"  Nothing is left half-done. 'hvkube pool provision {report.pool}' builds the rest."
        )


def _half_done(ctx: Context, pool: str) -> Callable[[], list[str]]:
    """The pool's VMs caught in the middle of a step, as a second Ctrl-C leaves them."""

    held: list[AbstractContextManager[None]] = []

    def left() -> list[str]:
        # Read under the write lock, kept until the process exits (it is called just
        # before): a step the workers began after the list was read would go unnamed.
        lock = ctx.engine.store.write()
        lock.__enter__()
        held.append(lock)  # never left: the lock goes with the process
        return [
            f"{vm.name} ({vm.state.value})"
            for vm in ctx.engine.list_vms(pool=pool)
            if vm.state.transitional
        ]

    return left


def _build(ctx: Context, name: str, total: int, work: Callable[..., Any]) -> int:
    """Run provisioning work with a progress display and Ctrl-C handling; print its report."""
    from core.cli.interrupt import interruptible

    on_step, progress = _progress_printer(ctx, total)

    def say(text: str) -> None:
        err_console.print(text, style="bold yellow", soft_wrap=True)
        on_step("", "stopping", "")

    with interruptible(f"building pool {name}", say, _half_done(ctx, name)) as stop:
        if progress is not None:
            with progress:
                report = work(on_step, stop)
        else:
            report = work(on_step, stop)
    return _provision_report(ctx, report)


def cmd_pool_provision(args: argparse.Namespace, ctx: Context) -> int:
    pool = ctx.engine.get_pool(args.name)
    have = len(ctx.engine.list_vms(pool=args.name))
    return _build(
        ctx,
        args.name,
        max(0, pool.desired_count - have),
        lambda on_step, stop: ctx.engine.provision_pool(
            args.name, args.parallel, on_step, stop=stop
        ),
    )


def cmd_pool_scale(args: argparse.Namespace, ctx: Context) -> int:
    if not ctx.json:
        console.print(f"pool {args.name}: scaling to {args.count}")
    return _build(
        ctx,
        args.name,
        args.count,
        lambda on_step, stop: ctx.engine.scale_pool(args.name, args.count, on_step, stop),
    )


def cmd_pool_edit(args: argparse.Namespace, ctx: Context) -> int:
    pool = ctx.engine.update_pool(
        args.name,
        count=args.count,
        warm=args.warm,
        hot=args.hot,
        release=args.release,
        hosts=args.hosts,
        all_hosts=args.all_hosts,
        exec_env=[] if args.no_exec_env else args.exec_env,
    )
    done(
        ctx,
        pool,
        f"pool {pool.name}: {pool.desired_count} VMs, {pool.hot_count} hot, "
        f"{pool.warm_count} warm, release={pool.release_policy.value}",
    )
    return 0


def cmd_pool_delete(args: argparse.Namespace, ctx: Context) -> int:
    removed = ctx.engine.delete_pool(args.name, with_vms=args.with_vms)
    done(
        ctx,
        {"deleted": args.name, "vms_removed": removed},
        f"pool {args.name} deleted ({removed} VM(s) removed)",
    )
    return 0


def register(commands: Any, sub: AddCommand) -> None:
    pool = sub(commands, "pool", None, COMMANDS["pool"])
    pool_cmds = pool.add_subparsers(dest="subcommand", metavar="ACTION", parser_class=Parser)
    p = sub(pool_cmds, "create", cmd_pool_create, "declare a pool of VMs from a template")
    p.add_argument("-n", "--name", required=True)
    p.add_argument("-t", "--template", required=True)
    p.add_argument("-c", "--count", type=positive_int, required=True, help="VMs in all")
    p.add_argument("--warm", type=positive_int, default=0, help="kept Saved (2-5 s to resume)")
    p.add_argument("--hot", type=positive_int, default=0, help="kept Paused (ms, holds RAM)")
    p.add_argument(
        "--release",
        choices=[r.value for r in ReleasePolicy],
        default="reset",
        help="what release does (default reset: back to the clean checkpoint)",
    )
    p.add_argument("--max-per-host", type=positive_int, help="cap on VMs of this pool per host")
    p.add_argument(
        "--hosts", type=host_list, metavar="A,B", help="hosts its VMs may use (default: all)"
    )
    p.add_argument("--exec-env", action="append", metavar="NAME", help=EXEC_ENV_HELP)
    sub(pool_cmds, "list", cmd_pool_list, "list pools with their tiers")
    p = sub(pool_cmds, "status", cmd_pool_status, "a pool's counts and VMs")
    p.add_argument("name")
    p = sub(pool_cmds, "provision", cmd_pool_provision, "build the pool's missing VMs")
    p.add_argument("name")
    p.add_argument("--parallel", type=positive_int, help="VMs built at once (default 8)")
    p = sub(pool_cmds, "scale", cmd_pool_scale, "change the pool's size and build or remove VMs")
    p.add_argument("name")
    p.add_argument("--count", type=positive_int, required=True)
    p = sub(pool_cmds, "edit", cmd_pool_edit, "change counts or release policy")
    p.add_argument("name")
    p.add_argument("--count", type=positive_int)
    p.add_argument("--warm", type=positive_int)
    p.add_argument("--hot", type=positive_int)
    p.add_argument("--release", choices=[r.value for r in ReleasePolicy])
    hosts = p.add_mutually_exclusive_group()
    hosts.add_argument("--hosts", type=host_list, metavar="A,B", help="hosts its VMs may use")
    hosts.add_argument("--all-hosts", action="store_true", help="its VMs may use every host")
    exec_env = p.add_mutually_exclusive_group()
    exec_env.add_argument(
        "--exec-env", action="append", metavar="NAME", help=EXEC_ENV_HELP + "; replaces the list"
    )
    exec_env.add_argument(
        "--no-exec-env", action="store_true", help="its agents' commands get no extra variables"
    )
    p = sub(pool_cmds, "delete", cmd_pool_delete, "delete a pool")
    p.add_argument("name")
    p.add_argument("--with-vms", action="store_true", help="also delete its VMs and their files")

"""`hvkube vm`: inspect and drive single VMs (state, screenshots, input, console, RDP)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from core.cli.context import Context, Handler
from core.cli.output import console, done, vm_table
from core.cli.parsing import AddCommand, Parser
from core.errors import InvalidInput
from core.files import write_atomic
from core.output import holder_text, key_values, ms, print_json, styled
from core.states import VMState

# The commands this module adds, with their help: `hvkube --help` lists them without
# building their parsers.
COMMANDS = {
    "vm": "inspect and drive single VMs",
}


def cmd_vm_list(args: argparse.Namespace, ctx: Context) -> int:
    # Plain rows, not the engine's models: a listing is what scripts call most (see
    # core.vm_rows); the JSON is the same.
    from core.vm_rows import COLUMNS, VMRow

    state = args.state.value if args.state else None
    rows = ctx.views.vms(COLUMNS, pool=args.pool, state=state, host=args.host)
    if not rows and (args.pool is not None or args.host is not None):
        ctx.engine.list_vms(pool=args.pool, host=args.host)  # says if there is no such one
    vms = [VMRow.of(row) for row in rows]
    if ctx.json:
        print_json([vm.as_json() for vm in vms])
    else:
        vm_table(vms)
    return 0


def cmd_vm_info(args: argparse.Namespace, ctx: Context) -> int:
    vm = ctx.engine.get_vm(args.name)
    host = ctx.engine.host_vm(vm)
    if ctx.json:
        print_json({**vm.model_dump(mode="json"), "host": host})
        return 0
    key_values(
        console,
        [
            ("name", vm.name),
            ("pool", vm.pool),
            ("host", vm.host),
            ("template", vm.template),
            ("state", styled(vm.state.value)),
            ("host state", host.raw_state if host else "not on host"),
            ("held by", holder_text(vm.holder, vm.agent_id)),
            ("agent", vm.agent_id),
            ("ip", vm.ip),
            ("rdp port", vm.rdp_port),
            ("mcp endpoint", ctx.engine.mcp_endpoint(vm)),
            ("memory", f"{vm.memory_mb} MB"),
            ("disk", vm.disk_path),
            ("saved state", vm.saved_state_path),
            (
                "checkpoints",
                ", ".join(ctx.engine.backend.checkpoint_names(ctx.engine.ref(vm)))
                if host
                else None,
            ),
            ("created", vm.created_at),
            ("last resumed", vm.last_resumed_at),
            ("last resume", ms(vm.last_resume_ms)),
            ("error", vm.error),
        ],
    )
    return 0


def _vm_action(method: str, verb: str) -> Handler:
    def handler(args: argparse.Namespace, ctx: Context) -> int:
        kwargs = {"force": args.force} if hasattr(args, "force") and method == "stop_vm" else {}
        vm = getattr(ctx.engine, method)(args.name, **kwargs)
        done(ctx, vm, f"{args.name}: {verb} ({vm.state.value})")
        return 0

    return handler


def cmd_vm_delete(args: argparse.Namespace, ctx: Context) -> int:
    ctx.engine.delete_vm(args.name, force=args.force)
    done(ctx, {"deleted": args.name}, f"VM {args.name} deleted with its files")
    return 0


def cmd_vm_ip(args: argparse.Namespace, ctx: Context) -> int:
    ip = ctx.engine.vm_ip(args.name)
    if ctx.json:
        print_json({"name": args.name, "ip": ip})
    else:
        console.print(ip or "-")
    return 0 if ip else 1


def cmd_vm_screenshot(args: argparse.Namespace, ctx: Context) -> int:
    out = Path(args.output)
    if out.is_dir():
        raise InvalidInput(f"-o {args.output!r} is a folder; give a file name such as screen.png")
    if not out.parent.exists():
        raise InvalidInput(f"-o {args.output!r}: folder {out.parent} does not exist")
    data = ctx.engine.screenshot(args.name)
    write_atomic(out, data)
    done(ctx, {"name": args.name, "path": str(out), "bytes": len(data)}, f"saved {out}")
    return 0


def _desktop(ctx: Context) -> Any:
    from core.desktop import Desktop
    from core.recording.recorder import Recorder

    return Desktop(ctx.engine, "cli", Recorder.for_engine(ctx.engine))


def cmd_vm_type(args: argparse.Namespace, ctx: Context) -> int:
    typed = _desktop(ctx).type_text(args.name, args.text)
    done(ctx, {"name": args.name, "typed": typed}, f"{args.name}: typed {typed} characters")
    return 0


def cmd_vm_key(args: argparse.Namespace, ctx: Context) -> int:
    pressed = _desktop(ctx).press_keys(args.name, args.key)
    done(ctx, {"name": args.name, "key": args.key}, f"{args.name}: pressed {' '.join(pressed)}")
    return 0


def cmd_vm_click(args: argparse.Namespace, ctx: Context) -> int:
    _desktop(ctx).click(args.name, args.x, args.y, button=args.button, double=args.double)
    value = {"name": args.name, "x": args.x, "y": args.y, "button": args.button}
    done(ctx, value, f"{args.name}: {args.button} click at {args.x},{args.y}")
    return 0


def _console_backend(ctx: Context, name: str) -> Any:
    from core.backends.base import Capability, feature
    from core.errors import Unsupported

    vm = ctx.engine.get_vm(name)  # validates the name; the VM must be one of ours
    backend = feature(ctx.engine.backend, Capability.CONSOLE)
    if backend is None:
        raise Unsupported(
            f"the {ctx.engine.backend.name} backend cannot open a console; it needs the "
            "Hyper-V backend (--backend hyperv) on a Windows host, or qemu with a VNC viewer",
            vm=name,
        )
    return backend, ctx.engine.ref(vm)


def cmd_vm_console(args: argparse.Namespace, ctx: Context) -> int:
    backend, ref = _console_backend(ctx, args.name)
    proc = backend.console(ref)
    done(ctx, {"name": args.name, "pid": proc.pid}, f"{args.name}: console opened")
    return 0


def cmd_vm_rdp(args: argparse.Namespace, ctx: Context) -> int:
    import subprocess

    from core.remote import rdp_command

    vm = ctx.engine.get_vm(args.name)
    ip = ctx.engine.vm_ip(args.name)
    if not ip:
        raise InvalidInput(f"VM {args.name!r} has no known IP address; is it running?")
    command = rdp_command(ip, vm.rdp_port)
    proc = subprocess.Popen(command)
    done(ctx, {"name": args.name, "command": command, "pid": proc.pid}, " ".join(command))
    return 0


def register(commands: Any, sub: AddCommand) -> None:
    vm = sub(commands, "vm", None, COMMANDS["vm"])
    vm_cmds = vm.add_subparsers(dest="subcommand", metavar="ACTION", parser_class=Parser)
    p = sub(vm_cmds, "list", cmd_vm_list, "list VMs")
    p.add_argument("-p", "--pool", help="only this pool's VMs")
    p.add_argument("--host", metavar="NAME", help="only VMs on this host")
    p.add_argument(
        "--state",
        type=VMState,
        choices=list(VMState),
        metavar="STATE",
        help="only VMs in this state: " + ", ".join(v.value for v in VMState),
    )
    p = sub(vm_cmds, "info", cmd_vm_info, "everything about one VM")
    p.add_argument("name")
    for name, method, verb, help_text in (
        ("resume", "resume_vm", "running", "start or resume (falls back to clean if broken)"),
        ("save", "save_vm", "saved", "save memory to disk (warm)"),
        ("pause", "pause_vm", "paused", "pause, keeping memory in RAM (hot)"),
        ("reset", "reset_vm", "reset to clean", "restore the clean checkpoint (ends Saved)"),
    ):
        p = sub(vm_cmds, name, _vm_action(method, verb), help_text)
        p.add_argument("name")
    p = sub(vm_cmds, "stop", _vm_action("stop_vm", "stopped"), "shut down (--force: turn off)")
    p.add_argument("name")
    p.add_argument("--force", action="store_true", help="turn off instead of shutting down")
    p = sub(vm_cmds, "delete", cmd_vm_delete, "delete a VM with its disk and saved state")
    p.add_argument("name")
    p.add_argument("--force", action="store_true", help="even when it is held")
    p = sub(vm_cmds, "ip", cmd_vm_ip, "the VM's IP address (refreshed)")
    p.add_argument("name")
    p = sub(vm_cmds, "screenshot", cmd_vm_screenshot, "save the VM's screen as PNG")
    p.add_argument("name")
    p.add_argument("-o", "--output", required=True, metavar="FILE")

    p = sub(vm_cmds, "type", cmd_vm_type, "type ASCII text into the VM (from the host)")
    p.add_argument("name")
    p.add_argument("text")
    p = sub(
        vm_cmds, "key", cmd_vm_key, "press keys in turn: enter, tab, f5, a, ctrl+l, 'ctrl+a del'"
    )
    p.add_argument("name")
    p.add_argument("key")
    p = sub(vm_cmds, "click", cmd_vm_click, "click at a pixel of the VM's screen")
    p.add_argument("name")
    p.add_argument("x", type=int)
    p.add_argument("y", type=int)
    p.add_argument("--button", choices=["left", "right", "middle"], default="left")
    p.add_argument("--double", action="store_true", help="double click")
    p = sub(vm_cmds, "console", cmd_vm_console, "open Hyper-V's console (vmconnect, Windows)")
    p.add_argument("name")
    p = sub(vm_cmds, "rdp", cmd_vm_rdp, "open this platform's RDP client at the VM's IP")
    p.add_argument("name")

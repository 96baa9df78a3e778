"""`hvkube run`: the controller, in the foreground until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from core.cli.argtypes import positive_int, seconds
from core.cli.context import Context
from core.cli.output import console
from core.cli.parsing import AddCommand
from core.errors import InvalidInput
from core.output import print_json

# The commands this module adds, with their help: `hvkube --help` lists them without
# building their parsers.
COMMANDS = {
    "run": "the controller: keep pools at size and tiers, schedule agents (Ctrl-C stops cleanly)",
}


def cmd_run(args: argparse.Namespace, ctx: Context) -> int:
    import logging
    import signal
    import threading

    from core.controller import Controller, controller_status

    if args.status:
        status = controller_status(ctx.engine)
        if ctx.json:
            print_json(status)
        else:
            console.print(status.summary())
        return 0 if status.running else 1
    if args.tick <= 0:
        raise InvalidInput(f"--tick must be more than 0 seconds, got {args.tick:g}")
    if args.lease_ttl < 1:
        raise InvalidInput(f"--lease-ttl must be at least 1 second, got {args.lease_ttl:g}")
    if not 1 <= args.workers <= 256:
        raise InvalidInput(f"--workers must be between 1 and 256, got {args.workers}")
    logging.basicConfig(
        level=logging.DEBUG if ctx.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        if stop.is_set():  # a second signal: leave now; reconcile settles the rest
            sys.stderr.write("hvkube: stopping at once\n")
            os._exit(130)
        sys.stderr.write("hvkube: stopping: finishing in-flight steps (signal again to quit)\n")
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    controller = Controller(
        ctx.engine,
        tick_s=args.tick,
        lease_ttl_s=args.lease_ttl,
        max_workers=args.workers,
        grace_s=args.grace,
    )
    return controller.run(stop, once=args.once)


def register(commands: Any, sub: AddCommand) -> None:
    p = sub(
        commands,
        "run",
        cmd_run,
        COMMANDS["run"],
    )
    p.add_argument("--tick", type=seconds, default=2.0, metavar="S", help="pool upkeep period")
    p.add_argument("--once", action="store_true", help="one tick, wait for its work, exit")
    p.add_argument(
        "--lease-ttl",
        type=seconds,
        default=15.0,
        metavar="S",
        help="another controller takes over this long after this one stops renewing",
    )
    p.add_argument(
        "--grace", type=seconds, default=10.0, metavar="S", help="on stop, time for commands"
    )
    p.add_argument("--workers", type=positive_int, default=32, help="agents started at once")
    p.add_argument("--status", action="store_true", help="show the controller's status and exit")
    p.add_argument(
        "--host",
        dest="fleet_host",
        metavar="NAME",
        help="the host this controller runs (default: this machine's name; env HVKUBE_HOST)",
    )

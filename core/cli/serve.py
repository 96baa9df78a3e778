"""`hvkube serve`: the HTTP API (its dependencies are imported only when it runs)."""

from __future__ import annotations

import argparse
from typing import Any

from core.cli.argtypes import positive_int, seconds
from core.cli.context import Context
from core.cli.parsing import AddCommand
from core.errors import InvalidInput

# The commands this module adds, with their help: `hvkube --help` lists them without
# building their parsers.
COMMANDS = {
    "serve": "serve the HTTP API (see docs/api.md)",
}


def cmd_serve(args: argparse.Namespace, ctx: Context) -> int:
    try:
        from core.api.server import serve
    except ModuleNotFoundError as exc:
        raise InvalidInput(
            f"the HTTP API needs {exc.name}; install it with: pip install 'hvkube[api]'"
        ) from None
    if not 0 <= args.port <= 65535:
        raise InvalidInput(f"--port must be between 0 and 65535, got {args.port}")
    if args.lease_seconds < 1:
        raise InvalidInput(f"--lease-seconds must be at least 1, got {args.lease_seconds:g}")
    if args.sweep_seconds <= 0:
        raise InvalidInput("--sweep-seconds must be more than 0")
    serve(
        ctx.settings,
        args.host,
        args.port,
        lease_seconds=args.lease_seconds,
        sweep_seconds=args.sweep_seconds,
        allow_exec=args.allow_exec,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        access_log=args.access_log,
    )
    return 0


def register(commands: Any, sub: AddCommand) -> None:
    p = sub(commands, "serve", cmd_serve, COMMANDS["serve"])
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument(
        "-p", "--port", type=positive_int, default=8080, help="port (default 8080; 0: any)"
    )
    p.add_argument(
        "--lease-seconds",
        type=seconds,
        default=600.0,
        metavar="S",
        help="default lease of an acquired VM; unrenewed, it is released (default 600)",
    )
    p.add_argument("--sweep-seconds", type=seconds, default=1.0, help=argparse.SUPPRESS)
    p.add_argument(
        "--allow-exec", action="store_true", help="accept agents' exec_command over HTTP"
    )
    p.add_argument("--tls-cert", metavar="FILE", help="serve HTTPS with this certificate")
    p.add_argument("--tls-key", metavar="FILE", help="the certificate's private key")
    p.add_argument("--access-log", action="store_true", help="log every request")

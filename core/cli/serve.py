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
    if args.request_timeout <= 0 or args.request_timeout > 3600:
        raise InvalidInput(
            f"--request-timeout must be between 0 and 3600 seconds, got {args.request_timeout:g}"
        )
    if not 16 <= args.max_connections <= 1_000_000:
        raise InvalidInput(
            f"--max-connections must be between 16 and 1000000, got {args.max_connections}"
        )
    origins = [o.strip() for o in args.cors_origin or []]
    for origin in origins:
        if origin == "*" or not origin.startswith(("http://", "https://")) or "/" in origin[8:]:
            raise InvalidInput(
                f"--cors-origin {origin!r} is not an origin; give scheme://host[:port], "
                "e.g. https://dash.example.org (no '*', no path)"
            )
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
        require_lease=args.require_lease,
        cors_origins=origins,
        request_timeout_s=args.request_timeout,
        max_connections=args.max_connections,
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
    p.add_argument(
        "--require-lease",
        action="store_true",
        help="refuse acquires that ask for no lease (lease=false)",
    )
    p.add_argument(
        "--cors-origin",
        action="append",
        metavar="ORIGIN",
        help="allow browser requests from this origin (repeatable; default: none)",
    )
    p.add_argument(
        "--request-timeout",
        type=seconds,
        default=5.0,
        metavar="S",
        help="close a connection that has not sent a whole request within S seconds (default 5)",
    )
    p.add_argument(
        "--max-connections",
        type=positive_int,
        default=4096,
        metavar="N",
        help="open connections served at once; beyond, 503 (default 4096)",
    )

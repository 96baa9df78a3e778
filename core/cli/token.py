"""`hvkube token`: scoped tokens for the HTTP API (the admin token file stays as it is)."""

from __future__ import annotations

import argparse
from typing import Any

from core.cli.context import Context
from core.cli.parsing import AddCommand, Parser

COMMANDS = {
    "token": "scoped tokens for the HTTP API",
}


def cmd_token_create(args: argparse.Namespace, ctx: Context) -> int:
    from core.cli.output import console, err_console
    from core.output import print_json
    from core.tokens import create_token

    info, secret = create_token(ctx.engine.store, args.name, args.scope, ctx.settings.readonly)
    if ctx.json:
        print_json({**info.__dict__, "token": secret})
        return 0
    console.print(secret, soft_wrap=True)
    err_console.print(
        f"token {info.id} ({info.name}, scope {info.scope}) made; it is shown only now: "
        "keep it, the store holds only its hash"
    )
    return 0


def cmd_token_list(args: argparse.Namespace, ctx: Context) -> int:
    from core.cli.output import console
    from core.output import print_json, table
    from core.tokens import list_tokens

    found = list_tokens(ctx.engine.store)
    if ctx.json:
        print_json([t.__dict__ for t in found])
        return 0
    rows = [
        (t.id, t.name, t.scope, t.created_at[:19], "revoked" if t.revoked else "live")
        for t in found
    ]
    table(console, ["ID", "NAME", "SCOPE", "CREATED", "STATUS"], rows, "API tokens")
    return 0


def cmd_token_revoke(args: argparse.Namespace, ctx: Context) -> int:
    from core.cli.output import done
    from core.tokens import revoke_token

    revoke_token(ctx.engine.store, args.id, ctx.settings.readonly)
    done(ctx, {"revoked": args.id}, f"token {args.id} revoked")
    return 0


def register(commands: Any, sub: AddCommand) -> None:
    tok = sub(commands, "token", None, COMMANDS["token"])
    cmds = tok.add_subparsers(dest="subcommand", metavar="ACTION", parser_class=Parser)
    p = sub(cmds, "create", cmd_token_create, "make a token (printed once)")
    p.add_argument("--name", required=True, help="what the token is for")
    p.add_argument(
        "--scope",
        choices=["agent", "admin"],
        default="agent",
        help="agent (default): acquire, renew, release and drive its own VMs; admin: all",
    )
    sub(cmds, "list", cmd_token_list, "list tokens (never their secrets)")
    p = sub(cmds, "revoke", cmd_token_revoke, "revoke a token at once")
    p.add_argument("id")

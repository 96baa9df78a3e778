"""`hvkube mcp`: drive pool desktops from an AI agent over the Model Context Protocol
(stdio). The SDK and the engine are imported only when it runs."""

from __future__ import annotations

import argparse
from typing import Any

from core.cli.context import Context
from core.cli.parsing import AddCommand
from core.errors import InvalidInput

# The commands this module adds, with their help: `hvkube --help` lists them without
# building their parsers.
COMMANDS = {
    "mcp": "serve MCP tools on stdin/stdout: acquire, screenshot, click, type, keys, release",
}


def cmd_mcp(args: argparse.Namespace, ctx: Context) -> int:
    try:
        from core.computer.stdio import serve_stdio
    except ModuleNotFoundError as exc:
        if not (exc.name or "").startswith(("mcp", "anyio", "starlette")):
            raise
        raise InvalidInput(
            f"the MCP server needs {exc.name}; install it with: pip install 'hvkube[mcp]'"
        ) from None
    serve_stdio(ctx.engine)
    return 0


def register(commands: Any, sub: AddCommand) -> None:
    sub(
        commands,
        "mcp",
        cmd_mcp,
        COMMANDS["mcp"],
    )

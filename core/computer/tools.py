"""The MCP server's tools and resource, over one engine and one kind of session leases.

A tool the backend cannot do is not offered (its declared capabilities): without input,
no click, type or key tools; without screenshots, no screenshot tools. An engine error is a
tool error (`is_error`) whose text is the CLI's message and whose structured content has
the CLI's code and exit code; nothing was sent to the VM.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import anyio.to_thread
from mcp.server.mcpserver import Context, MCPServer
from mcp.types import CallToolResult, ImageContent, TextContent
from pydantic import Field

from core.computer.leases import SessionLeases, policy_for
from core.desktop import KEYS_HELP, Desktop, Screen
from core.engine import Engine
from core.errors import HvkubeError, InvalidInput
from core.readmodel import pool_summaries

log = logging.getLogger("hvkube.mcp")

INSTRUCTIONS = (
    "Drive Windows desktops of hvkube pools from the host. Take one with acquire_desktop, "
    "look with screenshot (pixel coordinates are those of the returned image), act with "
    "click, move_mouse, type_text and press_keys, and give it back with release_desktop. "
    "You may drive only the desktops you acquired. Every session is recorded."
)

VMArg = Annotated[str, Field(description="the VM name acquire_desktop returned")]
XArg = Annotated[int, Field(description="pixel column, 0 at the left of the screenshot")]
YArg = Annotated[int, Field(description="pixel row, 0 at the top of the screenshot")]


def error_result(exc: HvkubeError) -> CallToolResult:
    return CallToolResult(
        content=[TextContent(type="text", text=exc.message)],
        structured_content={"error": exc.code, "exit_code": exc.exit_code, "message": exc.message},
        is_error=True,
    )


def ok(value: dict[str, Any], *extra: ImageContent) -> CallToolResult:
    return CallToolResult(
        content=[*extra, TextContent(type="text", text=json.dumps(value))],
        structured_content=value,
    )


def image(screen: Screen) -> ImageContent:
    return ImageContent(
        type="image", data=base64.b64encode(screen.png).decode("ascii"), mime_type="image/png"
    )


def session_of(ctx: Context) -> str | None:
    """The HTTP transport's session id (its Mcp-Session-Id header); None over stdio."""
    request = ctx.request_context.request
    headers = getattr(request, "headers", None)
    return headers.get("mcp-session-id") if headers is not None else None


def build_server(engine: Engine, desktop: Desktop, leases: SessionLeases) -> MCPServer:
    """The MCP server with the tools this engine's backend can do."""
    server: MCPServer = MCPServer("hvkube", instructions=INSTRUCTIONS, log_level="WARNING")

    async def call(fn: Callable[[], Any]) -> Any:
        return await anyio.to_thread.run_sync(fn)

    async def guarded(work: Callable[[], Awaitable[CallToolResult]]) -> CallToolResult:
        try:
            return await work()
        except HvkubeError as exc:
            return error_result(exc)

    async def holders_for(ctx: Context, vm: str) -> Any:
        """The holders this session drives with, after renewing the lease of `vm`."""
        session = session_of(ctx)
        held = await call(lambda: leases.holders(session))
        row = await call(lambda: desktop.vm(vm, held))
        await call(lambda: leases.touch(session, row.holder))
        return held

    @server.tool(
        description="Take a ready desktop (a Windows VM) from a pool, resumed in seconds. "
        "Returns the VM name to pass to the other tools, its address and RDP port, and the "
        "lease under which it is held and recorded."
    )
    async def acquire_desktop(
        pool: Annotated[str, Field(description="pool name; see the hvkube://pools resource")],
        wait_s: Annotated[
            float, Field(description="seconds to wait for a free VM (0: fail at once)")
        ] = 0.0,
        ctx: Context | None = None,
    ) -> CallToolResult:
        async def work() -> CallToolResult:
            if not 0 <= wait_s <= 3600:
                raise InvalidInput(f"wait_s must be between 0 and 3600 seconds, got {wait_s:g}")
            vm, lease = await leases.acquire(session_of(ctx) if ctx else None, pool, wait_s)
            return ok(
                {
                    "vm": vm.name,
                    "pool": vm.pool,
                    "address": vm.ip,
                    "rdp_port": vm.rdp_port,
                    "lease": lease,
                    "resume_ms": round(vm.resume_ms, 1),
                }
            )

        return await guarded(work)

    @server.tool(
        description="Give a desktop back. reset=true restores it to clean, reset=false keeps "
        "its state; left out, the pool's policy decides."
    )
    async def release_desktop(
        vm: VMArg, reset: bool | None = None, ctx: Context | None = None
    ) -> CallToolResult:
        async def work() -> CallToolResult:
            assert ctx is not None
            session = session_of(ctx)
            await holders_for(ctx, vm)
            after = await call(lambda: leases.release(session, vm, policy_for(reset)))
            state = getattr(getattr(after, "state", None), "value", "destroyed")
            return ok({"vm": vm, "released": True, "state": state})

        return await guarded(work)

    if desktop.can_see:

        @server.tool(description="The desktop's screen as a PNG image, with its size.")
        async def screenshot(vm: VMArg, ctx: Context) -> CallToolResult:
            async def work() -> CallToolResult:
                held = await holders_for(ctx, vm)
                screen: Screen = await call(lambda: desktop.screenshot(vm, held))
                value = {"vm": vm, "width": screen.width, "height": screen.height}
                return ok(value, image(screen))

            return await guarded(work)

        @server.tool(
            description="Wait until the screen changes (after an action that takes time), "
            "up to timeout_s seconds; returns whether it changed and the screen."
        )
        async def wait_for_screen_change(
            vm: VMArg,
            ctx: Context,
            timeout_s: Annotated[float, Field(description="at most 300 seconds")] = 10.0,
        ) -> CallToolResult:
            async def work() -> CallToolResult:
                held = await holders_for(ctx, vm)
                changed, screen = await call(lambda: desktop.wait_for_change(vm, timeout_s, held))
                value = {
                    "vm": vm,
                    "changed": changed,
                    "width": screen.width,
                    "height": screen.height,
                }
                return ok(value, image(screen))

            return await guarded(work)

    if desktop.can_drive:

        @server.tool(description="Click at a pixel of the screen (as in the last screenshot).")
        async def click(
            vm: VMArg,
            x: XArg,
            y: YArg,
            ctx: Context,
            button: Annotated[str, Field(description="left, right or middle")] = "left",
            double: bool = False,
        ) -> CallToolResult:
            async def work() -> CallToolResult:
                held = await holders_for(ctx, vm)
                await call(lambda: desktop.click(vm, x, y, button, double, held))
                return ok({"vm": vm, "x": x, "y": y, "button": button, "double": double})

            return await guarded(work)

        @server.tool(description="Move the pointer to a pixel of the screen without clicking.")
        async def move_mouse(vm: VMArg, x: XArg, y: YArg, ctx: Context) -> CallToolResult:
            async def work() -> CallToolResult:
                held = await holders_for(ctx, vm)
                await call(lambda: desktop.move_mouse(vm, x, y, held))
                return ok({"vm": vm, "x": x, "y": y})

            return await guarded(work)

        @server.tool(
            description="Type text on the desktop's keyboard (US layout; printable ASCII, "
            "tab and newline)."
        )
        async def type_text(vm: VMArg, text: str, ctx: Context) -> CallToolResult:
            async def work() -> CallToolResult:
                held = await holders_for(ctx, vm)
                typed = await call(lambda: desktop.type_text(vm, text, held))
                return ok({"vm": vm, "typed": typed})

            return await guarded(work)

        @server.tool(description=f"Press keys in turn: {KEYS_HELP}. Example: 'ctrl+l', 'enter'.")
        async def press_keys(
            vm: VMArg,
            keys: Annotated[str, Field(description="e.g. 'enter', 'ctrl+l', 'ctrl+a delete'")],
            ctx: Context,
        ) -> CallToolResult:
            async def work() -> CallToolResult:
                held = await holders_for(ctx, vm)
                pressed = await call(lambda: desktop.press_keys(vm, keys, held))
                return ok({"vm": vm, "pressed": pressed})

            return await guarded(work)

    @server.resource(
        "hvkube://pools",
        name="pools",
        description="The pools with their VM counts per state",
        mime_type="application/json",
    )
    async def pools() -> str:
        summaries = await call(lambda: pool_summaries(engine))
        return json.dumps([s.model_dump(mode="json") for s in summaries])

    return server

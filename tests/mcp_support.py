"""Running `hvkube mcp` as a real subprocess and talking to it with the `mcp` SDK's client."""

from __future__ import annotations

import asyncio
import base64
import io
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from PIL import Image

from tests.conftest import REPO

T = TypeVar("T")


@asynccontextmanager
async def mcp_session(env: dict[str, str]) -> AsyncIterator[Any]:
    from mcp import ClientSession, StdioServerParameters, stdio_client

    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "core.cli", "mcp"],
        env={**os.environ, **env},
        cwd=str(REPO),
    )
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        yield session


def run_session(env: dict[str, str], body: Callable[[Any], Awaitable[T]]) -> T:
    """Start `hvkube mcp`, run `body(session)`, and end the server (closing its stdin)."""

    async def main() -> T:
        async with mcp_session(env) as session:
            return await body(session)

    return asyncio.run(main())


def png_of(result: Any) -> Image.Image:
    """The image a tool result carries, decoded."""
    images = [c for c in result.content if c.type == "image"]
    assert len(images) == 1 and images[0].mime_type == "image/png"
    return Image.open(io.BytesIO(base64.b64decode(images[0].data)))


def recordings_dir(db: Path) -> Path:
    return db.parent / "recordings"

"""The README's recorded session: an MCP client (the `mcp` SDK's, over stdio) takes the
QEMU test guest, types two lines and presses Enter after each, and gives it back; the
session's recording is exported to screenshots/recording.gif.

    python scripts/make_recording.py        # needs QEMU and scripts/build-test-guest.sh
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from core import open_engine  # noqa: E402
from core.files import write_atomic  # noqa: E402
from core.recording.archive import FOLDER_NAME, Archive  # noqa: E402
from core.recording.export import export  # noqa: E402
from tests.conformance.backends import QEMU  # noqa: E402
from tests.mcp_support import mcp_session  # noqa: E402

LINES = ("hello from an MCP client", "every action is recorded")


async def session(env: dict[str, str]) -> str:
    async with mcp_session(env) as s:
        got = await s.call_tool("acquire_desktop", {"pool": "demo", "wait_s": 60})
        vm = got.structured_content["vm"]
        await s.call_tool("screenshot", {"vm": vm})
        for line in LINES:
            await s.call_tool("type_text", {"vm": vm, "text": line})
            await s.call_tool("press_keys", {"vm": vm, "keys": "enter"})
            await s.call_tool("wait_for_screen_change", {"vm": vm, "timeout_s": 5})
        await s.call_tool("release_desktop", {"vm": vm})
        return str(got.structured_content["lease"])


def main() -> int:
    if QEMU.missing():
        print(QEMU.missing(), file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="hvk-") as tmp:
        root = Path(tmp)
        os.environ["HVKUBE_CONFIG"] = str(root / "none.toml")
        settings = QEMU.settings(root)
        engine = open_engine(settings)
        try:
            engine.create_template("guest", QEMU.template_disk(root), memory_mb=QEMU.memory_mb)
            engine.create_pool("demo", "guest", count=1, warm=1)
            assert not engine.provision_pool("demo").failed
            env: dict[str, Any] = {"HVKUBE_CONFIG": str(root / "none.toml"), **QEMU.env(settings)}
            lease = asyncio.run(session(env))
            archive = Archive(settings.state_dir() / FOLDER_NAME)
            out = write_atomic(
                REPO / "screenshots" / "recording.gif", export(archive, lease, "gif")
            )
            print(f"{out}: {len(archive.entries(lease))} entries")
        finally:
            QEMU.cleanup(engine, root)
            engine.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

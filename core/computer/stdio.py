"""`hvkube mcp`: the MCP server on standard input and output, for one client.

While it runs, the VMs it holds are recorded about once a second (unless a controller runs:
then the controller records them), and after every action. When the client goes, every VM
it still holds is given back by its pool's policy.
"""

from __future__ import annotations

import signal
import sys
from types import FrameType

from core.computer.leases import ProcessLeases
from core.computer.tools import build_server
from core.desktop import Desktop
from core.engine import Engine
from core.recording.recorder import HeldVM, Recorder, RecordingLoop, held_vms


def controller_records(engine: Engine) -> bool:
    """A live controller records every held VM itself."""
    from core.controller import controller_status

    return controller_status(engine).running


def _stop(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def serve_stdio(engine: Engine, holder: str | None = None) -> list[str]:
    """Serve until the client closes the connection; the VMs given back at the end."""
    recorder = Recorder.for_engine(engine)
    leases = ProcessLeases(engine, holder)
    desktop = Desktop(engine, "mcp", recorder)
    server = build_server(engine, desktop, leases)

    def own_vms() -> list[HeldVM]:
        if controller_records(engine):
            return []
        return [vm for vm in held_vms(engine) if vm.holder == leases.holder]

    loop = None
    if recorder is not None:
        loop = RecordingLoop(recorder, own_vms, 1.0, engine.settings.recording_retention_days)
        loop.start()
    if sys.platform != "win32":
        signal.signal(signal.SIGTERM, _stop)
    try:
        server.run("stdio")
    except KeyboardInterrupt:
        pass
    finally:
        if loop is not None:
            loop.stop()
    return leases.release_all()

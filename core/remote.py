"""Starting the platform's viewers for a VM: Hyper-V's console (vmconnect) and an RDP client."""

from __future__ import annotations

import os
import shutil
import sys

from core.errors import Unsupported


def vmconnect_command(vm: str) -> list[str]:
    """`vmconnect.exe localhost NAME`, or Unsupported saying why it cannot run here."""
    exe = shutil.which("vmconnect.exe") or shutil.which("vmconnect")
    if sys.platform != "win32" or exe is None:
        raise Unsupported(
            "the VM console needs vmconnect.exe, which comes with the Hyper-V management "
            "tools on Windows; it is not available on this machine",
            vm=vm,
            operation="console",
        )
    return [exe, "localhost", vm]


def rdp_command(ip: str, port: int = 3389) -> list[str]:
    """The platform's RDP client command for ip:port, or Unsupported saying why there is none."""
    if sys.platform == "win32":
        exe = shutil.which("mstsc.exe") or os.path.join(
            os.environ.get("SYSTEMROOT", "C:\\Windows"), "System32", "mstsc.exe"
        )
        return [exe, f"/v:{ip}:{port}"]
    if sys.platform == "darwin":
        return ["open", f"rdp://full%20address=s:{ip}:{port}"]
    for client in ("xfreerdp3", "xfreerdp", "wlfreerdp"):
        exe = shutil.which(client)
        if exe:
            return [exe, f"/v:{ip}:{port}"]
    for client in ("remmina", "krdc"):
        exe = shutil.which(client)
        if exe:
            return [exe, f"rdp://{ip}:{port}"]
    raise Unsupported(
        "no RDP client found: install FreeRDP (xfreerdp) or Remmina, or connect by hand to "
        f"{ip}:{port}",
        operation="rdp",
    )

"""Which process is doing something: an identity that survives pid reuse.

Rows record the process that began a step (`op_owner`) or holds a lease. Another process
judges from it whether that work is still going on.
"""

from __future__ import annotations

import os
import socket

_owner_cache: tuple[int, str] | None = None


def process_owner() -> str:
    """Identifies this process across pid reuse: host, pid and start time."""
    global _owner_cache
    pid = os.getpid()
    if _owner_cache is None or _owner_cache[0] != pid:
        import psutil  # loaded by the first change, not by commands that only read

        started = int(psutil.Process(pid).create_time())
        _owner_cache = (pid, f"{socket.gethostname()}:{pid}:{started}")
    return _owner_cache[1]


def owner_alive(owner: str | None) -> bool:
    """Is the process named by `owner` (from process_owner) still running here?"""
    if not owner:
        return False
    try:
        host, pid_text, started_text = owner.rsplit(":", 2)
        pid, started = int(pid_text), int(started_text)
    except ValueError:
        return False
    if host != socket.gethostname():
        return True  # another host's process: not ours to judge
    import psutil

    try:
        return int(psutil.Process(pid).create_time()) == started
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def owner_busy(owner: str | None) -> bool:
    """Is another live process (not this one) working under `owner`?"""
    return owner is not None and owner != process_owner() and owner_alive(owner)

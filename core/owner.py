"""Which process is doing something: an identity that survives pid reuse.

Rows record the process that began a step (`op_owner`) or holds a lease. Another process
judges from it whether that work is still going on. An owner names the hvkube host it runs
on; a process of another host cannot be judged by this machine's pids (the store's host
rows judge those: a host that is down has no live processes).
"""

from __future__ import annotations

import os
import socket

_started_cache: tuple[int, int] | None = None


def _started() -> int:
    global _started_cache
    pid = os.getpid()
    if _started_cache is None or _started_cache[0] != pid:
        import psutil  # loaded by the first change, not by commands that only read

        _started_cache = (pid, int(psutil.Process(pid).create_time()))
    return _started_cache[1]


def process_owner(host: str | None = None) -> str:
    """Identifies this process across pid reuse: host, pid and start time. `host` is the
    hvkube host this process acts for (default: the machine's name)."""
    return f"{host or socket.gethostname()}:{os.getpid()}:{_started()}"


def owner_host(owner: str) -> str | None:
    """The host part of an owner, None when it is not one."""
    parts = owner.rsplit(":", 2)
    return parts[0] if len(parts) == 3 else None


def owner_alive(owner: str | None, host: str | None = None) -> bool:
    """Is the process named by `owner` still running? Judged by pid only when it runs on
    `host` (this process's host; default the machine's name). Another host's process is
    taken as alive here; callers that know the hosts ask the store instead."""
    if not owner:
        return False
    try:
        owner_of, pid_text, started_text = owner.rsplit(":", 2)
        pid, started = int(pid_text), int(started_text)
    except ValueError:
        return False
    if owner_of != (host or socket.gethostname()):
        return True
    import psutil

    try:
        return int(psutil.Process(pid).create_time()) == started
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False

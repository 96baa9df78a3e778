"""The controller the dashboard started (`R`): it ends with the dashboard unless the
operator chose to keep it, so no `hvkube run` outlives the dashboard unasked (or the demo's
folder, which goes away on exit)."""

from __future__ import annotations

import os
import signal
import time

import psutil


def running(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def stop(pid: int, wait_s: float = 15.0) -> bool:
    """Ask the controller to stop as Ctrl-C would (SIGTERM: it finishes its in-flight steps)
    and wait for it; returns whether it is gone."""
    if not running(pid):
        return True
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)  # our child: reap it
        except ChildProcessError:
            done = pid if not running(pid) else 0
        if done == pid:
            return True
        time.sleep(0.05)
    return not running(pid)

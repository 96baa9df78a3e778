"""Ctrl-C and SIGTERM during a long command.

The first signal is acknowledged at once and sets the `stop` event the work watches: it
begins nothing more and finishes or undoes what is in flight, then the command prints
what it built, what it undid and what (if anything) needs `hvkube reconcile`. A second
signal abandons the work at once: the process exits 130 after saying what is left
half-done (`left()`), which `hvkube reconcile` settles.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

from core.cli.errors import INTERRUPTED

SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def interruptible(
    what: str, say: Callable[[str], None], left: Callable[[], list[str]]
) -> Iterator[threading.Event]:
    """Run the body with the signals above asking it to stop through the event yielded."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop  # signals reach only the main thread; nothing to install
        return

    def on_signal(signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if not stop.is_set():
            stop.set()
            say(
                f"{name}: stopping {what}: nothing more is begun; what is in flight is finished "
                "or removed within seconds. Press Ctrl-C again to abandon it at once."
            )
            return
        try:
            pending = left()
        except Exception as exc:  # the store may be busy; say so rather than hang
            pending = [f"(could not read the store: {exc})"]
        if pending:
            say(
                f"{name}: abandoned. Left half-done: {', '.join(pending)}. "
                "Run 'hvkube reconcile' to finish or roll them back."
            )
        else:
            say(f"{name}: abandoned; nothing is left half-done.")
        sys.stderr.flush()
        sys.stdout.flush()
        os._exit(INTERRUPTED)

    previous = {sig: signal.signal(sig, on_signal) for sig in SIGNALS}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

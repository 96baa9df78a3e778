"""A long-running process whose threads come and go (provisioning's executors, the API
server's worker threads) must not pile up database connections: each thread's connection to
the store and to the simulated host is closed when the thread ends, without waiting for a
garbage collection (the soak found the controller's and the API's descriptors growing).
PostgreSQL's connections get the same closing; psycopg's are freed when their thread ends
even without it."""

from __future__ import annotations

import gc
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from core.backends.sim import SimHost
from core.store import Store


@pytest.fixture
def no_gc() -> Iterator[None]:
    """Garbage collection off: what is closed must be closed by the thread's end itself."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def open_files_under(folder: Path) -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}").startswith(str(folder))
        except OSError:
            continue
    return count


def churn(work: Callable[[], object], threads: int = 4) -> None:
    """`threads` short-lived threads at once, each doing `work`."""
    batch = [threading.Thread(target=work) for _ in range(threads)]
    for thread in batch:
        thread.start()
    for thread in batch:
        thread.join()


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts descriptors in /proc")
def test_store_and_sim_host_connections_close_when_their_thread_ends(
    tmp_path: Path, no_gc: None
) -> None:
    store = Store(tmp_path / "hvkube.db")
    sim = SimHost(tmp_path)
    sim.list_vms()
    store.schema_version()
    before = open_files_under(tmp_path)

    def work() -> None:
        store.schema_version()
        sim.list_vms()

    counts = []
    for _ in range(10):
        churn(work)
        counts.append(open_files_under(tmp_path))
    # SQLite may keep a closed connection's database descriptor for the next connection to
    # reuse (another connection holds a lock on the file): at most one a thread of a round
    # for each of the two databases, whatever the number of rounds.
    assert max(counts) <= before + 2 * 4, (before, counts)
    store.close()

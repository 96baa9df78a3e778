"""The store under contention: writers wait for each other instead of failing."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from core import open_engine

HOLD_LOCK = r"""
import sqlite3, sys, time
con = sqlite3.connect(sys.argv[1], isolation_level=None)
con.execute("BEGIN IMMEDIATE")
con.execute("UPDATE meta SET value = value WHERE key = 'schema_version'")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
con.execute("COMMIT")
"""

WRITER = r"""
import sys
from core import open_engine
with open_engine(db=sys.argv[1], backend="sim", sim_scale=0) as engine:
    for i in range(int(sys.argv[3])):
        engine.submit_agent("p", f"wf-{sys.argv[2]}-{i}", {"i": i})
        vm = engine.acquire("p", wait_s=60)
        engine.release(vm.name)
"""


def setup(db: str) -> None:
    with open_engine(db=db, backend="sim", sim_scale=0) as engine:
        engine.create_template("t", r"C:\T\t.vhdx", memory_mb=1024)
        engine.create_pool("p", "t", count=3, warm=3)
        engine.provision_pool("p")


def test_a_writer_waits_out_a_five_second_lock(tmp_path: Path) -> None:
    db = str(tmp_path / "h.db")
    setup(db)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, db, "5"], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    started = time.monotonic()
    with open_engine(db=db, backend="sim", sim_scale=0) as engine:
        vm = engine.acquire("p")  # must wait for the lock, then succeed
        waited = time.monotonic() - started
        engine.release(vm.name)
    holder.wait(timeout=30)
    assert holder.returncode == 0
    assert waited > 1.0  # it really was blocked, and it did not give up


def test_many_processes_writing_at_once(tmp_path: Path) -> None:
    db = str(tmp_path / "h.db")
    setup(db)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, db, str(n), "25"],
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(6)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
        assert "database is locked" not in err
    with open_engine(db=db, backend="sim", sim_scale=0) as engine:
        assert len(engine.list_agents(limit=1000)) == 6 * 25
        assert all(vm.holder is None for vm in engine.list_vms())

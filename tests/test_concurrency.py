"""Many processes acquiring from one pool never hold the same VM at once, on SQLite and on
PostgreSQL."""

from __future__ import annotations

import json
import subprocess
import sys

from core import open_engine

WORKER = r"""
import json, sys, time
from core import open_engine
from core.errors import NoVMAvailable
db, rounds = sys.argv[1], int(sys.argv[2])
spans, timeouts = [], 0
with open_engine(db=db, backend="sim", sim_scale=0) as engine:
    for _ in range(rounds):
        try:
            vm = engine.acquire("shared", wait_s=30)
        except NoVMAvailable:
            timeouts += 1
            continue
        got = time.time()
        # The holder recorded in the store is ours while we hold it.
        assert engine.get_vm(vm.name).holder == vm.holder
        before_release = time.time()
        engine.release(vm.name)
        spans.append([vm.name, got, before_release])
print(json.dumps({"spans": spans, "timeouts": timeouts}))
"""


def test_eight_processes_fifty_cycles_four_vms(store_url: str) -> None:
    db = store_url
    with open_engine(db=db, backend="sim", sim_scale=0) as engine:
        engine.create_template("t", r"C:\T\t.vhdx", memory_mb=1024)
        engine.create_pool("shared", "t", count=4, warm=4)
        assert not engine.provision_pool("shared").failed
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, db, "50"], stdout=subprocess.PIPE, text=True
        )
        for _ in range(8)
    ]
    results = []
    for index, proc in enumerate(procs):
        out, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, f"worker {index} failed"
        results.append((index, json.loads(out)))

    by_vm: dict[str, list[tuple[float, float, int]]] = {}
    for index, result in results:
        # Every acquire either got a VM or ended cleanly with NoVMAvailable.
        assert len(result["spans"]) + result["timeouts"] == 50
        for name, got, left in result["spans"]:
            by_vm.setdefault(name, []).append((got, left, index))
    assert sum(len(v) for v in by_vm.values()) >= 8 * 50 * 0.9
    for name, spans in by_vm.items():
        spans.sort()
        latest_end, latest_owner = float("-inf"), -1
        for start, end, owner in spans:
            overlap = start < latest_end and owner != latest_owner
            assert not overlap, f"{name} held by processes {latest_owner} and {owner} at once"
            if end > latest_end:
                latest_end, latest_owner = end, owner

    with open_engine(db=db, backend="sim", sim_scale=0) as engine:
        vms = engine.list_vms(pool="shared")
        assert all(vm.holder is None and not vm.state.transitional for vm in vms)
        assert engine.reconcile().fixed == []

"""The controller's throughput, on the simulated host.

(a) Agents: N queued agents with `--exec true` on a pool of V warm VMs at scale 0, one
    controller: agents per second from the controller's start until the last agent has
    ended (each agent: claim, resume, run the command, release by reset). Target >= 200/s.
(b) Provisioning: a pool of P VMs built by the controller with realistic simulated
    timings scaled down (boot 30-60 s, checkpoint 2.5 s, save, ... times --scale), with a
    parallelism of 8 against one at a time. Target: at least 4 times faster.

    python bench/controller.py [--agents 1000] [--vms 10] [--provision 20] [--scale 0.01]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core import open_engine
from core.controller import Controller
from core.models import AgentStatus


def agents_per_second(folder: Path, agents: int, vms: int) -> tuple[float, float, int]:
    db = str(folder / "agents" / "hvkube.db")
    with open_engine(db=db, backend="sim", sim_scale=0) as engine:
        engine.create_template("bench", r"C:\templates\bench.vhdx", memory_mb=2048)
        engine.create_pool("bench", "bench", count=vms, warm=vms)
        report = engine.provision_pool("bench")
        assert not report.failed, report.failed
        started = time.perf_counter()
        for _ in range(agents):
            engine.submit_agent("bench", "bench", exec_command="true")
        submit_s = time.perf_counter() - started

        controller = Controller(engine, tick_s=1.0, max_workers=vms)
        stop = threading.Event()
        thread = threading.Thread(target=controller.run, args=(stop,), name="controller")
        t = engine.store.t
        unfinished = (
            "SELECT COUNT(*) FROM \"agent\" WHERE \"status\" IN ('pending', 'scheduled', 'running')"
        )
        started = time.perf_counter()
        cpu = time.process_time()
        thread.start()
        while engine.store.fetch_all(unfinished, ())[0][0]:  # a cheap look every 50 ms
            time.sleep(0.05)
        elapsed = time.perf_counter() - started
        cpu_ms = (time.process_time() - cpu) * 1000.0 / agents
        stop.set()
        thread.join()
        completed = t.Agent.select().where(t.Agent.status == AgentStatus.COMPLETED.value).count()
        held = t.VM.select().where(t.VM.holder.is_null(False)).count()
        assert held == 0, f"{held} VMs still held"
        return agents / elapsed, agents / submit_s, completed, cpu_ms


def provision_seconds(folder: Path, count: int, scale: float, parallelism: int) -> float:
    db = str(folder / f"provision-{parallelism}" / "hvkube.db")
    with open_engine(db=db, backend="sim", sim_scale=scale) as engine:
        engine.create_template("bench", r"C:\templates\bench.vhdx", memory_mb=2048)
        engine.create_pool("bench", "bench", count=count, warm=count)
        controller = Controller(engine, provision_parallelism=parallelism)
        started = time.perf_counter()
        controller.run(threading.Event(), once=True)
        elapsed = time.perf_counter() - started
        ready = engine.pool_counts("bench").get("saved", 0)
        assert ready == count, f"only {ready} of {count} VMs ready"
        return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--vms", type=int, default=10)
    parser.add_argument("--provision", type=int, default=20)
    parser.add_argument("--scale", type=float, default=0.01)
    parser.add_argument("--parallel", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hvkube-bench-") as tmp:
        folder = Path(tmp)
        rate, submit_rate, completed, cpu_ms = agents_per_second(folder, args.agents, args.vms)
        print(
            f"(a) {args.agents} agents (--exec true) on {args.vms} VMs at scale 0: "
            f"{rate:.0f} agents/s end to end ({completed} completed; queued at "
            f"{submit_rate:.0f}/s; controller CPU {cpu_ms:.1f} ms per agent, "
            f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)  target >= 200/s: "
            f"{'met' if rate >= 200 else 'NOT met'}"
        )
        sequential = provision_seconds(folder, args.provision, args.scale, 1)
        parallel = provision_seconds(folder, args.provision, args.scale, args.parallel)
        ratio = sequential / parallel
        print(
            f"(b) provisioning {args.provision} VMs at scale {args.scale:g}: one at a time "
            f"{sequential:.2f} s, {args.parallel} at a time {parallel:.2f} s: "
            f"{ratio:.1f}x faster  target >= 4x: {'met' if ratio >= 4 else 'NOT met'}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

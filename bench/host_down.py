"""How soon a host that dies is seen down: its VMs `unknown` and its agents handled.

Two hosts (`hvkube run --host` processes, each its own simulated host) share one store; a
pool spreads over both and long agents run on both. Then one host's controller is killed
with SIGKILL and the store is watched every 10 ms until that host is marked down, all its
VMs are `unknown` and none of its agents is still scheduled or running. The target is the
host's lease time plus one tick of the surviving controller.

    python bench/host_down.py [--trials 5] [--lease 3] [--tick 0.5] [--db URL]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core import open_engine
from core.models import AgentStatus, VMState

REPO = Path(__file__).resolve().parent.parent


def start_host(env: dict[str, str], host: str, lease: float, tick: float, log: Path) -> Any:
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "core.cli", "run", "--host", host, "--tick", str(tick),
             "--lease-ttl", str(lease), "--grace", "1"],
            stdout=out, stderr=out, env=env, cwd=REPO, start_new_session=True,
        )  # fmt: skip


def wait(check: Any, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit("gave up waiting")
        time.sleep(0.05)


def trial(db: str, tmp: Path, lease: float, tick: float, n: int) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HVKUBE_")}
    env.update(
        HVKUBE_DB=db,
        HVKUBE_DATA_DIR=str(tmp / f"data{n}"),
        HVKUBE_CONFIG=str(tmp / "none.toml"),
        HVKUBE_BACKEND="sim",
        HVKUBE_SIM_SCALE="0",
    )
    with open_engine(db=db, backend="sim", sim_scale=0, host="watcher") as engine:
        pool = f"p{n}"
        if n == 0:
            engine.create_template("bench", r"C:\t\b.vhdx", memory_mb=1024)
        engine.create_pool(pool, "bench", count=4, warm=4, max_per_host=2)
        # New hosts each trial (with their own simulated hosts); the last trial's are down.
        a, b = f"a{n}", f"b{n}"
        procs = {h: start_host(env, h, lease, tick, tmp / f"{h}.log") for h in (a, b)}
        try:
            wait(lambda: {v.host for v in engine.list_vms(pool=pool)} == {a, b}
                 and len(engine.list_vms(pool=pool)) == 4)  # fmt: skip
            agents = [engine.submit_agent(pool, "slow", exec_command="sleep 20") for _ in range(4)]
            wait(lambda: sum(engine.get_agent(x.id).status is AgentStatus.RUNNING
                             for x in agents) == 4)  # fmt: skip
            on_b = [x.id for x in agents if engine.get_agent(x.id).host == b]
            killed = time.monotonic()
            os.killpg(procs[b].pid, signal.SIGKILL)

            def handled() -> bool:
                vms = engine.list_vms(host=b, pool=pool)
                return (
                    engine.get_host(b).status == "down"
                    and all(vm.state is VMState.UNKNOWN for vm in vms)
                    and all(engine.get_agent(i).status.finished for i in on_b)
                )

            while not handled():
                time.sleep(0.01)
            seen = time.monotonic() - killed
            for agent in agents:
                if not engine.get_agent(agent.id).status.finished:
                    engine.cancel_agent(agent.id)
            return seen
        finally:
            for proc in procs.values():
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
                    proc.wait(60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--lease", type=float, default=3.0)
    parser.add_argument("--tick", type=float, default=0.5)
    parser.add_argument("--db", default="", help="the store (default: a new SQLite file)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hvkube-down-") as tmp:
        db = args.db or str(Path(tmp) / "fleet.db")
        seen = [trial(db, Path(tmp), args.lease, args.tick, n) for n in range(args.trials)]
    target = args.lease + args.tick
    med = statistics.median(seen)
    print(
        f"host down seen (VMs unknown, agents handled) after SIGKILL, {args.trials} trials, "
        f"lease {args.lease:g} s, tick {args.tick:g} s: median {med:.2f} s, max {max(seen):.2f} s"
        f" (target lease + tick = {target:g} s; median/target = {med / target:.2f})"
    )


if __name__ == "__main__":
    main()

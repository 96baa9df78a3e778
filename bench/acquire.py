"""Orchestrator overhead of acquire + release on the simulated host at scale 0.

Single process: median and p99 of one acquire+release cycle over N cycles, in wall time,
in CPU time, and in wall time outside the simulated host's calls (the engine's own share).
Several processes: P processes acquiring and releasing from one pool at once, over H
simulated hosts (`--hosts`, default 3): the pool's VMs are built evenly on the hosts, and
process i acts as host i mod H, preferring that host's VMs and taking any host's when its
own have none free (as `hvkube acquire --prefer-host` does). Throughput, and a check that no
VM was ever held by two processes at once (each process records when it held which VM;
overlapping spans on one VM are double allocations).

With `--db postgresql` the multi-process run is made on SQLite and on PostgreSQL in the same
run, alternating, `--rounds` times each: the median cycles/s of each and their ratio. A bare
`postgresql` starts a throwaway server (tests/pg_support.py; fsync on, no wait for it at
commit, as SQLite's synchronous=normal); `postgresql://...` names an empty database.

    python bench/acquire.py [--cycles 1000] [--processes 4] [--seconds 5]
    python bench/acquire.py --db postgresql --processes 8 --hosts 3 --vms 12 --rounds 5
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core import open_engine
from core.errors import NoVMAvailable


def host_names(hosts: int) -> list[str]:
    return [f"bench-h{i + 1}" for i in range(hosts)]


def setup(db: str, vms: int, hosts: int = 1) -> None:
    """The pool `bench` of `vms` Saved VMs, built evenly on `hosts` simulated hosts (each
    with its own host state, as separate machines would have)."""
    names = host_names(hosts) if hosts > 1 else [None]
    for i, host in enumerate(names):
        share = vms // len(names) + (1 if i < vms % len(names) else 0)
        with open_engine(db=db, backend="sim", sim_scale=0, host=host) as engine:
            engine.store.hosts.ensure(engine.host, "sim")  # as its controller's heartbeat does
            if i == 0:
                engine.create_template("bench", r"C:\templates\bench.vhdx", memory_mb=1024)
                engine.create_pool("bench", "bench", count=vms, warm=vms)
            report = engine.provision_pool("bench", count=share)
            assert not report.failed, report.failed


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class TimedBackend:
    """The engine's backend, with the wall time spent inside its calls added up: the
    simulated host's own bookkeeping (its SQLite file, JSON rows) is not the engine's."""

    def __init__(self, backend: Any) -> None:
        self._backend = backend
        self.spent = 0.0

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._backend, name)
        if not callable(value):
            return value

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return value(*args, **kwargs)
            finally:
                self.spent += time.perf_counter() - start

        return timed


def single(db: str, cycles: int) -> tuple[list[float], list[float], list[float]]:
    """Per cycle, in ms: wall time, this process's CPU time (on a shared, loaded machine
    the steadier measure), and wall time outside the backend's calls (the engine's own)."""
    wall: list[float] = []
    cpu: list[float] = []
    engine_only: list[float] = []
    with open_engine(db=db, backend="sim", sim_scale=0) as engine:
        timed = TimedBackend(engine.backend)
        engine.backend = timed  # type: ignore[assignment]
        for _ in range(50):  # warm-up: connections, caches
            engine.release(engine.acquire("bench").name)
        for _ in range(cycles):
            timed.spent = 0.0
            start, start_cpu = time.perf_counter(), time.process_time()
            vm = engine.acquire("bench")
            engine.release(vm.name)
            elapsed = time.perf_counter() - start
            wall.append(elapsed * 1000.0)
            cpu.append((time.process_time() - start_cpu) * 1000.0)
            engine_only.append((elapsed - timed.spent) * 1000.0)
    return wall, cpu, engine_only


def server_cpu_s(pid: int | None) -> float:
    """CPU seconds used so far by the database server process `pid` (this machine's)."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def worker(db: str, host: str | None, seconds: float, out: mp.Queue) -> None:  # type: ignore[type-arg]
    spans: list[tuple[str, str, float, float]] = []
    timeouts = 0
    with open_engine(db=db, backend="sim", sim_scale=0, host=host) as engine:
        backend_pid = None
        if engine.store.postgres:
            found = engine.store.fetch_one('SELECT pg_backend_pid() AS "pid"', ())
            backend_pid = int(found["pid"]) if found else None
        cpu_start, server_start = time.process_time(), server_cpu_s(backend_pid)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                vm = engine.acquire("bench", wait_s=5, prefer_host=host)
            except NoVMAvailable:
                timeouts += 1
                continue
            # [acquire returned, release called]: inside the time this process held it
            got = time.time()
            before_release = time.time()
            engine.release(vm.name)
            spans.append((vm.name, vm.host or "-", got, before_release))
        cpu = time.process_time() - cpu_start + server_cpu_s(backend_pid) - server_start
    out.put((os.getpid(), spans, timeouts, cpu))


def multi(
    db: str, processes: int, seconds: float, hosts: int = 1
) -> tuple[int, int, int, dict[str, int], float]:
    """Cycles in all, acquires that timed out, double allocations, cycles per host of the
    VM acquired, and CPU seconds used by the processes and their database server
    connections (on a machine others share, the steadier measure of cost)."""
    queue: mp.Queue = mp.Queue()  # type: ignore[type-arg]
    names = host_names(hosts) if hosts > 1 else [None]
    procs = [
        mp.Process(target=worker, args=(db, names[i % len(names)], seconds, queue))
        for i in range(processes)
    ]
    for p in procs:
        p.start()
    results = [queue.get(timeout=seconds + 120) for _ in procs]
    for p in procs:
        p.join()
    by_vm: dict[str, list[tuple[float, float, int]]] = {}
    per_host: dict[str, int] = {}
    total = timeouts = 0
    cpu = 0.0
    for pid, spans, waits, used in results:
        timeouts += waits
        cpu += used
        total += len(spans)
        for name, host, got, left in spans:
            by_vm.setdefault(name, []).append((got, left, pid))
            per_host[host] = per_host.get(host, 0) + 1
    doubles = 0
    for spans_of_vm in by_vm.values():
        spans_of_vm.sort()
        latest_end, latest_pid = float("-inf"), -1
        for start, end, pid in spans_of_vm:
            if start < latest_end and pid != latest_pid:
                doubles += 1
            if end > latest_end:
                latest_end, latest_pid = end, pid
    return total, timeouts, doubles, dict(sorted(per_host.items())), cpu


def shares(per_host: dict[str, int]) -> str:
    total = sum(per_host.values()) or 1
    return ", ".join(f"{host} {100 * n / total:.0f}%" for host, n in per_host.items())


def compare(args: argparse.Namespace) -> None:
    """Multi-process throughput on SQLite and PostgreSQL, alternating, `rounds` times each."""
    from contextlib import ExitStack

    with ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory())
        url = args.db
        if url == "postgresql":
            from tests.pg_support import PgServer, pg_missing

            reason = pg_missing()
            if reason:
                raise SystemExit(f"cannot start a PostgreSQL server: {reason}")
            server = stack.enter_context(PgServer(durable=True))
            url = server.create_database()
        # The simulated host's state: beside the SQLite file, in the data folder for PostgreSQL.
        os.environ["HVKUBE_DATA_DIR"] = os.path.join(tmp, "pg-host")
        stores = {"sqlite": os.path.join(tmp, "bench.db"), "postgresql": url}
        for db in stores.values():
            setup(db, args.vms, args.hosts)
        rates: dict[str, list[float]] = {name: [] for name in stores}
        spread: dict[str, str] = {}
        cpu_ms: dict[str, list[float]] = {name: [] for name in stores}
        doubles = 0
        for _ in range(args.rounds):
            for name, db in stores.items():
                total, _timeouts, twice, per_host, cpu = multi(
                    db, args.processes, args.seconds, args.hosts
                )
                rates[name].append(total / args.seconds)
                cpu_ms[name].append(cpu * 1000.0 / max(1, total))
                doubles += twice
                spread[name] = shares(per_host)
        print(
            f"{args.processes} processes over {args.hosts} host(s), pool of {args.vms}, "
            f"{args.rounds} rounds of "
            f"{args.seconds:g} s each:"
        )
        for name, values in rates.items():
            shown = ", ".join(f"{v:.0f}" for v in values)
            print(
                f"  {name:<10} median {statistics.median(values):.0f} cycles/s   ({shown});   "
                f"CPU per cycle median {statistics.median(cpu_ms[name]):.2f} ms"
            )
        ratio = statistics.median(rates["postgresql"]) / statistics.median(rates["sqlite"])
        by_round = [
            pg / lite for pg, lite in zip(rates["postgresql"], rates["sqlite"], strict=True)
        ]
        print(
            f"  postgresql / sqlite: {ratio:.2f} (round by round: "
            f"{', '.join(f'{r:.2f}' for r in by_round)});   double allocations: {doubles}"
        )
        cpu_ratio = statistics.median(cpu_ms["sqlite"]) / statistics.median(cpu_ms["postgresql"])
        print(
            f"  CPU per cycle, sqlite / postgresql (server connections included): {cpu_ratio:.2f}"
        )
        for name, text in spread.items():
            print(f"  cycles by host of the VM ({name}, last round): {text}")
        print(f"  load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")


def main() -> None:
    parser = argparse.ArgumentParser(description="acquire+release overhead on the sim host")
    parser.add_argument("--cycles", type=int, default=1000)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--vms", type=int, default=12)
    parser.add_argument("--hosts", type=int, default=3, help="simulated hosts (several processes)")
    parser.add_argument(
        "--db",
        default="sqlite",
        help="sqlite (default), or postgresql / postgresql://... to compare the two",
    )
    parser.add_argument("--rounds", type=int, default=3, help="with --db postgresql")
    args = parser.parse_args()
    if args.db != "sqlite":
        compare(args)
        return
    with tempfile.TemporaryDirectory() as tmp:
        # One folder per store: the simulated hosts' state lives beside an SQLite file.
        db, fleet_db = (os.path.join(tmp, name, "bench.db") for name in ("one", "fleet"))
        setup(db, args.vms)
        setup(fleet_db, args.vms, args.hosts)
        wall, cpu, engine_only = single(db, args.cycles)
        print(f"single process, {args.cycles} acquire+release cycles, pool of {args.vms}:")
        for label, timings in (
            ("wall  ", wall),
            ("cpu   ", cpu),
            ("engine", engine_only),  # wall time outside the simulated host's calls
        ):
            print(
                f"  {label} median {statistics.median(timings):.3f} ms   "
                f"p99 {percentile(timings, 0.99):.3f} ms   mean {statistics.fmean(timings):.3f} ms"
            )
        print(f"  load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        total, timeouts, doubles, per_host, _cpu = multi(
            fleet_db, args.processes, args.seconds, args.hosts
        )
        print(
            f"{args.processes} processes over {args.hosts} host(s) for {args.seconds:g} s "
            f"on a pool of {args.vms}:"
        )
        print(
            f"  {total} cycles, {total / args.seconds:.0f} cycles/s, "
            f"{timeouts} acquires that timed out, {doubles} double allocations"
        )
        print(f"  cycles by host of the VM: {shares(per_host)}")


if __name__ == "__main__":
    main()

"""The dashboard under load: 1,000 VMs and 10,000 agents in the store (with --fleet:
10,000 VMs on 20 hosts and 100,000 agents).

- refresh tick: another process changes 1% of the rows (VMs and agents; with hosts,
  every host's heartbeat too) and
  the dashboard's reader sees the new data_version, reads, formats and diffs; the tick is
  the reader's time (read + format, in its thread) plus the UI thread's diff-and-update.
  Median and p99 over --ticks ticks. Targets: p99 <= 50 ms.
- first paint: from building the app to the first data shown (headless). Target <= 1.5 s.
- idle CPU: `hvkube ui` as a user runs it, in a pseudo-terminal of 120x36, left alone for
  --idle seconds after it has painted; CPU time of the process over wall time.
  Target <= 3%.
- VMs view: from switching to the VMs view to its rows applied (the first paint of the
  heaviest view).

`--db postgresql` runs it on a throwaway PostgreSQL server (tests/pg_support.py; fsync on,
no wait for it at commit, as SQLite's synchronous=normal); `postgresql://...` names an
empty database.

    python bench/tui_refresh.py [--ticks 200] [--idle 30] [--fleet] [--db postgresql]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import multiprocessing
import os
import pty
import random
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from datetime import timedelta
from multiprocessing.connection import Connection
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.settings import Settings
from core.store import Store, utcnow

VMS = 1000
AGENTS = 10_000
EVENTS = 5_000
POOLS = 10
HOSTS = 0  # no host table rows: a single machine as before fleets
PARTS: list[tuple[float, float]] = []
VIEW = "vms"
STATES = ["saved"] * 5 + ["paused"] * 2 + ["off"] * 2 + ["running"]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def populate(db: str) -> None:
    """Rows written straight into the store: the dashboard only reads them."""
    rng = random.Random(4)
    store = Store(db)
    t = store.t
    now = utcnow()
    with store.write():
        t.Template.create(name="bench", disk_path="C:\\t\\bench.vhdx", memory_mb=2048, cpus=2)
        for p in range(POOLS):
            t.Pool.create(
                name=f"pool{p}", template="bench", desired_count=VMS // POOLS, warm_count=50
            )
        for h in range(HOSTS):
            t.Host.create(
                name=host_name(h),
                heartbeat_at=now,
                expires_at=now + timedelta(seconds=15),
                lease_s=15.0,
                total_memory_mb=512 * 1024,
                free_memory_mb=rng.randint(64, 400) * 1024,
                backend="hyperv",
            )
        vms = []
        for i in range(VMS):
            state = STATES[i % len(STATES)]
            vms.append(
                {
                    "name": f"pool{i % POOLS}-{i // POOLS + 1:03d}",
                    "template": "bench",
                    "pool": f"pool{i % POOLS}",
                    "host": host_name(i % HOSTS) if HOSTS else None,
                    "state": state,
                    "ip": f"172.20.{i // 250}.{i % 250 + 2}" if state != "off" else None,
                    "memory_mb": 2048,
                    "created_at": now - timedelta(hours=2),
                    "last_resumed_at": now - timedelta(seconds=rng.randint(5, 5000)),
                    "last_resume_ms": rng.uniform(80, 3000),
                }
            )
    agents = []
    for i in range(AGENTS):
        created = now - timedelta(seconds=(AGENTS - i) * 7)
        status = "completed" if i < AGENTS - 150 else rng.choice(["running", "pending"])
        agents.append(
            {
                "pool": f"pool{i % POOLS}",
                "workflow": f"flow-{i % 17}",
                "input": "{}",
                "status": status,
                "created_at": created,
                "started_at": created + timedelta(seconds=3),
                "finished_at": created + timedelta(seconds=60) if status == "completed" else None,
            }
        )
    events = [
        {
            "vm": f"pool{i % POOLS}-001",
            "pool": f"pool{i % POOLS}",
            "kind": "resume",
            "started_at": now - timedelta(seconds=EVENTS - i),
            "duration_ms": rng.uniform(80, 3000),
            "ok": True,
        }
        for i in range(EVENTS)
    ]
    # One transaction, as an import would write them (statements of a few hundred rows).
    with store.write():
        for table, rows in ((t.VM, vms), (t.Agent, agents), (t.Event, events)):
            for chunk in range(0, len(rows), 500):
                table.insert_many(rows[chunk : chunk + 500]).execute()
    if store.postgres:
        # Statistics, as autovacuum keeps them for a store in use: without them the planner
        # does not know that few rows have a recent change mark and reads the whole table.
        store.db.execute_sql("ANALYZE")
    store.close()


def host_name(index: int) -> str:
    return f"hv{index + 1:02d}"


def churn(store: Store, rng: random.Random, round_no: int) -> None:
    """Change 1% of the rows: 1% of VMs change state, 1% of agents change status, and every
    host heartbeats."""
    t = store.t
    names = [
        f"pool{i % POOLS}-{i // POOLS + 1:03d}" for i in rng.sample(range(VMS), max(1, VMS // 100))
    ]
    ids = rng.sample(range(1, AGENTS + 1), max(1, AGENTS // 100))
    with store.write():
        if HOSTS:
            now = utcnow()
            t.Host.update(heartbeat_at=now, expires_at=now + timedelta(seconds=15)).execute()
        for n, name in enumerate(names):
            t.VM.update(state="running" if (n + round_no) % 2 else "saved").where(
                t.VM.name == name
            ).execute()
        t.Agent.update(status="running" if round_no % 2 else "completed").where(
            t.Agent.id.in_(ids)
        ).execute()


def churner(db: str, sizes: tuple[int, int, int], requests: Connection) -> None:
    """The writing process: one `churn` round for each round number received."""
    global VMS, AGENTS, HOSTS
    VMS, AGENTS, HOSTS = sizes
    writer = Store(db)
    rng = random.Random(7)
    try:
        while (round_no := requests.recv()) is not None:
            churn(writer, rng, round_no)
            requests.send(round_no)
    finally:
        writer.close()


async def ticks_and_first_paint(
    db: str, ticks: int
) -> tuple[float, float, float, list[float], list[float], int]:
    from hvkube_tui.app import make_app

    # The changes come from another process, as the controller's would: the UI thread only
    # waits for them, free to paint meanwhile. Started before the app, which takes over the
    # standard streams.
    spawn = multiprocessing.get_context("spawn")
    ours, theirs = spawn.Pipe()
    writer = spawn.Process(target=churner, args=(db, (VMS, AGENTS, HOSTS), theirs))
    writer.start()
    settings = Settings(db=str(db), backend="sim", sim_scale=0)
    started = time.perf_counter()
    app = make_app(settings, thumbnail_interval=0)
    async with app.run_test(size=(120, 36)) as pilot:
        while not app.loaded.is_set():
            await pilot.pause(0.005)
        await pilot.pause()
        first_paint = time.perf_counter() - started
        built_to_data = app.first_paint_s or 0.0
        # The heaviest view: every VM in the table.
        seen = len(app.ticks)
        shown_at = time.perf_counter()
        app.action_show_view(VIEW)
        while len(app.ticks) == seen:
            await asyncio.sleep(0.01)
        await pilot.pause()
        view_shown = time.perf_counter() - shown_at
        timings: list[float] = []
        cpu: list[float] = []
        parts: list[tuple[float, float]] = []
        cells = 0
        for round_no in range(ticks):
            seen = sum(1 for t in app.ticks if t.changed)
            ours.send(round_no)
            while not ours.poll():
                await asyncio.sleep(0.001)
            ours.recv()
            app.refresh_now()
            while sum(1 for t in app.ticks if t.changed) == seen:
                await asyncio.sleep(0.002)
            tick = [t for t in app.ticks if t.changed][-1]
            timings.append(tick.read_ms + tick.apply_ms)
            cpu.append(tick.read_cpu_ms + tick.apply_cpu_ms)
            parts.append((tick.read_cpu_ms, tick.apply_cpu_ms))
            cells += tick.cells
            await asyncio.sleep(0.02)  # let the screen paint, as between real ticks
        ours.send(None)
        writer.join(timeout=30)
        await pilot.pause()
    global PARTS
    PARTS = parts
    return first_paint, built_to_data, view_shown, timings, cpu, cells // max(1, ticks)


def idle_cpu(db: str, tmp: Path, seconds: float) -> tuple[float, float]:
    """CPU % of a real `hvkube ui` process in a 120x36 pseudo-terminal, left alone."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 36, 120, 0, 0))
    env = {
        **os.environ,
        "TERM": "xterm-256color",
        "HVKUBE_SIM_SCALE": "0",
        "HVKUBE_CONFIG": str(tmp / "none.toml"),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "core.cli", "--db", db, "--backend", "sim", "ui"],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        cwd=Path(__file__).resolve().parent.parent,
        start_new_session=True,
    )
    os.close(slave)
    received = [0]

    def drain() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:
                return
            if not data:
                return
            received[0] += len(data)

    threading.Thread(target=drain, daemon=True).start()
    try:
        time.sleep(6.0)  # start-up and first paint
        ps = psutil.Process(proc.pid)
        before = ps.cpu_times()
        wall = time.perf_counter()
        time.sleep(seconds)
        after = ps.cpu_times()
        wall = time.perf_counter() - wall
        cpu = (after.user - before.user) + (after.system - before.system)
        painted = received[0]
    finally:
        os.write(master, b"q")
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        os.close(master)
    if painted == 0:
        raise SystemExit("the dashboard wrote nothing to its terminal")
    return 100.0 * cpu / wall, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=200)
    parser.add_argument("--idle", type=float, default=30.0)
    parser.add_argument("--view", default="vms", help="the view on screen during the ticks")
    parser.add_argument(
        "--fleet", action="store_true", help="10,000 VMs on 20 hosts and 100,000 agents"
    )
    parser.add_argument(
        "--db",
        default="sqlite",
        help="sqlite (default), postgresql (a throwaway server) or postgresql://... (empty)",
    )
    args = parser.parse_args()
    global VIEW, VMS, AGENTS, HOSTS
    VIEW = args.view
    if args.fleet:
        VMS, AGENTS, HOSTS = 10_000, 100_000, 20
    load = os.getloadavg()[0]
    print(f"machine: {os.cpu_count()} CPUs, load average {load:.1f} at start")
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="hvkube-bench-")))
        # The simulated host's state, whatever the store's location.
        os.environ["HVKUBE_DATA_DIR"] = str(tmp / "host")
        db = args.db
        if db == "sqlite":
            db = str(tmp / "bench.db")
        elif db == "postgresql":
            from tests.pg_support import PgServer, pg_missing

            reason = pg_missing()
            if reason:
                raise SystemExit(f"cannot start a PostgreSQL server: {reason}")
            db = stack.enter_context(PgServer(durable=True)).create_database()
        populate(db)
        print(
            f"store: {args.db.split(':')[0]}, {VMS} VMs in {POOLS} pools on {HOSTS or 1} "
            f"host(s), {AGENTS} agents, {EVENTS} events"
        )
        first_paint, to_data, view_shown, timings, cpu, cells = asyncio.run(
            ticks_and_first_paint(db, args.ticks)
        )
        p50, p99 = statistics.median(timings), percentile(timings, 0.99)
        c50, c99 = statistics.median(cpu), percentile(cpu, 0.99)
        print(
            f"refresh tick ({VIEW} view on screen, 1% of rows changed, {len(timings)} ticks, "
            f"~{cells} cells touched): "
            f"median {p50:.1f} ms, p99 {p99:.1f} ms wall (target p99 <= 50 ms); "
            f"CPU median {c50:.1f} ms, p99 {c99:.1f} ms (reader "
            f"{statistics.median(p[0] for p in PARTS):.1f} ms, UI "
            f"{statistics.median(p[1] for p in PARTS):.1f} ms)"
        )
        print(
            f"first paint: {first_paint:.2f} s from building the app to the data on screen "
            f"({to_data:.2f} s to the first data applied) (target <= 1.5 s); "
            f"{VIEW} view shown {view_shown:.2f} s after switching to it"
        )
        cpu_pct, wall = idle_cpu(db, tmp, args.idle)
        print(f"idle CPU: {cpu_pct:.2f}% of one core over {wall:.0f} s (target <= 3%)")
        print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()

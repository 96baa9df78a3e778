"""Soak: the controller, the HTTP API and a stream of agents, with random faults, for N minutes.

Real processes on a simulated host (scaled timings): `hvkube run` and `hvkube serve
--allow-exec` on one store, and this script as the client, which keeps submitting agents
through the API (commands that succeed, fail, or take a moment), acquiring and releasing
VMs under leases, and now and then breaking the host (a corrupt saved state, a VM deleted
outside hvkube, an IP change, a guest that reports a hostile address, a hung start, a host
out of memory for a moment). It samples each server's resident memory, open file
descriptors and threads every `--sample-every` seconds, reports their trend after the
warm-up (the means of the first and last thirds of the samples, and the least-squares
slope), and lists what the descriptors and threads are after the warm-up and at the end
(bench/procstats.py). Then it stops the servers, reconciles, and checks the store against
the host with the reliability suite's invariants.

    python bench/soak.py                   # 30 minutes
    python bench/soak.py --minutes 2       # CI's smoke run
    python bench/soak.py --minutes 2 --json soak.json

The aim: no growth beyond noise (a slope near 0 and last third within the first's range),
0 invariant violations.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
from procstats import BOOTSTRAP, Sample, Sampler, Trend, fd_targets, thread_census, trend

from core import open_engine
from core.backends.base import VMRef
from core.backends.sim import SimHost
from core.models import AgentStatus
from tests.reliability.invariants import check_holders_and_agents, check_store_and_host

POOL = "soak"
COMMANDS = ("true", "echo done", "sleep 0.2; echo slow", "exit 3", "printf '{\"ok\": true}'")
FAULTS = ("corrupt-saved-state", "delete-vm", "ip-change", "hostile-ip", "hang", "out-of-memory")


@dataclass
class Figures:
    minutes: float
    agents_submitted: int = 0
    agents_done: int = 0
    agents_failed: int = 0
    leases: int = 0
    lease_refusals: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    faults_survived: int = 0
    http_errors: int = 0
    start: dict[str, Sample] = field(default_factory=dict)
    end: dict[str, Sample] = field(default_factory=dict)
    samples: dict[str, list[Sample]] = field(default_factory=dict)
    trend: dict[str, Trend | None] = field(default_factory=dict)
    census: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-c", BOOTSTRAP, *args],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=Path(__file__).resolve().parent.parent,
        )


def api_port(log: Path, proc: subprocess.Popen[bytes], timeout_s: float = 60.0) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = re.search(r"hvkube API on http://[^:]+:(\d+)", log.read_text(errors="replace"))
        if found:
            return int(found.group(1))
        if proc.poll() is not None:
            raise SystemExit(f"the API exited: {log.read_text(errors='replace')[-2000:]}")
        time.sleep(0.1)
    raise SystemExit("the API did not say its port in time")


def inject(sim: SimHost, kind: str, rng: random.Random) -> bool:
    """One fault on a random VM of the pool; False when there was nothing to break."""
    vms = [vm for vm in sim.list_vms() if vm.name.startswith(f"{POOL}-")]
    if not vms:
        return False
    target = rng.choice(vms)
    if kind == "hostile-ip":  # kept by the guest until its next fresh address
        sim.guest_reports(VMRef(target.name, target.id), "172.20.0.\u00b2")
    elif kind == "hang":
        sim.inject_fault("hang", vm=target.name, op="start")
    elif kind == "out-of-memory":
        sim.inject_fault("out-of-memory")
    else:
        sim.inject_fault(kind, vm=target.name)
    return True


def clear_memory_fault(sim: SimHost) -> None:
    for fault in sim.faults():
        if fault["kind"] == "out-of-memory":
            sim.clear_faults()
            return


def soak(folder: Path, minutes: float, seed: int, scale: float, every_s: float) -> Figures:
    rng = random.Random(seed)
    figures = Figures(minutes=minutes)
    db = folder / "hvkube.db"
    env = {
        **os.environ,
        "HVKUBE_DB": str(db),
        "HVKUBE_BACKEND": "sim",
        "HVKUBE_SIM_SCALE": str(scale),
        "HVKUBE_OP_TIMEOUT_S": "20",
        "HVKUBE_READY_TIMEOUT_S": "20",
    }
    with open_engine(db=str(db), backend="sim", sim_scale=scale) as engine:
        engine.create_template("soak", r"C:\templates\soak.vhdx", memory_mb=2048)
        engine.create_pool(POOL, "soak", count=8, warm=4, hot=2)
    controller = start(["run", "--tick", "0.2"], env, folder / "controller.out")
    api = start(["serve", "--port", "0", "--allow-exec"], env, folder / "api.out")
    port = api_port(folder / "api.out", api)
    token = (folder / "api-token").read_text().strip()
    client = httpx.Client(
        base_url=f"http://127.0.0.1:{port}/api/v1",
        headers={"Authorization": f"Bearer {token}"},
        timeout=60.0,
    )
    sim = SimHost(folder, scale=scale)
    submitted: list[int] = []
    servers = {
        "controller": (controller, folder / "controller.out"),
        "api": (api, folder / "api.out"),
    }
    sampler = Sampler({name: proc.pid for name, (proc, _) in servers.items()}, every_s)
    sampler.start()
    try:
        # The controller's thread pools grow to the run's concurrency within the first
        # minutes (a 30-minute run: about 5); the trend is judged after that.
        warmup_s = max(min(30.0, minutes * 60 * 0.1), minutes * 60 / 6)
        ends = time.monotonic() + minutes * 60
        counted = False
        started = time.monotonic()
        while time.monotonic() < ends:
            if not counted and time.monotonic() - started >= warmup_s:
                figures.census["after warm-up"] = census(servers, folder)
                counted = True
            for proc, what in ((controller, "controller"), (api, "API")):
                if proc.poll() is not None:
                    raise SystemExit(f"the {what} died with code {proc.returncode}")
            roll = rng.random()
            try:
                if roll < 0.55:
                    answer = client.post(
                        "/agents",
                        json={
                            "pool": POOL,
                            "workflow": "soak",
                            "input": {"n": len(submitted)},
                            "timeout_s": 60,
                            "exec_command": rng.choice(COMMANDS),
                        },
                    )
                    answer.raise_for_status()
                    submitted.append(int(answer.json()["id"]))
                elif roll < 0.75:
                    answer = client.post("/acquire", json={"pool": POOL, "wait_seconds": 5})
                    if answer.status_code == 200:
                        figures.leases += 1
                        name = answer.json()["name"]
                        policy = rng.choice(["reset", "reset", "save"])
                        client.post(f"/vms/{name}/release", json={"policy": policy})
                    else:
                        figures.lease_refusals += 1
                elif roll < 0.80:
                    kind = rng.choice(FAULTS)
                    if inject(sim, kind, rng):
                        figures.faults[kind] = figures.faults.get(kind, 0) + 1
                else:
                    client.get("/pools")
                    client.get("/events", params={"limit": 50})
                    clear_memory_fault(sim)
            except httpx.HTTPError:
                figures.http_errors += 1
            time.sleep(rng.uniform(0.01, 0.1))
            # Keep the queue bounded: the stream, not a backlog, is what is soaked.
            while len(submitted) - figures.agents_done > 40 and time.monotonic() < ends:
                time.sleep(0.2)
                figures.agents_done = _finished(client, submitted)
        if not counted:
            figures.census["after warm-up"] = census(servers, folder)
        sim.clear_faults()
        drain_until = time.monotonic() + 120
        while time.monotonic() < drain_until and _finished(client, submitted) < len(submitted):
            time.sleep(0.5)
        sampler.stop()
        figures.census["end"] = census(servers, folder)
    finally:
        sampler.stop()
        client.close()
        for proc in (api, controller):
            proc.send_signal(signal.SIGTERM)
        for proc in (api, controller):
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
    figures.samples = sampler.series
    for name, series in sampler.series.items():
        kept = [s for s in series if s.t_s >= warmup_s] or series
        figures.start[name], figures.end[name] = kept[0], kept[-1]
        figures.trend[name] = trend(series, warmup_s)
    figures.agents_submitted = len(submitted)
    with open_engine(db=str(db), backend="sim", sim_scale=scale) as engine:
        agents = [engine.get_agent(i) for i in submitted]
        ended = {AgentStatus.COMPLETED, AgentStatus.FAILED, AgentStatus.CANCELLED}
        figures.agents_done = sum(a.status in ended for a in agents)
        figures.agents_failed = sum(a.status is AgentStatus.FAILED for a in agents)
        unfinished = [a.id for a in agents if a.status not in ended]
        if unfinished:
            figures.violations.append(f"{len(unfinished)} agents never ended: {unfinished[:10]}")
        report = engine.reconcile()
        figures.violations += check_store_and_host(engine, report, sim)
        figures.violations += check_holders_and_agents(engine)
    # A fault is survived when everything after it still ended and the invariants hold.
    figures.faults_survived = sum(figures.faults.values()) if not figures.violations else 0
    return figures


def census(
    servers: dict[str, tuple[subprocess.Popen[bytes], Path]], folder: Path
) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for name, (proc, log) in servers.items():
        out[f"{name} fds"] = dict(fd_targets(proc.pid, folder).most_common())
        out[f"{name} threads"] = dict(thread_census(proc.pid, log).most_common())
    return out


def _finished(client: httpx.Client, ids: list[int]) -> int:
    done = 0
    for agent_id in ids[-60:]:
        try:
            status = client.get(f"/agents/{agent_id}").json()["status"]
        except (httpx.HTTPError, KeyError, ValueError):
            continue
        done += status in {"completed", "failed", "cancelled"}
    return len(ids) - 60 + done if len(ids) > 60 else done


def growth(figures: Figures) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for name, first in figures.start.items():
        last = figures.end[name]
        out[name] = {
            "rss_mb": round(last.rss_mb - first.rss_mb, 1),
            "fds": last.fds - first.fds,
            "threads": last.threads - first.threads,
        }
    return out


def print_trend(figures: Figures, every_s: float) -> None:
    print(
        f"after the warm-up, sampled every {every_s:g} s: "
        "first third -> last third (slope a 10 min; range)"
    )
    for name, t in figures.trend.items():
        if t is None:
            print(f"{name:<11} | too few samples")
            continue
        cells = [
            f"{m} {t.first_third[m]:g} -> {t.last_third[m]:g} "
            f"({t.per_10_min[m]:+g}; {t.low[m]:g}..{t.high[m]:g})"
            for m in ("rss_mb", "fds", "threads")
        ]
        print(f"{name:<11} | {t.samples} samples | " + " | ".join(cells))


def print_census(figures: Figures) -> None:
    for when, parts in figures.census.items():
        print(f"census {when}:")
        for what, counts in parts.items():
            listed = ", ".join(f"{n} {label}" for label, n in counts.items())
            print(f"  {what} ({sum(counts.values())}): {listed}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--scale", type=float, default=0.01, help="simulated host time factor")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    parser.add_argument(
        "--sample-every",
        type=float,
        metavar="SECONDS",
        help="seconds between samples (30, or a 20th of the run when shorter)",
    )
    args = parser.parse_args()
    every_s = args.sample_every or min(30.0, args.minutes * 60 / 20)
    with tempfile.TemporaryDirectory(prefix="hvkube-soak-") as tmp:
        figures = soak(Path(tmp), args.minutes, args.seed, args.scale, every_s)
    grew = growth(figures)
    print(f"soak: {figures.minutes:g} min, seed {args.seed}, simulated host at {args.scale:g}")
    print(
        f"agents: {figures.agents_submitted} submitted, {figures.agents_done} ended "
        f"({figures.agents_failed} failed, as their commands asked or by a fault); "
        f"leases {figures.leases} (refused {figures.lease_refusals}); "
        f"HTTP errors {figures.http_errors}"
    )
    faults = ", ".join(f"{k} {v}" for k, v in sorted(figures.faults.items())) or "none"
    print(f"faults: {faults}; survived {figures.faults_survived}")
    print("process     |  RSS MB start -> end | fds start -> end | threads start -> end")
    for name, first in figures.start.items():
        last = figures.end[name]
        print(
            f"{name:<11} | {first.rss_mb:8.1f} -> {last.rss_mb:6.1f} | "
            f"{first.fds:5d} -> {last.fds:5d}  | {first.threads:5d} -> {last.threads:5d}"
        )
    print_trend(figures, every_s)
    print_census(figures)
    print(f"invariant violations: {len(figures.violations)}")
    for line in figures.violations[:20]:
        print(f"  {line}")
    if args.json:
        Path(args.json).write_text(
            json.dumps({**asdict(figures), "growth": grew}, indent=2, default=str)
        )
    return 1 if figures.violations else 0


if __name__ == "__main__":
    sys.exit(main())

"""HTTP API under load: many clients acquiring and releasing from one small pool.

Starts `hvkube serve` on 127.0.0.1 (any free port) over a fresh store with the
simulated host at scale 0, provisions one pool, then runs C concurrent clients
for S seconds. Each client loops: POST /api/v1/acquire (waiting up to 30 s),
then POST /api/v1/vms/{name}/release with its lease id. With more clients than
VMs most acquires wait, so this measures the waiting path too.

Double allocations are counted on the client side: a VM is marked held when its
acquire answer arrives and unmarked just before its release is sent; an acquire
answer naming a VM that is still marked is a double allocation.

    python bench/http_acquire.py [--clients 32] [--vms 8] [--seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core import open_engine
from core.settings import Settings

POOL = "bench"


class Connection:
    """A minimal HTTP/1.1 keep-alive client: the load generator shares two cores with the
    server, so it must cost little per request (a full-featured client costs several ms)."""

    def __init__(self, host: str, port: int, token: str) -> None:
        self.host, self.port = host, port
        self.head = f"Host: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        data = json.dumps(body).encode() if body is not None else b""
        self.writer.write(
            (
                f"{method} {path} HTTP/1.1\r\n{self.head}"
                f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
            ).encode()
            + data
        )
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.lower() == "content-length":
                length = int(value)
        payload = await self.reader.readexactly(length)
        return status, json.loads(payload) if payload else None

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            await self.writer.wait_closed()


@dataclass
class Figures:
    acquire_ms: list[float] = field(default_factory=list)
    release_ms: list[float] = field(default_factory=list)
    cycles: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    double_allocations: int = 0
    peak_threads: int = 0
    server_cpu_s: float = 0.0


def setup(db: Path, vms: int) -> None:
    with open_engine(Settings(db=str(db), backend="sim", sim_scale=0.0)) as engine:
        engine.create_template("bench", r"C:\templates\bench.vhdx", memory_mb=1024)
        engine.create_pool(POOL, "bench", count=vms, warm=vms)
        report = engine.provision_pool(POOL)
        assert not report.failed, report.failed


def start_server(data_dir: Path) -> tuple[subprocess.Popen[bytes], str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HVKUBE_")}
    env.update(
        HVKUBE_DATA_DIR=str(data_dir),
        HVKUBE_BACKEND="sim",
        HVKUBE_SIM_SCALE="0",
        HVKUBE_CONFIG=str(data_dir / "absent.toml"),
    )
    log = data_dir / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "core.cli", "serve", "--port", "0"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        lines = [line for line in log.read_text().splitlines() if line.startswith("hvkube API on ")]
        if lines:
            url = lines[0].split()[3]
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    token = (data_dir / "api-token").read_text().strip()
                    return proc, url, token
            except httpx.TransportError:
                pass
        time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"server did not start:\n{log.read_text()}")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def client_loop(
    conn: Connection, deadline: float, hold_s: float, held: set[str], figures: Figures
) -> None:
    try:
        while time.monotonic() < deadline:
            start = time.perf_counter()
            status, vm = await conn.request(
                "POST", "/api/v1/acquire", {"pool": POOL, "wait_seconds": 30}
            )
            figures.acquire_ms.append((time.perf_counter() - start) * 1000.0)
            if status != 200:
                key = f"acquire {status}"
                figures.errors[key] = figures.errors.get(key, 0) + 1
                continue
            if vm["name"] in held:
                figures.double_allocations += 1
            held.add(vm["name"])
            await asyncio.sleep(hold_s)  # "use" the VM; other clients' answers arrive meanwhile
            held.discard(vm["name"])  # released from here on: the next answer may name it
            start = time.perf_counter()
            status, _ = await conn.request(
                "POST", f"/api/v1/vms/{vm['name']}/release", {"lease_id": vm["lease_id"]}
            )
            figures.release_ms.append((time.perf_counter() - start) * 1000.0)
            if status != 200:
                key = f"release {status}"
                figures.errors[key] = figures.errors.get(key, 0) + 1
            else:
                figures.cycles += 1
    finally:
        await conn.close()


async def watch_threads(pid: int, deadline: float, figures: Figures) -> None:
    """The server's peak thread count, and the CPU time it used during the run."""
    proc = psutil.Process(pid)
    before = proc.cpu_times()
    while time.monotonic() < deadline:
        figures.peak_threads = max(figures.peak_threads, proc.num_threads())
        await asyncio.sleep(0.5)
    after = proc.cpu_times()
    figures.server_cpu_s = (after.user + after.system) - (before.user + before.system)


async def load(
    url: str, token: str, clients: int, seconds: float, hold_s: float, pid: int
) -> Figures:
    figures = Figures()
    held: set[str] = set()
    host, _, port = url.removeprefix("http://").rpartition(":")
    deadline = time.monotonic() + seconds
    await asyncio.gather(
        watch_threads(pid, deadline, figures),
        *(
            client_loop(Connection(host, int(port), token), deadline, hold_s, held, figures)
            for _ in range(clients)
        ),
    )
    check = Connection(host, int(port), token)
    _, vms = await check.request("GET", f"/api/v1/vms?pool={POOL}")
    await check.close()
    still_held = [vm["name"] for vm in vms if vm["holder"]]
    if still_held:
        figures.errors["held after the run"] = len(still_held)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--vms", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--hold", type=float, default=0.0, help="seconds each VM is kept")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="hvkube-http-bench-") as tmp:
        data_dir = Path(tmp)
        setup(data_dir / "hvkube.db", args.vms)
        proc, url, token = start_server(data_dir)
        try:
            started = time.perf_counter()
            figures = asyncio.run(load(url, token, args.clients, args.seconds, args.hold, proc.pid))
            elapsed = time.perf_counter() - started
        finally:
            proc.terminate()
            proc.wait(timeout=30)

    requests = len(figures.acquire_ms) + len(figures.release_ms)
    every = figures.acquire_ms + figures.release_ms
    result = {
        "clients": args.clients,
        "vms": args.vms,
        "seconds": round(elapsed, 1),
        "requests": requests,
        "requests_per_s": round(requests / elapsed, 1),
        "cycles_per_s": round(figures.cycles / elapsed, 1),
        "median_ms": round(statistics.median(every), 2) if every else None,
        "p99_ms": round(percentile(every, 0.99), 2) if every else None,
        "acquire_median_ms": round(statistics.median(figures.acquire_ms), 2),
        "acquire_p99_ms": round(percentile(figures.acquire_ms, 0.99), 2),
        "release_median_ms": round(statistics.median(figures.release_ms), 2)
        if figures.release_ms
        else None,
        "release_p99_ms": round(percentile(figures.release_ms, 0.99), 2)
        if figures.release_ms
        else None,
        "double_allocations": figures.double_allocations,
        "errors": figures.errors,
        "server_peak_threads": figures.peak_threads,
        # On a shared, loaded machine the server's CPU time is the steadier measure of its cost.
        "server_cpu_ms_per_request": round(figures.server_cpu_s * 1000.0 / requests, 2)
        if requests
        else None,
        "load_average_1m": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"{args.clients} clients, pool of {args.vms} VMs (sim, scale 0), {elapsed:.1f} s\n"
            f"  requests:            {requests} ({result['requests_per_s']}/s; "
            f"{result['cycles_per_s']} acquire+release cycles/s)\n"
            f"  latency, all:        median {result['median_ms']} ms, p99 {result['p99_ms']} ms\n"
            f"  acquire (waiting):   median {result['acquire_median_ms']} ms, "
            f"p99 {result['acquire_p99_ms']} ms\n"
            f"  release:             median {result['release_median_ms']} ms, "
            f"p99 {result['release_p99_ms']} ms\n"
            f"  double allocations:  {figures.double_allocations}\n"
            f"  errors:              {figures.errors or 'none'}\n"
            f"  server threads, peak: {figures.peak_threads}\n"
            f"  server CPU per request: {result['server_cpu_ms_per_request']} ms\n"
            f"  machine: {result['cpus']} CPUs, load average {result['load_average_1m']}"
        )
    return 0 if figures.double_allocations == 0 and not figures.errors else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""The MCP layer's cost: a screenshot tool call and a click round trip over stdio
(`hvkube mcp` as a subprocess, the official client), beside the backend's own call time.

    python bench/mcp.py --backend sim|hyperv|qemu [--calls 200]

`hyperv` is the Hyper-V backend over the fake PowerShell host (a simulated host with
keyboard and mouse); `sim` has no input, so only screenshots are timed there; `qemu` drives
the test guest of scripts/build-test-guest.sh. Each tool is timed with recording on (the
default: a frame is kept after each call) and off (HVKUBE_RECORDING=0), then the backend's
own call in this process. Medians and p99 in milliseconds, and the share of the round trip
that is not the backend's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# The repository instead of this folder: this file's name would hide the `mcp` package.
sys.path.remove(str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core import open_engine
from core.backends.base import Capability, InputBackend, feature
from tests.conformance.backends import CASES, BackendCase
from tests.mcp_support import mcp_session


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary(values: list[float]) -> dict[str, float]:
    ms = [v * 1000 for v in values]
    return {"median": statistics.median(ms), "p99": pct(ms, 0.99), "n": len(ms)}


async def over_mcp(env: dict[str, str], calls: int, clicks: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    async with mcp_session(env) as s:
        got = await s.call_tool("acquire_desktop", {"pool": "b", "wait_s": 120})
        assert not got.is_error, got
        vm = got.structured_content["vm"]
        for _ in range(5):  # warm up
            await s.call_tool("screenshot", {"vm": vm})
        times = []
        for _ in range(calls):
            started = time.perf_counter()
            result = await s.call_tool("screenshot", {"vm": vm})
            times.append(time.perf_counter() - started)
            assert not result.is_error, result
        out["screenshot"] = times
        if clicks:
            times = []
            for i in range(calls):
                started = time.perf_counter()
                result = await s.call_tool("click", {"vm": vm, "x": 10 + i % 50, "y": 10})
                times.append(time.perf_counter() - started)
                assert not result.is_error, result
            out["click"] = times
        await s.call_tool("release_desktop", {"vm": vm, "reset": False})
    return out


def direct(settings: Any, calls: int, clicks: bool) -> dict[str, Any]:
    with open_engine(settings) as engine:
        vm = engine.acquire("b", wait_s=120, holder="bench")
        ref = engine.ref(engine.get_vm(vm.name))
        out: dict[str, Any] = {"screenshot": [], "click": []}
        for _ in range(5):  # warm up, as over MCP
            engine.backend.screenshot(ref)
        for _ in range(calls):
            started = time.perf_counter()
            engine.backend.screenshot(ref)
            out["screenshot"].append(time.perf_counter() - started)
        backend = feature(engine.backend, Capability.INPUT)
        if clicks and isinstance(backend, InputBackend):
            for i in range(calls):
                started = time.perf_counter()
                backend.click(ref, 10 + i % 50, 10)
                out["click"].append(time.perf_counter() - started)
        engine.release(vm.name, holder="bench", policy="save")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=[c.name for c in CASES], default="hyperv")
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    case: BackendCase = next(c for c in CASES if c.name == args.backend)
    if case.missing():
        print(f"{case.name}: {case.missing()}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="hvkb-") as tmp:
        root = Path(tmp)
        os.environ["HVKUBE_CONFIG"] = str(root / "none.toml")
        settings = case.settings(root)
        engine = open_engine(settings)
        try:
            engine.create_template("t", case.template_disk(root), memory_mb=case.memory_mb)
            engine.create_pool("b", "t", count=1, warm=1)
            assert not engine.provision_pool("b").failed
            clicks = feature(engine.backend, Capability.INPUT) is not None
            env = {"HVKUBE_CONFIG": str(root / "none.toml"), **case.env(settings)}
            results = {
                "mcp, recording": asyncio.run(over_mcp(env, args.calls, clicks)),
                "mcp, no recording": asyncio.run(
                    over_mcp({**env, "HVKUBE_RECORDING": "0"}, args.calls, clicks)
                ),
                "backend": direct(settings, args.calls, clicks),
            }
        finally:
            case.cleanup(engine, root)
            engine.close()
    table = {
        where: {op: summary(times) for op, times in ops.items() if times}
        for where, ops in results.items()
    }
    if args.json:
        print(json.dumps(table, indent=2))
        return 0
    print(f"backend {case.name}, {args.calls} calls each (ms)\n")
    print("| operation | path | median | p99 | MCP layer's share of the median |")
    print("|---|---|---|---|---|")
    for op in ("screenshot", "click"):
        base = table["backend"].get(op)
        if base is None:
            continue
        for where in ("mcp, recording", "mcp, no recording", "backend"):
            row = table[where][op]
            share = "" if where == "backend" else f"{1 - base['median'] / row['median']:.0%}"
            print(f"| {op} | {where} | {row['median']:.1f} | {row['p99']:.1f} | {share} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

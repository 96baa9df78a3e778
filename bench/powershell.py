"""Per-call overhead of the persistent PowerShell session against a new process per call.

Both run the fake PowerShell host (python -m core.backends.fakeps) with the same
dispatcher protocol, so the difference is the transport alone: one long-lived
process answering framed requests, or a process started (and made ready) for
every call, as Vagrant, Packer and minikube do. On Windows, pass
--powershell "powershell.exe -NoLogo -NoProfile -NonInteractive -ExecutionPolicy Bypass"
to measure the real thing (the new-process figure then includes PowerShell's
own start-up and the Hyper-V module import).

    python bench/powershell.py [--calls 2000] [--spawns 40] [--op ping]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from core.backends.hyperv.transport import PowerShellSession, dispatcher_argv, python_fake_command


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def persistent(argv: list[str], op: str, calls: int) -> list[float]:
    session = PowerShellSession(argv)
    session.start()
    try:
        for _ in range(min(50, calls)):  # warm up
            session.call(op, {}, 30.0)
        samples = []
        for _ in range(calls):
            started = time.perf_counter()
            session.call(op, {}, 30.0)
            samples.append(time.perf_counter() - started)
        return samples
    finally:
        session.close()


def per_process(argv: list[str], op: str, calls: int) -> list[float]:
    samples = []
    for _ in range(calls):
        started = time.perf_counter()
        session = PowerShellSession(argv)
        session.start()
        session.call(op, {}, 30.0)
        session.close()
        samples.append(time.perf_counter() - started)
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000, help="calls on the persistent session")
    parser.add_argument("--spawns", type=int, default=40, help="calls with a process each")
    parser.add_argument("--op", default="ping", help="dispatcher operation to call")
    parser.add_argument("--powershell", help="PowerShell command line (default: the fake host)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as state:
        command = args.powershell or python_fake_command(
            "--state-dir", str(Path(state)), "--sim-scale", "0"
        )
        argv = dispatcher_argv(command)
        kept = persistent(argv, args.op, args.calls)
        fresh = per_process(argv, args.op, args.spawns)

    rows = []
    for label, samples in (("persistent session", kept), ("new process per call", fresh)):
        rows.append(
            (
                label,
                len(samples),
                statistics.median(samples) * 1000,
                percentile(samples, 0.99) * 1000,
            )
        )
    print(f"operation: {args.op}; host: {'configured PowerShell' if args.powershell else 'fake'}")
    print(f"{'transport':<22} {'calls':>6} {'median ms':>10} {'p99 ms':>10}")
    for label, n, median_ms, p99_ms in rows:
        print(f"{label:<22} {n:>6} {median_ms:>10.3f} {p99_ms:>10.3f}")
    ratio = rows[1][2] / rows[0][2]
    print(f"ratio (median, new process / persistent): {ratio:.0f}x")
    ok = ratio >= 50 and rows[0][2] <= 1.0
    print(f"target (>= 50x cheaper, median <= 1 ms): {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

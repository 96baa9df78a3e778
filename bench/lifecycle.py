"""Lifecycle timings of a backend: cold boot, save, resume, unpause, reset.

    python bench/lifecycle.py --backend qemu [--memory 256 512 1024] [--runs 5]

For each guest memory size one VM is cloned from the template and taken through
`runs` rounds of: cold boot (start from Off until the guest is ready), save (to
Saved, with the state file's size), resume from Saved (start until running),
pause then unpause (only the unpause is timed), reset to clean (restore the
"clean" checkpoint, which leaves the VM Saved), then turn off. The median of the
rounds is reported as a Markdown table (and as JSON with --json). For reference,
the time to read the state file with direct I/O (bypassing the page cache) is
measured too: resuming from Saved cannot be faster than that.

The qemu backend uses the test guest built by scripts/build-test-guest.sh unless
--template names another qcow2.
"""

from __future__ import annotations

import argparse
import json
import mmap
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.backends import make_backend
from core.backends.base import CLEAN_CHECKPOINT, Backend
from core.settings import Settings

STEPS = ["cold_boot", "save", "resume_saved", "unpause", "reset_clean", "read_state_direct"]
LABELS = {
    "cold_boot": "cold boot (to ready)",
    "save": "save",
    "resume_saved": "resume from Saved",
    "unpause": "unpause from Paused",
    "reset_clean": "reset to clean",
    "read_state_direct": "read state file (direct I/O)",
}


def timed(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def wait_ready(backend: Backend, name: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not backend.heartbeat_ok(name):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name} not ready within {timeout_s:g} s")
        time.sleep(0.02)


def read_direct(path: str) -> float:
    """Seconds to read `path` with O_DIRECT (falls back to a buffered read)."""
    block = 4 << 20
    buffer = mmap.mmap(-1, block)  # page-aligned, as O_DIRECT needs
    started = time.perf_counter()
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECT", 0))
    except OSError:
        fd = os.open(path, os.O_RDONLY)
    try:
        while True:
            try:
                n = os.readv(fd, [buffer])
            except OSError:  # a short unaligned tail under O_DIRECT
                break
            if n < block:
                break
    finally:
        os.close(fd)
        buffer.close()
    return time.perf_counter() - started


def bench_size(
    backend: Backend, template: str, memory_mb: int, runs: int, ready_timeout_s: float
) -> dict[str, Any]:
    name = f"bench-{memory_mb}"
    disk = backend.disk_path_for(name, template)
    backend.create_differencing_disk(template, disk)
    backend.create_vm(name, disk, memory_mb, 1, False)
    samples: dict[str, list[float]] = {step: [] for step in STEPS}
    sizes: list[int] = []
    try:
        for run in range(runs):
            samples["cold_boot"].append(
                timed(lambda: (backend.start(name), wait_ready(backend, name, ready_timeout_s)))
            )
            if run == 0:
                backend.checkpoint(name, CLEAN_CHECKPOINT)
            samples["save"].append(timed(lambda: backend.save(name)))
            state = backend.saved_state_path(name)
            if state and os.path.exists(state):
                sizes.append(os.path.getsize(state))
                samples["read_state_direct"].append(read_direct(state))
            samples["resume_saved"].append(timed(lambda: backend.start(name)))
            backend.pause(name)
            samples["unpause"].append(timed(lambda: backend.unpause(name)))
            samples["reset_clean"].append(
                timed(lambda: backend.restore_checkpoint(name, CLEAN_CHECKPOINT))
            )
            backend.stop(name, force=True)
            print(f"  {memory_mb} MB run {run + 1}/{runs} done", file=sys.stderr, flush=True)
    finally:
        backend.remove(name)
    result: dict[str, Any] = {"memory_mb": memory_mb, "runs": runs}
    for step, values in samples.items():
        result[step] = {
            "median_ms": round(statistics.median(values) * 1000, 1) if values else None,
            "samples_ms": [round(v * 1000, 1) for v in values],
        }
    result["state_file_mb"] = round(statistics.median(sizes) / 2**20, 1) if sizes else None
    return result


def table(results: list[dict[str, Any]]) -> str:
    head = ["step"] + [f"{r['memory_mb']} MB" for r in results]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for step in STEPS:
        cells = [LABELS[step]]
        for r in results:
            ms = r[step]["median_ms"]
            cells.append("-" if ms is None else (f"{ms:.0f} ms" if ms >= 10 else f"{ms:.1f} ms"))
        lines.append("| " + " | ".join(cells) + " |")
    cells = ["state file size"] + [
        "-" if r["state_file_mb"] is None else f"{r['state_file_mb']:.0f} MB" for r in results
    ]
    lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", default="qemu", choices=["qemu", "sim"])
    parser.add_argument("--memory", type=int, nargs="+", default=[256, 512, 1024])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--template", help="template disk (qemu: default the test guest)")
    parser.add_argument("--accel", choices=["auto", "kvm", "tcg"], default="auto")
    parser.add_argument("--dir", help="work directory (default: a temporary one)")
    parser.add_argument("--ready-timeout", type=float, default=180.0)
    parser.add_argument("--sim-scale", type=float, default=1.0)
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="hvk-bench-") as tmp:
        work = Path(args.dir or tmp)
        settings = Settings(
            db=str(work / "bench.db"),
            backend=args.backend,
            qemu_dir=str(work / "vms"),
            qemu_accel=args.accel,
            sim_scale=args.sim_scale,
        )
        backend = make_backend(settings)
        template = args.template
        if template is None:
            if args.backend == "qemu":
                from core.backends.qemu import default_test_guest

                template = str(default_test_guest())
            else:
                template = "D:\\templates\\bench.vhdx"
        describe = getattr(backend, "describe", None)
        info = describe() if describe else {"backend": args.backend}
        print(f"backend: {json.dumps(info)}", file=sys.stderr)
        results = []
        try:
            for memory_mb in args.memory:
                results.append(
                    bench_size(backend, template, memory_mb, args.runs, args.ready_timeout)
                )
        finally:
            backend.close()
    print(table(results))
    print(f"\nmedian of {args.runs} runs; {json.dumps(info)}")
    if args.json:
        Path(args.json).write_text(json.dumps({"host": info, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

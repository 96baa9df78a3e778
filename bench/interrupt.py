"""Time from Ctrl-C to exit of `hvkube pool provision` (5 VMs, 2 at a time) on the
simulated host, and what the run left: the first signal alone (in-flight builds are
finished or removed), and a second signal right after the first (abandon at once).

    .venv/bin/python bench/interrupt.py [--runs 7] [--scale 0.25]

The signal is sent when the second VM boots. Prints the median and the worst time from
signal to exit, and how many VMs were built, removed again and never begun.
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


def one_run(scale: float, twice: bool) -> tuple[float, str]:
    with tempfile.TemporaryDirectory(prefix="hvkube-bench-") as tmp:
        env = {
            **os.environ,
            "HVKUBE_DATA_DIR": tmp,
            "HVKUBE_CONFIG": str(Path(tmp) / "none.toml"),
            "HVKUBE_BACKEND": "sim",
            "HVKUBE_SIM_SCALE": str(scale),
        }
        hvkube = [sys.executable, "-m", "core.cli"]
        for step in (
            ["template", "create", "--name", "t", "--vhdx", "C:\\t.vhdx"],
            ["pool", "create", "--name", "p", "--template", "t", "--count", "5", "--warm", "5"],
        ):
            subprocess.run([*hvkube, *step], env=env, check=True, capture_output=True)
        proc = subprocess.Popen(
            [*hvkube, "pool", "provision", "p", "--parallel", "2"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stderr is not None
        boots = 0
        for line in proc.stderr:
            boots += line.rstrip().endswith(": boot")
            if boots == 2:
                break
        sent = time.perf_counter()
        proc.send_signal(signal.SIGINT)
        if twice:
            time.sleep(0.05)
            proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate()
        took = time.perf_counter() - sent
        summary = " / ".join(
            line.strip().split(" (")[0] for line in out.splitlines() if line.startswith("  ")
        )
        return took, summary or "abandoned"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--scale", type=float, default=0.25, help="simulated time factor")
    args = parser.parse_args()
    for twice in (False, True):
        results = [one_run(args.scale, twice) for _ in range(args.runs)]
        times = [t for t, _ in results]
        label = "second Ctrl-C (abandon)" if twice else "one Ctrl-C (finish or undo)"
        print(
            f"{label:28} signal to exit: median {statistics.median(times):5.2f} s, "
            f"worst {max(times):5.2f} s over {args.runs} runs (sim scale {args.scale:g})"
        )
        for summary in sorted(set(s for _, s in results)):
            print(f"    {summary}")


if __name__ == "__main__":
    main()

"""CPU time of a command line's start against `python -c pass`, in paired runs.

Each round runs `python -c pass` and then each measured command once, one after the other,
and takes the CPU time (user + system) the child used from the kernel's accounting, so a
busy machine slows both sides of a pair alike. Prints, per command, the median CPU time,
the median of the per-round ratios to the paired `python -c pass`, and the 90th
percentile of the ratio.

    .venv/bin/python bench/cli_start.py [--rounds 31]

`hvkube --json vm list` runs on a fresh simulated store of 20 VMs (made before timing);
`hvkube --json template list` opens the engine on it (peewee, the models, the backend).
Bytecode is written and read as in an installed copy, whatever PYTHONDONTWRITEBYTECODE says.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

COMMANDS = {
    "hvkube --help": ["--help"],
    "hvkube --version": ["--version"],
    "hvkube --json vm list": ["--json", "vm", "list"],
    "hvkube vm list": ["vm", "list"],
    "hvkube pool --help": ["pool", "--help"],
    # For comparison: a command that opens the whole store and the engine.
    "hvkube --json template list": ["--json", "template", "list"],
}


def cpu_seconds(command: list[str], env: dict[str, str]) -> float:
    """The CPU time (user + system) `command` used, as the kernel counted it."""
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(command)} failed")
    return usage.ru_utime + usage.ru_stime


def seed(env: dict[str, str]) -> None:
    hvkube = [sys.executable, "-m", "core.cli"]
    steps = [
        ["template", "create", "--name", "tpl", "--vhdx", "C:\\t.vhdx"],
        ["pool", "create", "--name", "p", "--template", "tpl", "--count", "20", "--warm", "20"],
        ["pool", "provision", "p"],
    ]
    for step in steps:
        subprocess.run([*hvkube, *step], env=env, check=True, capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=31)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hvkube-bench-") as tmp:
        env = {
            **os.environ,
            "HVKUBE_DATA_DIR": tmp,
            "HVKUBE_CONFIG": str(Path(tmp) / "none.toml"),
            "HVKUBE_BACKEND": "sim",
            "HVKUBE_SIM_SCALE": "0",
        }
        # As installed: Python reads hvkube's compiled bytecode instead of compiling every
        # module on every start (the first, unmeasured run of each command writes it).
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        seed(env)
        hvkube = [str(Path(sys.executable).with_name("hvkube"))]
        base: list[float] = []
        times: dict[str, list[float]] = {name: [] for name in COMMANDS}
        ratios: dict[str, list[float]] = {name: [] for name in COMMANDS}
        for argv in COMMANDS.values():  # warm the bytecode caches
            cpu_seconds([*hvkube, *argv], env)
        for _ in range(args.rounds):
            pass_cpu = cpu_seconds([sys.executable, "-c", "pass"], env)
            base.append(pass_cpu)
            for name, argv in COMMANDS.items():
                took = cpu_seconds([*hvkube, *argv], env)
                times[name].append(took)
                ratios[name].append(took / pass_cpu)
    print(f"{args.rounds} paired rounds; CPU time (user+system) per run")
    print(f"{'python -c pass':30} median {statistics.median(base) * 1000:6.1f} ms")
    for name in COMMANDS:
        cuts = statistics.quantiles(ratios[name], n=10)
        print(
            f"{name:30} median {statistics.median(times[name]) * 1000:6.1f} ms  "
            f"ratio median {statistics.median(ratios[name]):4.2f}x  p90 {cuts[-1]:4.2f}x"
        )


if __name__ == "__main__":
    main()

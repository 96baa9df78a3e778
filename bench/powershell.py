"""Per-call overhead of the persistent PowerShell session against a new process per call.

Both run the fake PowerShell host (python -m tests.fakes.fakeps) with the same
dispatcher protocol, so the difference is the transport alone: one long-lived
process answering framed requests, or a process started (and made ready) for
every call, as Vagrant, Packer and minikube do. On Windows, pass
--powershell "powershell.exe -NoLogo -NoProfile -NonInteractive -ExecutionPolicy Bypass"
to measure the real thing (the new-process figure then includes PowerShell's
own start-up and the Hyper-V module import).

Then the PowerShell round trips and cmdlet calls each lifecycle step costs (provision
one VM, acquire from Saved, release with reset, vm list), counted from the requests the
fake host records; the cmdlet calls of each operation are counted in the dispatcher
script. Only `vm list` may list every VM on the host.

    python bench/powershell.py [--calls 2000] [--spawns 40] [--op ping]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

# The fake host lives with the tests (tests/fakes): import it from this checkout.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.backends.hyperv import HyperVBackend
from core.backends.hyperv.transport import DISPATCHER, PowerShellSession, dispatcher_argv
from core.engine import Engine
from core.settings import Settings
from core.store import Store
from tests.fakes.fakeps import python_fake_command

# Commands that reach Hyper-V, WMI or the file system, and the script's helpers that call one
# (Get-HvVM: Get-VM -Id; Get-HvDevice: Get-CimInstance and Get-CimAssociatedInstance).
_CMDLET = re.compile(
    r"Hyper-V\\[A-Za-z-]+|\b(?:Get-CimInstance|Get-CimAssociatedInstance|Invoke-CimMethod|"
    r"New-Item|Remove-Item|Test-Path)\b"
)
_HELPERS = {"Get-HvVM": 1, "Get-HvDevice": 2}


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


def cmdlets_per_operation(script: str) -> dict[str, int]:
    """How many cmdlet calls each allow-listed operation makes (counted in its text)."""
    from tests.fakes.fakeps import matching_brace

    table = re.search(r"^\$Ops\s*=\s*@\{", script, re.M)
    assert table is not None
    body = script[table.end() : matching_brace(script, table.end() - 1) - 1]
    counts: dict[str, int] = {}
    for entry in re.finditer(r"^    '([a-z0-9_]+)'\s*=\s*\{", body, re.M):
        block = body[entry.end() : matching_brace(body, entry.end() - 1)]
        block = "\n".join(line.split("#", 1)[0] for line in block.splitlines())
        n = len(_CMDLET.findall(block))
        n += sum(weight * block.count(name) for name, weight in _HELPERS.items())
        counts[entry.group(1)] = n
    return counts


def round_trips() -> list[tuple[str, list[str]]]:
    """The dispatcher operations each lifecycle step sends, in order, over the fake host."""
    with tempfile.TemporaryDirectory() as folder:
        state = Path(folder)
        log = state / "requests.log"
        command = python_fake_command(
            "--state-dir", str(state), "--sim-scale", "0", "--record", str(log)
        )
        backend = HyperVBackend(command, vm_dir="D:\\hvkube\\vms", sessions=1)
        settings = Settings(db=str(state / "hvkube.db"), backend="hyperv", sim_scale=0)
        engine = Engine(Store(settings.db_path()), backend, settings)
        engine.create_template("win11", "C:\\templates\\win11.vhdx", memory_mb=2048)
        engine.create_pool("web", "win11", count=1, warm=1)
        backend.call("ping", read_only=True)  # the session is up before counting starts

        def sent(step: str, action: object) -> tuple[str, list[str]]:
            before = log.read_text().count("\n") if log.exists() else 0
            action()  # type: ignore[operator]
            lines = log.read_text().splitlines()[before:]
            ops = [json.loads(line[len("HVKUBE-REQ ") :])["op"] for line in lines if line]
            return step, ops

        steps = [
            sent("provision one VM", lambda: engine.provision_pool("web")),
            sent("acquire (from Saved)", lambda: engine.acquire("web")),
            sent("release with reset", lambda: engine.release("web-001")),
            sent("vm list (the host's view)", backend.list_vms),
        ]
        engine.close()
        return steps


def report_round_trips() -> bool:
    per_op = cmdlets_per_operation(DISPATCHER.read_text(encoding="utf-8"))
    print()
    print(f"{'lifecycle step':<26} {'round trips':>11} {'cmdlet calls':>12}  lists all VMs")
    ok = True
    for step, ops in round_trips():
        lists_all = "vm_list" in ops
        ok = ok and (not lists_all or step.startswith("vm list"))
        cmdlets = sum(per_op.get(op, 0) for op in ops)
        print(f"{step:<26} {len(ops):>11} {cmdlets:>12}  {'yes' if lists_all else 'no'}")
        print(f"    {', '.join(ops)}")
    print(f"only 'vm list' lists every VM: {'yes' if ok else 'NO'}")
    return ok


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
    listed_ok = report_round_trips()
    return 0 if ok and listed_ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""What recording costs the controller: its CPU with 20 held VMs recorded about once a
second, against the same controller with recording off; and the bytes kept per recorded
minute of one VM.

    python bench/recording.py [--vms 20] [--seconds 30] [--backend sim|hyperv]

`sim`: the simulated host, its screenshots replaced by ready-made 1024x768 PNGs, so that
the figure is hvkube's own cost (listing held VMs, hashing, skipping, writing) and not the
simulator's drawing: `changing` gives every VM a new screen every second (the worst case),
`static` the same screen (an idle desktop: every frame skipped). `hyperv`: the Hyper-V
backend over the fake PowerShell host (thumbnails over the session, RGB565 decoded here;
the fake host's own CPU is another process and not counted); its screens carry a clock,
so every frame differs.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core import open_engine
from core.backends.base import VMRef
from core.controller import Controller
from core.imaging import text_card
from tests.conformance.backends import HYPERV, SIM, BackendCase

WARM_UP_S = 3.0


def ready_made_screens(changing: bool) -> Callable[[VMRef], bytes]:
    frames = [text_card([f"desktop {i}", "x" * (i % 7)], size=(1024, 768)) for i in range(8)]
    counter = itertools.count()
    if not changing:
        return lambda ref: frames[0]
    return lambda ref: frames[(int(time.monotonic()) + next(counter) % 2) % len(frames)]


def folder_bytes(path: Path) -> tuple[int, int]:
    total = frames = 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            total += os.path.getsize(os.path.join(dirpath, name))
            frames += name.endswith(".png")
    return total, frames


def one_run(
    case: BackendCase, vms: int, seconds: float, record: bool, screens: Any
) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="hvkr-") as tmp:
        root = Path(tmp)
        settings = case.settings(root).replace(provision_parallelism=4)
        engine = open_engine(settings)
        try:
            engine.create_template("t", case.template_disk(root), memory_mb=512)
            engine.create_pool("r", "t", count=vms, warm=vms)
            assert not engine.provision_pool("r").failed
            for i in range(vms):
                engine.acquire("r", holder=f"lease-{i:03d}")
            if screens is not None:
                engine.backend.screenshot = screens  # type: ignore[method-assign]
            controller = Controller(engine, tick_s=2.0, record_every_s=1.0 if record else 0)
            stop = threading.Event()
            thread = threading.Thread(target=controller.run, args=(stop,), daemon=True)
            thread.start()
            time.sleep(WARM_UP_S)
            cpu, wall = time.process_time(), time.monotonic()
            before = folder_bytes(root / "recordings")
            time.sleep(seconds)
            cpu, wall = time.process_time() - cpu, time.monotonic() - wall
            after = folder_bytes(root / "recordings")
            stop.set()
            thread.join(timeout=60)
        finally:
            engine.close()
    minutes = wall / 60
    return {
        "cpu_share": cpu / wall,
        "bytes_per_vm_minute": (after[0] - before[0]) / vms / minutes,
        "frames_per_vm_minute": (after[1] - before[1]) / vms / minutes,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vms", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--backend", choices=["sim", "hyperv"], default="sim")
    args = parser.parse_args()
    os.environ["HVKUBE_SIM_SCALE"] = "0"
    if args.backend == "sim":
        kinds: list[tuple[str, BackendCase, Any]] = [
            ("changing", SIM, ready_made_screens(True)),
            ("static", SIM, ready_made_screens(False)),
        ]
    else:
        kinds = [("clock on screen", HYPERV, None)]
    print(f"{args.vms} held VMs, {args.seconds:g} s each, controller process CPU\n")
    print("| backend | screens | CPU off | CPU recording | ratio | kept per VM-minute |")
    print("|---|---|---|---|---|---|")
    for label, case, screens in kinds:
        off = one_run(case, args.vms, args.seconds, False, screens)
        on = one_run(case, args.vms, args.seconds, True, screens)
        ratio = on["cpu_share"] / off["cpu_share"] if off["cpu_share"] else float("inf")
        kept = (
            f"{on['bytes_per_vm_minute'] / 1024:.0f} KiB ({on['frames_per_vm_minute']:.0f} frames)"
        )
        print(
            f"| {case.name} | {label} | {off['cpu_share']:.1%} | {on['cpu_share']:.1%} "
            f"| {ratio:.2f}x | {kept} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

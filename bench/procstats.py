"""A process's resources over time, for the soak: periodic samples, their trend, and a census
of what its open descriptors and threads are.

The census reads `/proc/PID/fd` for the descriptors' targets and, for the threads, asks the
process to dump every thread's stack on SIGUSR1 (`faulthandler`, registered by
`BOOTSTRAP` before hvkube starts; Python 3.11 gives its threads no OS names), then labels
each thread by the code it is in.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import statistics
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import psutil

# Run as `python -c BOOTSTRAP ARGS...`: hvkube's CLI, with thread stacks dumped to stderr on
# SIGUSR1 (stderr is the server's log here, so no descriptor is added).
BOOTSTRAP = (
    "import faulthandler, signal, sys\n"
    "faulthandler.register(signal.SIGUSR1, all_threads=True)\n"
    "from core.cli import main\n"
    "raise SystemExit(main(sys.argv[1:]))\n"
)


@dataclass
class Sample:
    t_s: float
    rss_mb: float
    fds: int
    threads: int


@dataclass
class Trend:
    """Samples after the warm-up: the means of their first and last thirds, and the slope."""

    samples: int
    first_third: dict[str, float]
    last_third: dict[str, float]
    per_10_min: dict[str, float]
    low: dict[str, float]
    high: dict[str, float]


def sample(pid: int, t_s: float) -> Sample:
    proc = psutil.Process(pid)
    with proc.oneshot():
        return Sample(
            t_s=round(t_s, 1),
            rss_mb=round(proc.memory_info().rss / 2**20, 2),
            fds=proc.num_fds(),
            threads=proc.num_threads(),
        )


@dataclass
class Sampler:
    """Samples each named process every `every_s` seconds from a background thread."""

    pids: dict[str, int]
    every_s: float
    series: dict[str, list[Sample]] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _t0: float = field(default_factory=time.monotonic)

    def start(self) -> None:
        self.series = {name: [] for name in self.pids}
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)
        self._thread.start()

    def take(self) -> None:
        now = time.monotonic() - self._t0
        for name, pid in self.pids.items():
            with contextlib.suppress(psutil.Error):  # it ended: the series stops there
                self.series[name].append(sample(pid, now))

    def stop(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.take()

    def _run(self) -> None:
        self.take()
        while not self._stop.wait(self.every_s):
            self.take()


METRICS = ("rss_mb", "fds", "threads")


def trend(samples: list[Sample], warmup_s: float) -> Trend | None:
    kept = [s for s in samples if s.t_s >= warmup_s]
    if len(kept) < 3:
        return None
    third = max(1, len(kept) // 3)
    first, last = kept[:third], kept[-third:]
    times = [s.t_s for s in kept]

    def values(rows: list[Sample], metric: str) -> list[float]:
        return [float(getattr(s, metric)) for s in rows]

    return Trend(
        samples=len(kept),
        first_third={m: round(statistics.fmean(values(first, m)), 2) for m in METRICS},
        last_third={m: round(statistics.fmean(values(last, m)), 2) for m in METRICS},
        per_10_min={
            m: round(statistics.linear_regression(times, values(kept, m)).slope * 600, 3)
            for m in METRICS
        },
        low={m: min(values(kept, m)) for m in METRICS},
        high={m: max(values(kept, m)) for m in METRICS},
    )


def fd_targets(pid: int, folder: Path) -> Counter[str]:
    """What each open descriptor is: a file of the run's folder by name, a socket, a pipe..."""
    out: Counter[str] = Counter()
    fd_dir = Path(f"/proc/{pid}/fd")
    for entry in fd_dir.iterdir():
        try:
            target = os.readlink(entry)
        except OSError:
            continue
        if target.startswith(str(folder)):
            target = "<run>/" + Path(target).name
        else:
            target = re.sub(r"\[\d+\]$", "", target)  # socket:[123] -> socket:
            target = re.sub(r"^/tmp/[^/]+", "/tmp/...", target)
        out[target] += 1
    return out


_THREAD = re.compile(r"^(?:Current thread|Thread) 0x[0-9a-f]+ \(most recent call first\):$")
_FRAME = re.compile(r'^\s+File "([^"]+)", line \d+ in (\S+)')


def thread_census(pid: int, log: Path, timeout_s: float = 5.0) -> Counter[str]:
    """Each thread labelled by the outermost hvkube function it is in (else its innermost)."""
    before = log.stat().st_size
    os.kill(pid, signal.SIGUSR1)
    deadline = time.monotonic() + timeout_s
    text = ""
    while time.monotonic() < deadline:
        time.sleep(0.2)
        with open(log, "rb") as f:
            f.seek(before)
            text = f.read().decode(errors="replace")
        if text.count("(most recent call first)") and text.rstrip().endswith(")"):
            break
    return label_threads(text)


def label_threads(dump: str) -> Counter[str]:
    stacks: list[list[tuple[str, str]]] = []
    for line in dump.splitlines():
        if _THREAD.match(line.strip()):
            stacks.append([])
        elif stacks and (frame := _FRAME.match(line)):
            stacks[-1].append((frame.group(1), frame.group(2)))
    out: Counter[str] = Counter()
    for frames in stacks:
        ours = [(f, fn) for f, fn in frames if "/core/" in f or "/hvkube_tui/" in f]
        if ours:
            path, fn = ours[-1]  # outermost: what the thread is for
            label = f"{path.split('/core/')[-1] if '/core/' in path else path}:{fn}"
        elif frames:
            path, fn = frames[0]
            label = f"{Path(path).name}:{fn} (idle or library)"
        else:
            label = "?"
        out[label] += 1
    return out

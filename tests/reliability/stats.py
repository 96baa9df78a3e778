"""Figures for the reliability report: tests count what they inject and try.

When RELIABILITY_STATS_FILE names a file, each count is appended to it as a JSON line
(pytest-xdist workers append to the same file); otherwise counting costs nothing.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

ENV = "RELIABILITY_STATS_FILE"  # not HVKUBE_*: the tests clear those


def count(kind: str, n: int = 1) -> None:
    path = os.environ.get(ENV)
    if not path or n == 0:
        return
    line = json.dumps({"kind": kind, "n": n}) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def totals(path: Path) -> Counter[str]:
    out: Counter[str] = Counter()
    if path.exists():
        for line in path.read_text().splitlines():
            entry = json.loads(line)
            out[entry["kind"]] += entry["n"]
    return out

"""The soak benchmark's smoke run: the controller, the API and a stream of agents with
random faults (bench/soak.py), 2 minutes in CI and a few seconds elsewhere. It asserts
what must hold, never a speed: every agent ended and no invariant was violated."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals stop the servers")
def test_soak_smoke_run_ends_every_agent_with_no_violation(tmp_path: Path) -> None:
    minutes = "2" if os.environ.get("CI") == "true" else "0.3"
    out = tmp_path / "soak.json"
    done = subprocess.run(
        [sys.executable, "bench/soak.py", "--minutes", minutes, "--seed", "3", "--json", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert figures["violations"] == []
    assert figures["agents_submitted"] > 0
    assert figures["agents_done"] == figures["agents_submitted"]
    assert set(figures["start"]) == set(figures["end"]) == {"controller", "api"}
    assert "invariant violations: 0" in done.stdout

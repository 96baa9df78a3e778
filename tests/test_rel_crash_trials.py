"""Crash trials in CI: a reduced, seeded count (HVKUBE_TRIALS, default 12) of the trials that
`python -m tests.reliability` runs in full. Each kills workers with SIGKILL at a random
moment, reconciles, checks every invariant, restarts the work and checks again."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from reliability.harness import SCENARIOS, run_trial
from reliability.stats import count

TRIALS = int(os.environ.get("HVKUBE_TRIALS", "12"))
SEED = int(os.environ.get("HVKUBE_TRIALS_SEED", "1"))


@pytest.mark.slow
@pytest.mark.parametrize("trial", range(TRIALS))
def test_crash_trial(trial: int, tmp_path: Path) -> None:
    result = run_trial(trial, SEED, tmp_path / "trial")
    count("crash trials")
    count("processes killed", result.killed_mid_work)
    assert result.scenario in SCENARIOS
    assert result.violations == [], (
        f"trial {trial} ({result.scenario}, seed {result.seed}): {result.violations}"
    )


# The same trials over a PostgreSQL store: fewer of them, for CI time.
PG_TRIALS = int(os.environ.get("HVKUBE_PG_TRIALS", "4"))


@pytest.mark.slow
@pytest.mark.parametrize("trial", range(PG_TRIALS))
def test_crash_trial_on_postgresql(
    trial: int, tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "trial"
    monkeypatch.setenv("HVKUBE_DATA_DIR", str(folder))  # the host's state, beside the journal
    result = run_trial(trial, SEED, folder, db=pg_url)
    assert result.violations == [], (
        f"trial {trial} ({result.scenario}, seed {result.seed}): {result.violations}"
    )

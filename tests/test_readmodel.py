"""One pool summary: the CLI, the API and the dashboard print the same numbers."""

from __future__ import annotations

import json

from core.engine import Engine
from core.readmodel import RESUME_WINDOW, ResumeFigures, pool_summary
from hvkube_tui.data import pool_median
from tests.conftest import run_cli


def test_the_figures_cover_the_last_window_of_successful_resumes(engine: Engine, pool: str) -> None:
    for _ in range(RESUME_WINDOW + 5):
        engine.release(engine.acquire(pool).name)
    resumes = [e.duration_ms for e in engine.events(pool=pool, kind="resume", limit=1000)]
    window = list(reversed(resumes[:RESUME_WINDOW]))
    summary = pool_summary(engine, pool)
    assert summary.median_resume_ms == ResumeFigures.of(window).median_ms
    assert summary.p90_resume_ms is not None
    assert summary.p90_resume_ms >= summary.median_resume_ms  # type: ignore[operator]
    assert pool_median({"latencies": window}) == summary.median_resume_ms


def test_pool_list_prints_the_read_models_numbers(engine: Engine, pool: str, db_path) -> None:  # type: ignore[no-untyped-def]
    for _ in range(7):
        engine.release(engine.acquire(pool).name)
    expected = pool_summary(engine, pool)
    done = run_cli("--db", str(db_path), "--backend", "sim", "--json", "pool", "list")
    assert done.returncode == 0, done.stderr
    (listed,) = json.loads(done.stdout)
    assert listed["median_resume_ms"] == expected.median_resume_ms
    assert listed["counts"] == expected.counts


def test_no_resume_yet_is_no_figure() -> None:
    assert ResumeFigures.of([]) == ResumeFigures()
    assert ResumeFigures.of([5.0]).p90_ms == 5.0

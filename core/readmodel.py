"""What the dashboard, `pool list` and the API's `/pools` show about a pool: one summary,
computed here, with one window of recent resumes, so all three print the same numbers."""

from __future__ import annotations

from statistics import median, quantiles
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from core.models import VMPool

if TYPE_CHECKING:
    from core.engine import Engine

# How many of a pool's most recent successful resumes its latency figures cover.
RESUME_WINDOW = 30


class ResumeFigures(BaseModel):
    """A pool's recent resume latencies (oldest first) and their median and 90th percentile."""

    latencies_ms: list[float] = Field(default_factory=list)
    median_ms: float | None = None
    p90_ms: float | None = None

    @classmethod
    def of(cls, latencies_ms: list[float]) -> ResumeFigures:
        if not latencies_ms:
            return cls()
        p90 = (
            quantiles(latencies_ms, n=10, method="inclusive")[-1]
            if len(latencies_ms) > 1
            else latencies_ms[0]
        )
        return cls(latencies_ms=latencies_ms, median_ms=median(latencies_ms), p90_ms=p90)


class PoolSummary(VMPool):
    counts: dict[str, int] = Field(description="VMs per state, plus `held`")
    median_resume_ms: float | None = Field(
        default=None, description=f"median of the last {RESUME_WINDOW} resumes"
    )
    p90_resume_ms: float | None = Field(
        default=None, description=f"90th percentile of the last {RESUME_WINDOW} resumes"
    )


def resume_figures(engine: Engine, pool: str) -> ResumeFigures:
    return ResumeFigures.of(engine.store.recent_resumes(pool, RESUME_WINDOW))


def pool_summary(engine: Engine, name: str) -> PoolSummary:
    pool = engine.get_pool(name)
    figures = resume_figures(engine, name)
    return PoolSummary(
        **pool.model_dump(),
        counts=engine.pool_counts(name),
        median_resume_ms=figures.median_ms,
        p90_resume_ms=figures.p90_ms,
    )


def pool_summaries(engine: Engine) -> list[PoolSummary]:
    return [pool_summary(engine, p.name) for p in engine.list_pools()]

"""The host memory budget: the one rule for how much of the host's memory VMs may hold.

VMs may hold at most `memory_ceiling` of the host's memory, measured (not assumed) from
the backend each time. Provisioning, resumes, the hot tier and the scheduler all ask this
module, and its refusals all give the same figures.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.backends.base import Backend
from core.errors import CapacityExceeded


@dataclass(frozen=True)
class MemoryBudget:
    """One measurement: total, in use and the ceiling, in MB."""

    total_mb: int
    used_mb: int
    ceiling_mb: int
    share: float

    @classmethod
    def measure(cls, backend: Backend, share: float) -> MemoryBudget:
        cap = backend.capacity()
        return cls(
            total_mb=cap.total_memory_mb,
            used_mb=cap.total_memory_mb - cap.free_memory_mb,
            ceiling_mb=int(cap.total_memory_mb * share),
            share=share,
        )

    def headroom(self, reserved_mb: int = 0) -> int:
        """What more may be started, beside `reserved_mb` already promised elsewhere."""
        return self.ceiling_mb - self.used_mb - reserved_mb

    def allows(self, memory_mb: int, reserved_mb: int = 0) -> bool:
        return memory_mb <= self.headroom(reserved_mb)

    def refusal(self, memory_mb: int, what: str = "a VM") -> CapacityExceeded:
        return CapacityExceeded(
            f"host memory: {self.used_mb} of {self.total_mb} MB in use; {what} of {memory_mb} "
            f"MB would pass the {self.share:.0%} ceiling ({self.ceiling_mb} MB). Save or "
            "delete VMs, lower the pool's hot count, or add memory"
        )

    def check(self, memory_mb: int, what: str = "a VM") -> None:
        if not self.allows(memory_mb):
            raise self.refusal(memory_mb, what)

    def check_hot(self, hot: int, memory_mb: int) -> None:
        """A pool's hot tier holds its memory all the time: it must fit under the ceiling
        on its own."""
        need = hot * memory_mb
        if need > self.ceiling_mb:
            raise CapacityExceeded(
                f"{hot} hot VMs of {memory_mb} MB need {need} MB of RAM, above the "
                f"{self.share:.0%} ceiling of {self.total_mb} MB ({self.ceiling_mb} MB); "
                "lower --hot"
            )

"""`/metrics` in the Prometheus text format: what the store holds, read at each scrape (VMs by
pool, host and state; agents by status; host memory), and what this server measured
(acquire and resume latency by tier)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from core.errors import HvkubeError
from core.models import VMState

if TYPE_CHECKING:
    from core.engine import Engine

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
TIERS = {VMState.PAUSED: "hot", VMState.SAVED: "warm", VMState.OFF: "cold"}
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


def tier_of(state: VMState) -> str:
    return TIERS.get(state, "other")


class StoreCollector(Collector):
    """Gauges read from the store and the host when scraped."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[Metric]:
        views = self.engine.store.views
        vms = GaugeMetricFamily(
            "hvkube_vms", "VMs by pool, host and state", labels=["pool", "host", "state"]
        )
        local = socket.gethostname()
        for pool, host, state, count in views.vms_by_pool_host_state():
            vms.add_metric([pool or "", host or local, state], float(count))
        yield vms
        agents = GaugeMetricFamily("hvkube_agents", "agents by status", labels=["status"])
        for status, count in views.agents_by_status():
            agents.add_metric([status], float(count))
        yield agents
        try:
            capacity = self.engine.backend.capacity()
        except HvkubeError:
            return
        memory = GaugeMetricFamily(
            "hvkube_host_memory_bytes", "host memory", labels=["host", "kind"]
        )
        memory.add_metric([local, "total"], capacity.total_memory_mb * 1024.0 * 1024.0)
        memory.add_metric([local, "free"], capacity.free_memory_mb * 1024.0 * 1024.0)
        yield memory


class ApiMetrics:
    """This server's own measurements, and the registry `/metrics` renders."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.acquire = Histogram(
            "hvkube_acquire_seconds",
            "HTTP acquire, from request to a resumed VM, by the tier it came from",
            ["tier"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.resume = Histogram(
            "hvkube_resume_seconds",
            "resume of an acquired VM, by the tier it came from",
            ["tier"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self._store: StoreCollector | None = None

    def watch(self, engine: Engine) -> None:
        self._store = StoreCollector(engine)
        self.registry.register(self._store)

    def observe_acquire(self, from_state: VMState, total_s: float, resume_ms: float) -> None:
        tier = tier_of(from_state)
        self.acquire.labels(tier).observe(total_s)
        self.resume.labels(tier).observe(resume_ms / 1000.0)

    def render(self) -> bytes:
        """The text format; reads the store (call from a worker thread)."""
        return generate_latest(self.registry)

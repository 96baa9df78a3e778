"""The data model: what a template, pool, VM, agent and event are.

These pydantic models are what the engine returns and what `--json` prints;
the store (core.store) keeps them in SQL tables.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel as _PydanticModel
from pydantic import ConfigDict, Field

from core.states import (
    ACTIVE_AGENT_STATUSES,
    READY_TIERS,
    TRANSITIONAL_STATES,
    UNLEASED_PREFIX,
    AgentStatus,
    HostState,
    ReleasePolicy,
    VMState,
    holder_label,
)

__all__ = [
    "ACTIVE_AGENT_STATUSES",
    "READY_TIERS",
    "TRANSITIONAL_STATES",
    "UNLEASED_PREFIX",
    "VM",
    "AcquiredVM",
    "Agent",
    "AgentResult",
    "AgentStatus",
    "Event",
    "Host",
    "HostCapacity",
    "HostState",
    "HostVM",
    "ReadinessProbe",
    "ReleasePolicy",
    "Task",
    "Template",
    "VMPool",
    "VMState",
    "holder_label",
]


class BaseModel(_PydanticModel):
    """The models' base: each model's validator is built when it is first used, not when
    this module is imported (a command that prints VMs does not build the agents' models)."""

    model_config = ConfigDict(defer_build=True)


class ReadinessProbe(BaseModel):
    """How to tell that a freshly booted guest is ready to be checkpointed."""

    kind: Literal["heartbeat", "tcp", "http"] = "heartbeat"
    port: int | None = None
    url: str | None = None
    timeout_s: float = 600.0


class Template(BaseModel):
    name: str
    disk_path: str
    memory_mb: int = 4096
    cpus: int = 2
    gpu: bool = False
    software: list[str] = Field(default_factory=list)
    rdp_port: int = 3389
    mcp_endpoint: str | None = None  # a pattern such as "http://{ip}:8080/mcp"
    probe: ReadinessProbe = Field(default_factory=ReadinessProbe)
    created_at: datetime | None = None


class VMPool(BaseModel):
    name: str
    template: str
    desired_count: int
    warm_count: int = 0
    hot_count: int = 0
    max_per_host: int | None = None
    release_policy: ReleasePolicy = ReleasePolicy.RESET
    created_at: datetime | None = None
    # The hosts its VMs may live on; None: every host of the store.
    hosts: list[str] | None = None
    # The controller's environment variables its agents' commands also get (names only).
    exec_env: list[str] = Field(default_factory=list)


class VM(BaseModel):
    name: str
    template: str
    pool: str | None
    state: VMState
    disk_path: str | None = None
    saved_state_path: str | None = None
    ip: str | None = None
    rdp_port: int = 3389
    memory_mb: int = 0
    created_at: datetime | None = None
    last_resumed_at: datetime | None = None
    last_resume_ms: float | None = None
    agent_id: int | None = None
    holder: str | None = None
    error: str | None = None
    raw_state: str | None = None
    # Where the VM lives: the backend, the host and the hypervisor's own id for it.
    backend: str | None = None
    host: str | None = None
    host_id: str | None = None

    @property
    def held(self) -> bool:
        return self.holder is not None


class Task(BaseModel):
    """What an agent is asked to do."""

    workflow: str
    input: dict[str, Any] = Field(default_factory=dict)
    timeout_s: int = 600
    requires_gpu: bool = False
    exec_command: str | None = None
    # When the host of its VM goes down while it runs: fail it, or queue it again.
    on_host_down: Literal["fail", "requeue"] = "fail"
    # The controller's environment variables its command also gets (names only).
    exec_env: list[str] = Field(default_factory=list)


class AgentResult(BaseModel):
    success: bool
    output: dict[str, Any] | None = None
    error: str | None = None
    screenshots: list[str] = Field(default_factory=list)
    exit_code: int | None = None
    duration_ms: float | None = None


class Agent(BaseModel):
    id: int
    pool: str
    task: Task
    status: AgentStatus
    vm: str | None = None
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    result: AgentResult | None = None
    wait_reason: str | None = None
    # The host whose controller scheduled it (and runs its command).
    host: str | None = None
    # While the agent holds its VM: where to reach it (filled in from the VM's row).
    ip: str | None = None
    rdp_port: int | None = None


class Event(BaseModel):
    id: int
    vm: str | None
    pool: str | None
    kind: str
    started_at: datetime
    duration_ms: float
    ok: bool
    error: str | None = None


class HostVM(BaseModel):
    """One VM as the hypervisor sees it."""

    name: str
    # The hypervisor's own id (Hyper-V's VM Id GUID): operations address the VM by it.
    id: str
    # The store id in the VM's ownership mark (core.ownership), None when hvkube did not make it.
    owner: str | None = None
    state: HostState
    raw_state: str
    memory_mb: int = 0
    uptime_s: float = 0.0
    checkpoints: list[str] = Field(default_factory=list)


class HostCapacity(BaseModel):
    total_memory_mb: int
    free_memory_mb: int
    logical_cpus: int


class Host(BaseModel):
    """One Hyper-V host of the store, as its controller last reported it."""

    name: str
    # up: its controller heartbeats; down: the heartbeat stopped for longer than its lease;
    # idle: no controller runs there (stopped cleanly, or never started).
    status: Literal["up", "down", "idle"]
    draining: bool = False
    heartbeat_at: datetime | None = None
    heartbeat_age_s: float | None = None
    lease_s: float | None = None
    down_since: datetime | None = None
    total_memory_mb: int | None = None
    free_memory_mb: int | None = None
    backend: str | None = None
    vms: dict[str, int] = Field(default_factory=dict)  # state -> count

    @property
    def used_memory_mb(self) -> int | None:
        if self.total_memory_mb is None or self.free_memory_mb is None:
            return None
        return self.total_memory_mb - self.free_memory_mb


class AcquiredVM(BaseModel):
    """What `acquire` hands to an agent."""

    name: str
    pool: str
    ip: str | None
    rdp_port: int
    mcp_endpoint: str | None
    resume_ms: float
    from_state: VMState
    holder: str
    host: str | None = None

"""The states and statuses: what a VM, a host's VM and an agent can be in, and the release
policies, and how a holder is shown. Plain enums, apart from the pydantic models
(core.models re-exports them), so that the command line can offer them as choices and
print them without loading the models.
"""

from __future__ import annotations

from enum import StrEnum


class VMState(StrEnum):
    """A VM's state as the store records it.

    The ready tiers are OFF (cold), SAVED (warm) and PAUSED (hot). States
    ending in -ing are transitional: they record an intent before a backend
    call and are never final; `reconcile` resolves them after a crash.
    """

    PROVISIONING = "provisioning"
    OFF = "off"
    STARTING = "starting"
    RUNNING = "running"
    SAVING = "saving"
    SAVED = "saved"
    PAUSING = "pausing"
    PAUSED = "paused"
    RESUMING = "resuming"
    STOPPING = "stopping"
    RESETTING = "resetting"
    DELETING = "deleting"
    ERROR = "error"
    MISSING = "missing"
    # Its host stopped heartbeating: nobody can tell its state until the host is back.
    UNKNOWN = "unknown"

    @property
    def transitional(self) -> bool:
        return self in TRANSITIONAL_STATES


TRANSITIONAL_STATES = frozenset(
    {
        VMState.PROVISIONING,
        VMState.STARTING,
        VMState.SAVING,
        VMState.PAUSING,
        VMState.RESUMING,
        VMState.STOPPING,
        VMState.RESETTING,
        VMState.DELETING,
    }
)
# Claim order for acquire: hot first, then warm, then cold.
READY_TIERS = (VMState.PAUSED, VMState.SAVED, VMState.OFF)


class HostState(StrEnum):
    """A VM's state as the hypervisor reports it, mapped by Hyper-V's enum *name*."""

    OFF = "Off"
    RUNNING = "Running"
    SAVED = "Saved"
    PAUSED = "Paused"
    STARTING = "Starting"
    SAVING = "Saving"
    PAUSING = "Pausing"
    RESUMING = "Resuming"
    STOPPING = "Stopping"
    RESET = "Reset"
    OTHER = "Other"
    UNKNOWN = "Unknown"

    @classmethod
    def from_name(cls, raw: str) -> HostState:
        """Map a state name; anything not known maps to UNKNOWN (the raw value is kept aside)."""
        aliases = {"FastSaved": cls.SAVED, "FastSaving": cls.SAVING, "ForceShutdown": cls.STOPPING}
        if raw in aliases:
            return aliases[raw]
        for member in cls:
            if member.value == raw:
                return member
        return cls.UNKNOWN

    @property
    def transitional(self) -> bool:
        return self in {
            HostState.STARTING,
            HostState.SAVING,
            HostState.PAUSING,
            HostState.RESUMING,
            HostState.STOPPING,
            HostState.RESET,
        }


class ReleasePolicy(StrEnum):
    SAVE = "save"
    RESET = "reset"
    DESTROY = "destroy"


class AgentStatus(StrEnum):
    PENDING = "pending"
    SCHEDULED = "scheduled"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self not in ACTIVE_AGENT_STATUSES


# An agent in one of these is still to run, or running: the one spelling of "active".
ACTIVE_AGENT_STATUSES = frozenset({AgentStatus.PENDING, AgentStatus.SCHEDULED, AgentStatus.RUNNING})


# A VM acquired over HTTP with no lease is held until released; its holder starts with this,
# so that every view can say so.
UNLEASED_PREFIX = "nolease-"


def holder_label(holder: str | None) -> str:
    """How a VM's holder is shown: '-', 'held', or 'held, no lease'."""
    if not holder:
        return "-"
    return "held, no lease" if holder.startswith(UNLEASED_PREFIX) else "held"

"""Errors the engine raises. Each carries the CLI exit code it maps to.

Exit codes: 0 done, 1 the operation failed, 2 bad input (nothing was changed).
"""

from __future__ import annotations


class HvkubeError(Exception):
    """Base of every error the engine raises on purpose."""

    exit_code = 1
    code = "error"

    def __init__(self, message: str, *, detail: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail

    def __str__(self) -> str:
        return self.message


class InvalidInput(HvkubeError):
    """The caller asked for something malformed; nothing was changed."""

    exit_code = 2
    code = "invalid_input"


class NotFound(HvkubeError):
    """A named template, pool, VM or agent does not exist."""

    exit_code = 2
    code = "not_found"


class AlreadyExists(HvkubeError):
    exit_code = 2
    code = "already_exists"


class Conflict(HvkubeError):
    """The object exists but is in a state that forbids the operation (a guard)."""

    exit_code = 1
    code = "conflict"


class ForeignVM(Conflict):
    """A VM or disk on the host carries one of our names but was not made by this store:
    hvkube never stops, resets or deletes it."""

    code = "foreign_vm"


class NotHeld(HvkubeError):
    """The caller may drive only the VMs its own lease holds; nothing was sent."""

    exit_code = 2
    code = "not_held"


class BackendMismatch(HvkubeError):
    """The store was made with another backend; opening it with this one would misread
    every VM."""

    exit_code = 2
    code = "backend_mismatch"


class StoreUnavailable(HvkubeError):
    """The store's database server could not be reached or refused us; nothing was written."""

    exit_code = 1
    code = "store_unavailable"


class StoreRefused(StoreUnavailable):
    """The database server answered and refused the URL's database, user or password: the
    URL is wrong, not the server down; nothing was written."""

    exit_code = 2
    code = "store_refused"


class ReadOnlyMode(HvkubeError):
    exit_code = 2
    code = "read_only"


class NotAcquired(Conflict):
    """Release of a VM that nobody holds: the caller's mistake, and nothing was changed
    (exit code 2, as for an unknown VM; the HTTP API still answers it as a conflict)."""

    exit_code = 2


class Interrupted(HvkubeError):
    """The operator stopped the command (Ctrl-C or SIGTERM) before this step began."""

    exit_code = 130
    code = "interrupted"


class NoVMAvailable(HvkubeError):
    """No VM of the pool could be claimed within the wait."""

    exit_code = 1
    code = "no_vm_available"


class CapacityExceeded(HvkubeError):
    """Host memory or the pool's per-host maximum does not allow the request."""

    exit_code = 1
    code = "capacity_exceeded"


class BackendError(HvkubeError):
    """A hypervisor operation failed. `raw` keeps the backend's own record."""

    code = "backend_error"

    def __init__(
        self,
        message: str,
        *,
        vm: str | None = None,
        operation: str | None = None,
        raw: str | None = None,
    ) -> None:
        super().__init__(message, detail=raw)
        self.vm = vm
        self.operation = operation
        self.raw = raw


class VMNotFoundInHost(BackendError):
    code = "vm_not_found"


class CheckpointNotFound(BackendError):
    """The VM is there but has no checkpoint of that name: about the checkpoint, never a
    reason to mark the VM missing."""

    code = "checkpoint_not_found"


class HostObjectExists(BackendError):
    """The host already has a VM or file where hvkube meant to create one."""

    code = "already_exists"


class VMBroken(BackendError):
    """The VM itself cannot start (its firmware or configuration is damaged): not a saved
    state problem, so a checkpoint restore will not help."""

    code = "vm_broken"


class InvalidVMState(BackendError):
    """The operation is not allowed in the VM's current state (Hyper-V 32775)."""

    code = "invalid_state"


class OutOfMemory(BackendError):
    code = "out_of_memory"


class PermissionDenied(BackendError):
    code = "permission_denied"


class FileInUse(BackendError):
    code = "file_in_use"


class OperationTimeout(BackendError):
    code = "timeout"


class SavedStateCorrupt(BackendError):
    """Resuming from the saved state failed because the state cannot be used."""

    code = "saved_state_corrupt"


class Unsupported(BackendError):
    """The backend declares it does not have this capability."""

    code = "unsupported"

"""The VM state machine: every change to a VM's row goes through here, with its event.

Intent before action (design invariant 2): `begin` records the transitional state and the
process doing it with one conditional UPDATE (a compare-and-swap on the row), the caller acts
on the host, then `finish`, `fail` or `recover` records the outcome. `correct` brings a row in
line with what the host shows when nobody is working on it. Every lifecycle step is timed by
`step` and leaves an event (invariant 6). The engine, provisioning, reconcile and the
controller all use this one module; none of them writes a VM's state itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

from core.errors import (
    BackendError,
    Conflict,
    HvkubeError,
    NotFound,
    ReadOnlyMode,
    VMNotFoundInHost,
)
from core.models import READY_TIERS, VM, HostState, HostVM, Template, VMState
from core.names import check_name
from core.owner import process_owner
from core.store import Store, StoreError, StoreInterrupted, utcnow

_TRANSITIONAL = tuple(sorted(s.value for s in VMState if s.transitional))
_READY = tuple(s.value for s in READY_TIERS)
_HOST_TO_STORE = {
    HostState.OFF: VMState.OFF,
    HostState.RUNNING: VMState.RUNNING,
    HostState.SAVED: VMState.SAVED,
    HostState.PAUSED: VMState.PAUSED,
}


def state_from_host(host: HostVM) -> VMState | None:
    """The store state a settled host state stands for; None for a transitional or unknown
    one (mapped by name, never final)."""
    return _HOST_TO_STORE.get(host.state)


class Ledger:
    """Records of VM changes in one store. `host_of` tells what the host shows for a VM (by
    its recorded id), so that a failure can keep the host's raw state."""

    def __init__(
        self,
        store: Store,
        readonly: bool,
        host_of: Callable[[VM], HostVM | None],
        owner: str | None = None,
    ) -> None:
        self.store = store
        self.readonly = readonly
        self.host_of = host_of
        # The process recorded as doing each step (core.owner.process_owner of its host).
        self.owner = owner or process_owner()

    # -- read-only mode and events ---------------------------------------------------------

    def guard(self, what: str) -> None:
        """Refuse any change in read-only mode, before anything happens."""
        if self.readonly:
            raise ReadOnlyMode(f"read-only mode: refusing to {what}; run without --readonly")

    def record_event(
        self,
        kind: str,
        vm: str | None,
        pool: str | None,
        started: float,
        ok: bool = True,
        error: str | None = None,
    ) -> None:
        self.guard("record an event")
        duration_ms = (time.perf_counter() - started) * 1000.0
        self.store.insert_event(kind, vm, pool, duration_ms, ok, error)

    @contextmanager
    def step(self, kind: str, vm: str | None, pool: str | None) -> Iterator[Step]:
        """Time a lifecycle step and leave an event whatever happens: written at the end of
        the block, or with the VM's new state when the block ends in `Step.finish`."""
        step = Step(self, kind, vm, pool)
        try:
            yield step
        except BaseException as exc:
            message = str(exc) if isinstance(exc, Exception) else type(exc).__name__
            with suppress(StoreError, ReadOnlyMode):
                self.record_event(kind, vm, pool, step.started, ok=False, error=message[:2000])
            raise
        if not step.recorded:
            self.record_event(kind, vm, pool, step.started)

    # -- the state machine -----------------------------------------------------------------

    def load(self, name: str) -> VM:
        check_name(name, "VM name")
        found = self.store.records.vm(name)
        if found is None:
            raise NotFound(f"no VM named {name!r}; see 'hvkube vm list'")
        return found

    def begin(
        self,
        name: str,
        doing: VMState,
        allowed: set[VMState] | None = None,
        holder: str | None = None,
        op: str | None = None,
        known: VM | None = None,
        idle_only: bool = False,
    ) -> VM:
        """Record the intent (transitional state and owner) with one conditional UPDATE.
        Returns the VM as it was.

        `idle_only`: only while nobody holds the VM (the controller's tier moves and
        removals must never touch a VM an agent has just claimed)."""
        if self.readonly:
            self.guard(f"change VM {name!r}")
        vm = known or self.load(name)
        changed = self.store.swaps.vm(
            name,
            {
                "state": doing.value,
                "op_owner": self.owner,
                "op_kind": op or doing.value,
                "op_started_at": utcnow(),
                "error": None,
            },
            not_in=_TRANSITIONAL,
            states=None if allowed is None else sorted(s.value for s in allowed),
            holder=holder,
            idle_only=idle_only,
        )
        if not changed:
            now = self.load(name)
            if idle_only and now.held:
                raise Conflict(f"VM {name!r} is held by {now.holder}; leaving it alone")
            if now.state.transitional:
                raise Conflict(f"VM {name!r} is busy ({now.state.value}); try again shortly")
            allowed_text = ", ".join(sorted(s.value for s in allowed or set()))
            raise Conflict(f"VM {name!r} is {now.state.value}; this needs it to be {allowed_text}")
        return vm

    def claim(
        self,
        pool: str,
        holder: str,
        agent_id: int | None,
        hosts: tuple[str, ...] | None = None,
        prefer: str | None = None,
    ) -> tuple[VM, Template] | None:
        """One atomic claim (invariant 1): hot first, then warm, then cold (on host `prefer`
        first among equals), on `hosts` (default every host that is neither down nor
        draining), one conditional UPDATE. Returns the VM as it was and its template, or
        None when none is free."""
        self.guard("acquire a VM")
        values = {
            "holder": holder,
            "agent_id": agent_id,
            "state": VMState.RESUMING.value,
            "op_owner": self.owner,
            "op_kind": "acquire",
            "op_started_at": utcnow(),
        }
        try:
            claimed = self.store.swaps.claim(pool, _READY, values, hosts=hosts, prefer=prefer)
        except StoreInterrupted as exc:
            if not exc.maybe_done:
                raise
            # The connection broke during the claim: the server may have made it. The
            # holder is this claim's own: a VM it holds was taken by it, else none was.
            claimed = self.store.swaps.claimed_by(holder)
            if claimed is None:
                claimed = self.store.swaps.claim(pool, _READY, values, hosts=hosts, prefer=prefer)
        if claimed is None:
            return None
        was = claimed["was"]
        if was is None:  # recovered after a lost connection: start from what the host shows
            host = None
            with suppress(HvkubeError):
                host = self.host_of(self.load(claimed["name"]))
            found = state_from_host(host) if host is not None else None
            was = (found or VMState.SAVED).value
        vm = VM(
            name=claimed["name"],
            template=claimed["template"],
            pool=pool,
            state=VMState(was),
            rdp_port=claimed["rdp_port"],
            holder=holder,
            agent_id=agent_id,
            host_id=claimed["host_id"],
            host=claimed["host"],
        )
        if "t_name" in claimed:
            return vm, self.store.template_from(claimed)
        template = self.store.catalog.template(vm.template)
        assert template is not None  # a VM's template cannot go while the VM is there
        return vm, template

    def finish(
        self,
        name: str,
        state: VMState,
        event: tuple[str, str | None, float] | None = None,
        **fields: Any,
    ) -> None:
        """The step is over: the VM is in `state`, and no process is working on it. With
        `event` (kind, pool, duration ms), the step's successful event is written with it."""
        fields.setdefault("op_owner", None)
        fields.setdefault("op_kind", None)
        fields.setdefault("op_started_at", None)
        values = {"state": state.value, **fields}
        if event is None:
            self.store.update_vm(name, values)
        else:
            self.guard("record an event")
            self.store.update_vm_with_event(name, values, event)

    def fail(self, name: str, exc: BaseException, *, keep_holder: bool = False) -> None:
        """Record a failed step: the VM goes to ERROR (or MISSING) with the message."""
        state = VMState.MISSING if isinstance(exc, VMNotFoundInHost) else VMState.ERROR
        fields: dict[str, Any] = {"error": str(exc)[:2000]}
        if not keep_holder:
            fields.update(holder=None, agent_id=None)
        host = None
        with suppress(HvkubeError):
            host = self.host_of(self.load(name))
        if host is not None:
            fields["raw_state"] = host.raw_state
        self.finish(name, state, **fields)

    def recover(self, name: str, before: VMState, exc: HvkubeError) -> None:
        """After a failed backend call: go back to what the host says, or ERROR."""
        try:
            host = self.host_of(self.load(name))
        except HvkubeError:
            host = None
        mapped = state_from_host(host) if host is not None else None
        if isinstance(exc, BackendError) and mapped is not None and mapped == before:
            # Nothing changed on the host (an invalid-state refusal, say): keep the VM.
            self.finish(name, before, error=str(exc)[:2000])
        else:
            self.fail(name, exc, keep_holder=True)

    def correct(
        self,
        vm: VM,
        state: VMState,
        why: str,
        *,
        idle_only: bool = False,
        holder: str | None = None,
        **fields: Any,
    ) -> bool:
        """The host shows `vm` otherwise than the store does and nobody is working on it:
        record `state` (with an event saying `why`), only if the row has not moved since `vm`
        was read. Returns whether it was recorded."""
        self.guard(f"correct VM {vm.name!r}")
        started = time.perf_counter()
        changed = self.store.swaps.vm(
            vm.name,
            {"state": state.value, **fields},
            states=(vm.state.value,),
            holder=holder,
            idle_only=idle_only,
        )
        if changed:
            # An event for every correction; one that takes a VM out of use says why.
            lost = state in {VMState.ERROR, VMState.MISSING}
            why = f"{vm.state.value} -> {state.value}: {why}"
            self.record_event("host_sync", vm.name, vm.pool, started, ok=not lost, error=why[:2000])
        return changed

    def note(self, name: str, **fields: Any) -> None:
        """Facts about a VM learned along the way (its disk, its hypervisor id, a new IP
        address, why it was recovered): never its state, which only the steps above change."""
        if "state" in fields:
            raise ValueError("a VM's state changes through begin/finish/fail/correct only")
        self.guard(f"change VM {name!r}")
        self.store.update_vm(name, fields)

    def forget(self, name: str) -> None:
        """The VM is gone from the host (or never made it there): drop its row."""
        self.guard(f"drop VM {name!r}")
        self.store.delete_vm(name)

    def insert_provisioning(self, rows: list[dict[str, Any]]) -> None:
        """Intent first: the VMs about to be built are in the store as PROVISIONING, owned by
        this process, in one transaction."""
        self.guard("provision VMs")
        owner = self.owner
        with self.store.write():
            for host in sorted({row["host"] for row in rows if row.get("host")}):
                self.store.hosts.ensure(host, rows[0].get("backend"))
            for row in rows:
                self.store.insert_vm(
                    {
                        **row,
                        "state": VMState.PROVISIONING.value,
                        "op_owner": owner,
                        "op_kind": "provision",
                        "op_started_at": utcnow(),
                    }
                )


class Step:
    """A lifecycle step being timed (Ledger.step). Its time runs from the start of the
    block to `stop()`, or to its end."""

    def __init__(self, ledger: Ledger, kind: str, vm: str | None, pool: str | None) -> None:
        self.ledger = ledger
        self.kind = kind
        self.vm = vm
        self.pool = pool
        self.started = time.perf_counter()
        self.ended: float | None = None
        self.recorded = False

    def stop(self) -> float:
        """The step's time ends here (what the block does next is not part of it): its
        milliseconds."""
        self.ended = time.perf_counter()
        return (self.ended - self.started) * 1000.0

    def finish(self, state: VMState, **fields: Any) -> None:
        """The last thing in the block: Ledger.finish of the step's VM, with the step's
        event written in the same statement."""
        assert self.vm is not None
        ended = self.ended if self.ended is not None else time.perf_counter()
        duration_ms = (ended - self.started) * 1000.0
        self.ledger.finish(self.vm, state, event=(self.kind, self.pool, duration_ms), **fields)
        self.recorded = True

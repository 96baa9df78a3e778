"""What the API's routes share: the engine, leases, waiting acquires, scopes, metrics.

Engine calls block (database, hypervisor), so each runs in the worker-thread pool (`run`);
a waiting acquire holds no thread while it waits: it retries a non-blocking claim between
asynchronous sleeps, and is woken early when a VM of its pool is released through this
server.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn, TypeVar

import anyio.to_thread

from core.api.errors import ClientGone, OutOfScope
from core.api.leases import ApiLeases
from core.api.metrics import ApiMetrics
from core.api.schemas import Lease, VMOut
from core.engine import Engine
from core.errors import NoVMAvailable
from core.models import VM, AcquiredVM, ReleasePolicy, Template, VMState
from core.tokens import ADMIN, Principal

T = TypeVar("T")
# A waiting acquire is woken at once by a release through this server; it also polls,
# for VMs freed by other processes, first after POLL_FIRST_S, backing off to POLL_MAX_S.
POLL_FIRST_S = 0.25
POLL_MAX_S = 2.0


class Waiters:
    """Acquires asleep on a pool, woken first come first served, one per freed VM.

    Everything here runs on the event loop (no locks needed). A VM freed while nobody
    sleeps is kept as a `spare` wake-up, so a waiter that failed its claim just before
    the release tries again at once instead of sleeping through it.
    """

    SPARE_LIMIT = 64

    def __init__(self) -> None:
        self._sleeping: dict[str, deque[asyncio.Future[None]]] = {}
        self._spare: dict[str, int] = {}

    def has_sleepers(self, pool: str) -> bool:
        return bool(self._sleeping.get(pool))

    def take_spare(self, pool: str) -> bool:
        if self._spare.get(pool, 0) > 0:
            self._spare[pool] -= 1
            return True
        return False

    def sleep(self, pool: str) -> asyncio.Future[None]:
        ticket: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sleeping.setdefault(pool, deque()).append(ticket)
        return ticket

    def leave(self, pool: str, ticket: asyncio.Future[None], woke: bool) -> None:
        queue = self._sleeping.get(pool)
        if queue is not None:
            with contextlib.suppress(ValueError):
                queue.remove(ticket)
            if not queue:
                del self._sleeping[pool]
        if ticket.done() and not woke:
            self.notify(pool)  # woken but gone (cancelled): pass it on
        ticket.cancel()

    def notify(self, pool: str | None) -> None:
        if pool is None:
            return
        queue = self._sleeping.get(pool)
        while queue:
            ticket = queue.popleft()
            if not ticket.done():
                ticket.set_result(None)
                return
        self._spare[pool] = min(self.SPARE_LIMIT, self._spare.get(pool, 0) + 1)

    def sleepers(self) -> int:
        return sum(len(q) for q in self._sleeping.values())


@dataclass
class ApiState:
    engine: Engine
    leases: ApiLeases
    lease_seconds: float
    allow_exec: bool
    require_lease: bool = False
    waiters: Waiters = field(default_factory=Waiters)
    metrics: ApiMetrics = field(default_factory=ApiMetrics)

    def try_acquire(
        self,
        pool: str,
        lease_id: str,
        first: bool,
        expiry_s: float,
        seconds: float,
        claim: bool = True,
        token: str | None = None,
    ) -> tuple[AcquiredVM, Lease] | None:
        """One non-blocking claim (the first try also records the lease), and the lease bound
        to the VM claimed; None when no VM is free. Runs in a worker thread."""
        if first:
            self.leases.open(lease_id, pool, expiry_s, token)
        if not claim:
            return None
        try:
            vm = self.engine.acquire(pool, 0.0, lease_id)
        except NoVMAvailable:
            return None
        return vm, self.leases.bind(lease_id, vm.name, pool, seconds, token)

    async def acquire_waiting(
        self,
        pool: str,
        lease_id: str,
        wait_s: float,
        expiry_s: float,
        seconds: float,
        gone: Callable[[], Awaitable[bool]] | None = None,
        token: str | None = None,
    ) -> tuple[AcquiredVM, Lease]:
        """Claim without blocking; between tries, sleep (no thread held) until a release
        through this server wakes us, or a poll is due (for VMs freed by other processes).
        A newcomer queues behind waiters already asleep, so the longest waiter is served
        first. Stops when the wait is over, or when `gone` says the client disconnected."""
        deadline = time.monotonic() + wait_s
        delay = POLL_FIRST_S
        claim = not (wait_s > 0 and self.waiters.has_sleepers(pool))
        got = await run(self.try_acquire, pool, lease_id, True, expiry_s, seconds, claim, token)
        if got is not None:
            self.waiters.take_spare(pool)  # a newcomer took a VM freed while nobody slept
        while got is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                await run(self.no_vm, pool)
            if gone is not None and await gone():
                raise ClientGone("the client disconnected while waiting for a VM")
            if not self.waiters.take_spare(pool):
                ticket = self.waiters.sleep(pool)
                woke = False
                try:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(asyncio.shield(ticket), min(delay, remaining))
                        woke = True
                finally:
                    self.waiters.leave(pool, ticket, woke)
                delay = POLL_FIRST_S if woke else min(POLL_MAX_S, delay * 1.5)
            got = await run(self.try_acquire, pool, lease_id, False, expiry_s, seconds, True, token)
            if got is not None and gone is not None and await gone():
                # Claimed for a client that left meanwhile: the caller abandons the lease,
                # which gives the VM back by the pool's policy.
                raise ClientGone("the client disconnected while its VM was being resumed")
        return got

    def release(
        self,
        name: str,
        policy: ReleasePolicy | None,
        lease_id: str | None,
        who: Principal = ADMIN,
    ) -> tuple[VMOut | None, str | None]:
        """Give back a VM (held by `lease_id` when given; an agent token's own only). Blocks:
        call from a worker thread. Returns the VM after release (None: destroyed), its pool."""
        vm = self.own_vm(who, name)
        if lease_id is not None:
            self.own_lease(who, lease_id)
            self.leases.check_release(lease_id, name, vm.holder)
        holder = lease_id or vm.holder
        after = self.engine.release(name, policy=policy, holder=holder)
        if holder is not None:
            self.leases.drop(holder)
        return (self.vm_out(after) if after is not None else None), vm.pool

    def vm_changed(self, pool: str | None) -> None:
        """A VM of `pool` may have become free: wake one waiting acquire (event loop only)."""
        self.waiters.notify(pool)

    def no_vm(self, pool: str) -> NoReturn:
        counts = self.engine.pool_counts(pool)
        raise NoVMAvailable(
            f"no free VM in pool {pool!r} ({counts.get('held', 0)} held, "
            f"{sum(v for k, v in counts.items() if k != 'held')} in all); "
            "wait longer (wait_seconds), or scale the pool"
        )

    # -- scopes (worker threads) ---------------------------------------------------------------

    def owns(self, who: Principal, vm: VM) -> bool:
        """An admin may act on every VM; an agent token on the VMs its leases hold."""
        if who.admin:
            return True
        return vm.holder is not None and self.leases.owner(vm.holder) == who.token_id

    def own_vm(self, who: Principal, name: str) -> VM:
        vm = self.engine.get_vm(name)
        if not self.owns(who, vm):
            raise OutOfScope(
                f"VM {name!r} is not held by a lease of this token; an agent token may act "
                "only on the VMs it acquired"
            )
        return vm

    def own_lease(self, who: Principal, lease_id: str) -> None:
        if not who.admin and self.leases.owner(lease_id) != who.token_id:
            raise OutOfScope(f"lease {lease_id[:64]!r} was not made with this token")

    def vm_out(self, vm: VM, templates: dict[str, Template] | None = None) -> VMOut:
        tpl = templates.get(vm.template) if templates is not None else None
        tpl = tpl or self.engine.get_template(vm.template)
        pattern = tpl.mcp_endpoint
        mcp = pattern.replace("{ip}", vm.ip) if pattern and vm.ip else None
        return VMOut(**vm.model_dump(), mcp_endpoint=mcp, cpu_count=tpl.cpus, gpu_enabled=tpl.gpu)

    def list_vms(self, who: Principal, pool: str | None, state: VMState | None) -> list[VMOut]:
        templates = {t.name: t for t in self.engine.list_templates()}
        return [
            self.vm_out(vm, templates)
            for vm in self.engine.list_vms(pool=pool, state=state)
            if self.owns(who, vm)
        ]

    def get_vm(self, who: Principal, name: str) -> VMOut:
        return self.vm_out(self.own_vm(who, name))


async def run(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a blocking engine call in the worker-thread pool."""
    return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))

"""The engine: templates, pools and VMs through their whole lifecycle.

Invariants kept here (see docs/design.md):
- claiming a VM is one conditional UPDATE, never find-then-update;
- before a backend call that changes a VM, the store records the
  transitional state and which process is doing it (`op_owner`);
- every lifecycle step writes an Event.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from typing import Any

from core.agent_exec import check_env_names
from core.agents import AgentQueue
from core.backends.base import CLEAN_CHECKPOINT, Backend, Capability, VMRef, feature
from core.budget import MemoryBudget
from core.errors import (
    AlreadyExists,
    BackendMismatch,
    CheckpointNotFound,
    Conflict,
    HvkubeError,
    InvalidInput,
    InvalidVMState,
    NotAcquired,
    NotFound,
    NoVMAvailable,
    SavedStateCorrupt,
    VMNotFoundInHost,
)
from core.fleet import down_hosts, host_summary
from core.ledger import Ledger, state_from_host
from core.models import (
    VM,
    AcquiredVM,
    Agent,
    AgentResult,
    AgentStatus,
    Event,
    Host,
    HostState,
    HostVM,
    ReadinessProbe,
    ReleasePolicy,
    Template,
    VMPool,
    VMState,
)
from core.names import (
    POOL_NAME_MAX,
    check_host_name,
    check_json_object,
    check_name,
    check_path_text,
    check_positive,
    tier_problem,
)
from core.owner import owner_alive, owner_host, process_owner
from core.probes import poll, wait_ready
from core.provision import ProvisionReport, provision_pool, scale_pool
from core.reconcile import reconcile
from core.reported import guest_ip
from core.settings import Settings
from core.store import Store, utcnow

# A lifecycle step in progress: (vm name, step, detail)
ProgressFn = Callable[[str, str, str], None]


class Engine:
    """Everything hvkube does, callable from scripts, the CLI and the dashboard."""

    def __init__(self, store: Store, backend: Backend, settings: Settings) -> None:
        self.store = store
        self.backend = backend
        self.settings = settings
        self.store_id = store.store_id
        # The host this engine acts for: its backend reaches this host's VMs.
        self.host = check_host_name(settings.host_name())
        self.owner = process_owner(self.host)
        self.ledger = Ledger(store, settings.readonly, self.host_vm, self.owner)
        self.agents = AgentQueue(store, self.ledger.guard)
        self._siblings: dict[str, Engine] = {}
        self._check_backend(settings.backend_switch)

    @property
    def readonly(self) -> bool:
        """Read-only mode: the ledger refuses every change."""
        return self.ledger.readonly

    @readonly.setter
    def readonly(self, value: bool) -> None:
        self.ledger.readonly = value

    def _check_backend(self, switch: bool) -> None:
        """A store belongs to the backend it was made with: read with another one, every VM
        would look missing (and be rebuilt) or fail."""
        made_with = self.store.meta("backend")
        if made_with == self.backend.name:
            return
        if made_with is not None and not switch:
            raise BackendMismatch(
                f"the store {self.store.location} was made with the {made_with!r} backend, not "
                f"{self.backend.name!r}; use --backend {made_with}, or add --backend-switch "
                "to move it to this backend on purpose"
            )
        if not self.readonly:
            self.store.set_meta("backend", self.backend.name)

    # -- plumbing ------------------------------------------------------------------------------

    def close(self) -> None:
        for sibling in self._siblings.values():
            sibling.backend.close()
        self.backend.close()
        self.store.close()

    # -- hosts ---------------------------------------------------------------------------------

    def reaches_other_hosts(self) -> bool:
        """Can this engine act on another host's VMs (the simulated hosts of one machine)?"""
        return feature(self.backend, Capability.OTHER_HOSTS) is not None

    def on_host(self, host: str | None) -> Engine:
        """The engine acting for `host` (this one for its own host). Another host's VMs are
        reached only through a backend that can reach that host; otherwise it is refused."""
        if host is None or host == self.host:
            return self
        sibling = self._siblings.get(host)
        if sibling is not None:
            return sibling
        reach = feature(self.backend, Capability.OTHER_HOSTS)
        if reach is None:
            raise Conflict(
                f"that VM is on host {host!r}; hvkube here acts for host {self.host!r} only: "
                f"run the command on {host!r}"
            )
        sibling = Engine(self.store, reach.for_host(host), self.settings.replace(host=host))
        sibling.readonly = self.readonly
        self._siblings[host] = sibling
        return sibling

    def _home(self, name: str) -> Engine:
        """The engine acting for the host of VM `name` (this one when it is ours)."""
        check_name(name, "VM name")
        host = self.store.records.vm_host(name)
        return self if host is None else self.on_host(host)

    def owner_alive(self, owner: str | None) -> bool:
        """Is the process `owner` still at work? This host's processes are judged by pid;
        another host's by the store: a host that is down has no live processes."""
        host = owner_host(owner) if owner else None
        if host is None or host == self.host:
            return owner_alive(owner, self.host)
        return host not in down_hosts(self.store)

    def list_hosts(self) -> list[Host]:
        """Every host of the store: up, down or idle, heartbeat age, memory, VMs by state."""
        return host_summary(self.store)

    def get_host(self, name: str) -> Host:
        check_host_name(name)
        for host in self.list_hosts():
            if host.name == name:
                return host
        raise NotFound(f"no host named {name!r}; see 'hvkube host list'")

    def drain_host(self, name: str, undo: bool = False) -> Host:
        """No new VMs on `name`; its controller removes idle ones, held ones finish first.
        Refused when a pool with held VMs on it would be left without any host."""
        host = self.get_host(name)
        self.ledger.guard("drain a host")
        if not undo:
            others = [h.name for h in self.list_hosts() if h.name != name and not h.draining]
            for pool in self.list_pools():
                left = [h for h in others if pool.hosts is None or h in pool.hosts]
                if not left and self.store.hosts.held_on(name, pool.name):
                    raise InvalidInput(
                        f"host {name!r} is the last host of pool {pool.name!r}, which has VMs "
                        f"in use on it; add a host to the pool (pool edit --hosts) or release "
                        "them first"
                    )
        self.store.hosts.set_draining(name, not undo)
        return host.model_copy(update={"draining": not undo})

    def remove_host(self, name: str) -> None:
        """Forget a host that has no VMs left in the store (drain it first)."""
        host = self.get_host(name)
        self.ledger.guard("remove a host")
        if host.status == "up":
            raise Conflict(
                f"host {name!r} is up (its controller heartbeats); stop 'hvkube run' there first"
            )
        with self.store.write():
            count = self.store.hosts.vm_count(name)
            if count:
                raise Conflict(
                    f"host {name!r} still has {count} VM(s) in the store; drain it "
                    f"('hvkube host drain {name}') and wait for them to go"
                )
            users = [p.name for p in self.list_pools() if p.hosts and name in p.hosts]
            if users:
                raise Conflict(
                    f"pool(s) {', '.join(users)} name host {name!r}; change their --hosts first"
                )
            self.store.hosts.delete(name)

    def _check_pool_hosts(self, hosts: list[str] | None) -> list[str] | None:
        """A pool's hosts must exist (a typo would leave the pool with nowhere to live)."""
        if hosts is None:
            return None
        if not hosts:
            raise InvalidInput("--hosts is empty; name at least one host, or leave it out")
        known = {*self.store.hosts.names(), self.host}
        for name in hosts:
            check_host_name(name)
            if name not in known:
                raise InvalidInput(
                    f"host {name!r} is not a host of this store (known: "
                    f"{', '.join(sorted(known)) or 'none yet'}); start 'hvkube run --host "
                    f"{name}' there first, or check the name"
                )
        if self.host in hosts and not self.readonly:
            self.store.hosts.ensure(self.host, self.backend.name)
        return sorted(set(hosts))

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- templates -----------------------------------------------------------------------------

    def create_template(
        self,
        name: str,
        disk_path: str,
        memory_mb: int = 4096,
        cpus: int = 2,
        gpu: bool = False,
        software: list[str] | None = None,
        rdp_port: int = 3389,
        mcp_endpoint: str | None = None,
        probe: ReadinessProbe | None = None,
    ) -> Template:
        check_name(name, "template name")
        check_path_text(disk_path, "--vhdx")
        check_positive(memory_mb, "--memory-mb", maximum=24 * 1024 * 1024)
        if memory_mb < 512:
            raise InvalidInput(f"--memory-mb must be at least 512 for Windows, got {memory_mb}")
        check_positive(cpus, "--cpus", maximum=240)
        check_positive(rdp_port, "--rdp-port", maximum=65535)
        if mcp_endpoint is not None and "{ip}" not in mcp_endpoint:
            raise InvalidInput(
                f"--mcp-endpoint {mcp_endpoint!r} has no {{ip}} placeholder; "
                "use a pattern such as http://{ip}:8080/mcp"
            )
        self.ledger.guard("create a template")
        probe = probe or ReadinessProbe()
        with self.store.write():
            self._check_unique("template", name)
            self.store.catalog.add_template(
                {
                    "name": name,
                    "disk_path": disk_path,
                    "memory_mb": memory_mb,
                    "cpus": cpus,
                    "gpu": gpu,
                    "software": list(software or []),
                    "rdp_port": rdp_port,
                    "mcp_endpoint": mcp_endpoint,
                    "probe": probe.model_dump(),
                }
            )
        return self.get_template(name)

    def get_template(self, name: str) -> Template:
        check_name(name, "template name")
        found = self.store.catalog.template(name)
        if found is None:
            raise NotFound(f"no template named {name!r}; see 'hvkube template list'")
        return found

    def list_templates(self) -> list[Template]:
        return self.store.catalog.templates()

    def delete_template(self, name: str) -> None:
        self.get_template(name)
        self.ledger.guard("delete a template")
        with self.store.write():
            pools, vms = self.store.catalog.template_users(name)
            if pools or vms:
                raise Conflict(
                    f"template {name!r} is used by pool(s) {', '.join(pools) or '-'} and {vms} "
                    "VM(s); delete those first"
                )
            self.store.catalog.delete_template(name)

    # -- pools ---------------------------------------------------------------------------------

    def _check_tiers(
        self, count: int, warm: int, hot: int, max_per_host: int | None, hosts: int | None = 1
    ) -> None:
        check_positive(count, "--count", allow_zero=True, maximum=1024)
        check_positive(warm, "--warm", allow_zero=True, maximum=1024)
        check_positive(hot, "--hot", allow_zero=True, maximum=1024)
        problem = tier_problem(count, warm, hot)
        if problem is not None:
            raise InvalidInput(problem)
        if max_per_host is not None:
            check_positive(max_per_host, "--max-per-host", maximum=1024)
            if hosts is not None and count > max_per_host * max(1, hosts):
                raise InvalidInput(
                    f"--count {count} is above --max-per-host {max_per_host} on {max(1, hosts)} "
                    "host(s)"
                )

    def create_pool(
        self,
        name: str,
        template: str,
        count: int,
        warm: int = 0,
        hot: int = 0,
        release: ReleasePolicy | str = ReleasePolicy.RESET,
        max_per_host: int | None = None,
        hosts: list[str] | None = None,
        exec_env: list[str] | None = None,
    ) -> VMPool:
        check_name(name, "pool name")
        exec_env = check_env_names(exec_env or [])
        if len(name) > POOL_NAME_MAX:
            raise InvalidInput(
                f"pool name {name!r} is over {POOL_NAME_MAX} characters (VM names add '-NNN')"
            )
        hosts = self._check_pool_hosts(hosts)
        self._check_tiers(count, warm, hot, max_per_host, self._host_count(hosts))
        policy = self._policy(release)
        tpl = self.get_template(template)
        self._check_gpu_pool(tpl, warm, policy)
        self.ledger.guard("create a pool")
        self._check_hot_memory(tpl, hot)
        with self.store.write():
            self._check_unique("pool", name)
            self.store.catalog.add_pool(
                {
                    "name": name,
                    "template": template,
                    "desired_count": count,
                    "warm_count": warm,
                    "hot_count": hot,
                    "max_per_host": max_per_host,
                    "release_policy": policy.value,
                    "hosts": hosts,
                    "exec_env": exec_env or None,
                }
            )
        return self.get_pool(name)

    @staticmethod
    def _check_gpu_pool(tpl: Template, warm: int, policy: ReleasePolicy) -> None:
        """A VM with a GPU partition can be neither saved nor checkpointed: its pool keeps VMs
        hot or cold, and a reset makes its differencing disk anew."""
        if tpl.gpu and (warm > 0 or policy is ReleasePolicy.SAVE):
            asked = f"--warm {warm}" if warm > 0 else "--release save"
            raise InvalidInput(
                f"template {tpl.name!r} has a GPU partition, and Hyper-V can neither save nor "
                f"checkpoint such a VM, so {asked} cannot work: a GPU pool keeps its VMs hot or "
                "cold (--hot, --count) and releases by reset (a new disk) or destroy"
            )

    def _check_unique(self, what: str, name: str) -> None:
        """Names are unique ignoring case: Hyper-V and NTFS would take 'web' and 'WEB' (and
        their VMs and disks) for one."""
        taken = self.store.name_taken(what, name)
        if taken is None:
            return
        if taken == name:
            raise AlreadyExists(f"{what} {name!r} already exists; pick another name")
        raise AlreadyExists(
            f"{what} {name!r} differs from {what} {taken!r} only in case, and Hyper-V and "
            "Windows file names ignore case; pick another name"
        )

    @staticmethod
    def _policy(release: ReleasePolicy | str) -> ReleasePolicy:
        try:
            return ReleasePolicy(release)
        except ValueError:
            raise InvalidInput(
                f"release policy {release!r} is not one of save, reset, destroy"
            ) from None

    def _check_hot_memory(self, tpl: Template, hot: int) -> None:
        if hot == 0:
            return
        self.memory_budget().check_hot(hot, tpl.memory_mb)

    @staticmethod
    def _host_count(hosts: list[str] | None) -> int | None:
        """How many hosts a pool may use: its named ones; None when every host (hosts may
        join later, so no cap follows from today's number)."""
        return None if hosts is None else len(hosts)

    def get_pool(self, name: str) -> VMPool:
        check_name(name, "pool name")
        found = self.store.catalog.pool(name)
        if found is None:
            raise NotFound(f"no pool named {name!r}; see 'hvkube pool list'")
        return found

    def list_pools(self) -> list[VMPool]:
        return self.store.catalog.pools()

    def update_pool(
        self,
        name: str,
        count: int | None = None,
        warm: int | None = None,
        hot: int | None = None,
        release: ReleasePolicy | str | None = None,
        hosts: list[str] | None = None,
        all_hosts: bool = False,
        exec_env: list[str] | None = None,
    ) -> VMPool:
        """Change what is given; `exec_env` replaces the pool's names ([] clears them)."""
        pool = self.get_pool(name)
        new_env = pool.exec_env if exec_env is None else check_env_names(exec_env)
        count = pool.desired_count if count is None else count
        warm = pool.warm_count if warm is None else warm
        hot = pool.hot_count if hot is None else hot
        new_hosts = None if all_hosts else (self._check_pool_hosts(hosts) or pool.hosts)
        self._check_tiers(count, warm, hot, pool.max_per_host, self._host_count(new_hosts))
        policy = pool.release_policy if release is None else self._policy(release)
        self._check_gpu_pool(self.get_template(pool.template), warm, policy)
        self.ledger.guard("change a pool")
        self._check_hot_memory(self.get_template(pool.template), hot)
        self.store.catalog.update_pool(
            name,
            {
                "desired_count": count,
                "warm_count": warm,
                "hot_count": hot,
                "release_policy": policy.value,
                "hosts": new_hosts,
                "exec_env": new_env or None,
            },
        )
        return self.get_pool(name)

    def pool_counts(self, name: str) -> dict[str, int]:
        """How many of the pool's VMs are in each state, plus 'held'."""
        return self.store.vm_state_counts(name)

    def delete_pool(self, name: str, with_vms: bool = False) -> int:
        self.get_pool(name)
        self.ledger.guard("delete a pool")
        vms = self.list_vms(pool=name)
        if vms and not with_vms:
            raise Conflict(
                f"pool {name!r} still has {len(vms)} VM(s); add --with-vms to delete them too"
            )
        held = [vm.name for vm in vms if vm.held]
        if held:
            raise Conflict(
                f"pool {name!r} has VM(s) in use: {', '.join(held[:5])}; release them first"
            )
        for vm in vms:
            self.delete_vm(vm.name)
        with self.store.write():
            active = self.store.catalog.active_agents(name)
            if active:
                raise Conflict(f"pool {name!r} has {active} unfinished agent(s); cancel them first")
            self.store.catalog.delete_pool(name)
        return len(vms)

    # -- VMs: reads ----------------------------------------------------------------------------

    def get_vm(self, name: str) -> VM:
        return self.ledger.load(name)

    def list_vms(
        self, pool: str | None = None, state: VMState | None = None, host: str | None = None
    ) -> list[VM]:
        if pool is not None:
            self.get_pool(pool)
        if host is not None:
            self.get_host(host)
        return self.store.records.vms(pool, state.value if state else None, host)

    def mcp_endpoint(self, vm: VM) -> str | None:
        if not vm.ip:
            return None
        pattern = self.store.catalog.template_field(vm.template, "mcp_endpoint")
        return str(pattern).replace("{ip}", vm.ip) if pattern else None

    def ref(self, vm: VM) -> VMRef:
        """How the backend addresses `vm`: by the hypervisor's id recorded when hvkube made it.
        A row without one (made before ids were recorded, or never built) is not acted on."""
        if not vm.host_id:
            raise Conflict(
                f"VM {vm.name!r} has no recorded hypervisor id, so hvkube cannot tell it from "
                "another VM of that name; run 'hvkube reconcile' to adopt or drop it"
            )
        return VMRef(vm.name, vm.host_id)

    def restore_clean(self, vm: VM) -> None:
        """Bring `vm` back to clean: restore its "clean" checkpoint (it ends Saved). A VM with
        a GPU partition takes no checkpoints: its differencing disk is made anew instead, and
        it ends Off."""
        self.ledger.guard("reset a VM")
        ref = self.ref(vm)
        tpl = self.get_template(vm.template)
        if not tpl.gpu:
            self.backend.restore_checkpoint(ref, CLEAN_CHECKPOINT)
            return
        if not vm.disk_path:  # only the disk hvkube recorded making is ever replaced
            raise Conflict(f"VM {vm.name!r} has no recorded disk to make anew")
        self.backend.stop(ref, force=True)
        self.backend.remove_disk(vm.disk_path)
        self.backend.create_differencing_disk(tpl.disk_path, vm.disk_path)

    def _refuse_gpu_save(self, vm: VM) -> None:
        if self.get_template(vm.template).gpu:
            raise InvalidInput(
                f"VM {vm.name!r} has a GPU partition, and Hyper-V cannot save such a VM; "
                "pause it, stop it, or release it with --reset or --destroy"
            )

    def host_vm(self, vm: VM) -> HostVM | None:
        """The host's view of `vm`, found by its id; None when the host has no such VM."""
        if not vm.host_id:
            return None
        return self.on_host(vm.host).backend.get_vm(VMRef(vm.name, vm.host_id))

    # -- VMs: state changes --------------------------------------------------------------------

    def _run(
        self,
        name: str,
        kind: str,
        doing: VMState,
        allowed: set[VMState],
        action: Callable[[VMRef], None],
        done: VMState | Callable[[], VMState],
        idle_only: bool = False,
        **done_fields: Any,
    ) -> VM:
        vm = self.ledger.begin(name, doing, allowed, idle_only=idle_only)
        with self.ledger.step(kind, name, vm.pool):
            try:
                action(self.ref(vm))
            except HvkubeError as exc:
                self.ledger.recover(name, vm.state, exc)
                raise
        final = done() if callable(done) else done
        self.ledger.finish(name, final, **done_fields)
        return self.get_vm(name)

    def resume_vm(self, name: str, *, idle_only: bool = False) -> VM:
        """Bring a VM to Running from whatever ready state it is in, with fallback."""
        home = self._home(name)
        if home is not self:
            return home.resume_vm(name, idle_only=idle_only)
        self.ledger.guard("resume a VM")
        vm = self.ledger.begin(
            name,
            VMState.RESUMING,
            {VMState.OFF, VMState.SAVED, VMState.PAUSED, VMState.ERROR},
            idle_only=idle_only,
        )
        try:
            self.bring_up(vm)
        except HvkubeError as exc:
            self.ledger.fail(name, exc, keep_holder=True)
            raise
        return self.get_vm(name)

    def save_vm(self, name: str, *, idle_only: bool = False) -> VM:
        home = self._home(name)
        if home is not self:
            return home.save_vm(name, idle_only=idle_only)
        self.ledger.guard("save a VM")
        self._refuse_gpu_save(self.get_vm(name))
        vm = self._run(
            name,
            "save",
            VMState.SAVING,
            {VMState.RUNNING, VMState.PAUSED},
            self.backend.save,
            VMState.SAVED,
            idle_only=idle_only,
        )
        return self._note_saved_state(vm)

    def _note_saved_state(self, vm: VM) -> VM:
        """Where the hypervisor keeps a Saved VM's memory (shown by `vm info`; its size is
        about the VM's memory)."""
        path = None
        with suppress(HvkubeError):
            path = self.backend.saved_state_path(self.ref(vm))
        self.ledger.note(vm.name, saved_state_path=path)
        return vm.model_copy(update={"saved_state_path": path})

    def pause_vm(self, name: str, *, idle_only: bool = False) -> VM:
        home = self._home(name)
        if home is not self:
            return home.pause_vm(name, idle_only=idle_only)
        self.ledger.guard("pause a VM")
        return self._run(
            name,
            "pause",
            VMState.PAUSING,
            {VMState.RUNNING},
            self.backend.pause,
            VMState.PAUSED,
            idle_only=idle_only,
        )

    def stop_vm(self, name: str, force: bool = False, *, idle_only: bool = False) -> VM:
        home = self._home(name)
        if home is not self:
            return home.stop_vm(name, force, idle_only=idle_only)
        self.ledger.guard("stop a VM")
        allowed = {VMState.RUNNING}
        if force:
            allowed |= {VMState.PAUSED, VMState.SAVED, VMState.ERROR, VMState.OFF}
        return self._run(
            name,
            "stop",
            VMState.STOPPING,
            allowed,
            lambda ref: self.backend.stop(ref, force=force),
            VMState.OFF,
            idle_only=idle_only,
            ip=None,
        )

    def reset_vm(self, name: str, *, idle_only: bool = False) -> VM:
        """Restore the "clean" checkpoint: the VM ends Saved, ready to resume."""
        home = self._home(name)
        if home is not self:
            return home.reset_vm(name, idle_only=idle_only)
        self.ledger.guard("reset a VM")
        vm = self.ledger.begin(
            name,
            VMState.RESETTING,
            {VMState.RUNNING, VMState.PAUSED, VMState.SAVED, VMState.OFF, VMState.ERROR},
            idle_only=idle_only,
        )
        with self.ledger.step("reset", name, vm.pool):
            try:
                self.restore_clean(vm)
                host = self.backend.get_vm(self.ref(vm))
            except HvkubeError as exc:
                self.ledger.fail(name, exc)
                raise
        final = state_from_host(host) if host else None
        self.ledger.finish(name, final or VMState.SAVED, holder=None, agent_id=None, error=None)
        return self.get_vm(name)

    def delete_vm(self, name: str, *, force: bool = False) -> None:
        vm = self.get_vm(name)
        if vm.host != self.host and vm.host is not None:
            self.on_host(vm.host).delete_vm(name, force=force)
            return
        self.ledger.guard("delete a VM")
        if vm.held and not force:
            raise Conflict(f"VM {name!r} is held by {vm.holder}; release it first")
        # Not forced: the VM must still be free when the intent is recorded.
        self.ledger.begin(name, VMState.DELETING, idle_only=not force)
        with self.ledger.step("delete", name, vm.pool):
            try:
                self.remove_from_host(vm)
            except HvkubeError as exc:
                self.ledger.fail(name, exc)
                raise
            self.ledger.forget(name)

    def remove_from_host(self, vm: VM) -> None:
        """Remove what hvkube made for `vm`: the VM with its recorded id, then the disk it
        created. A VM of that name with another id is someone else's and stays."""
        self.ledger.guard("remove a VM from the host")
        if vm.host_id and self.host_vm(vm) is not None:
            self.backend.remove(VMRef(vm.name, vm.host_id))
        # A row from before ids were recorded (no backend either) names a disk that its VM,
        # not found here by id, may still use: it stays.
        if vm.disk_path and vm.backend is not None:
            self.backend.remove_disk(vm.disk_path)

    def vm_ip(self, name: str, refresh: bool = True) -> str | None:
        vm = self.get_vm(name)
        if refresh and vm.host != self.host and vm.host is not None:
            return self.on_host(vm.host).vm_ip(name, refresh)
        if not refresh or self.readonly:
            return vm.ip
        ip = guest_ip(self.backend, self.ref(vm))
        if ip and ip != vm.ip:
            self.ledger.note(name, ip=ip)
        return ip or vm.ip

    def screenshot(self, name: str) -> bytes:
        vm = self.get_vm(name)
        if vm.host != self.host and vm.host is not None:
            return self.on_host(vm.host).screenshot(name)
        started = time.perf_counter()
        data = self.backend.screenshot(self.ref(vm))
        if not self.readonly:
            self.ledger.record_event("screenshot", name, self.get_vm(name).pool, started)
        return data

    # -- bringing a VM up ----------------------------------------------------------------------

    def bring_up(self, vm: VM, tpl: Template | None = None) -> tuple[float, str | None]:
        """Start `vm` (its row already says RESUMING) from `vm.state`, the state it was in
        before. Returns the milliseconds the resume took and the VM's IP address."""
        self.ledger.guard("resume a VM")
        name = vm.name
        started = time.perf_counter()
        tpl = tpl or self.get_template(vm.template)
        with self.ledger.step("resume", name, vm.pool):
            try:
                self._start_from(vm, vm.state, tpl)
            except InvalidVMState:
                # The store's idea of the VM was stale: act on what the host says.
                host = self.host_vm(vm)
                if host is None:
                    raise VMNotFoundInHost(
                        f"VM {name!r} is no longer on the host", vm=name
                    ) from None
                actual = state_from_host(host)
                if actual is None:
                    raise Conflict(
                        f"VM {name!r} is {host.raw_state} on the host; cannot resume it"
                    ) from None
                if actual is not VMState.RUNNING:
                    self._start_from(vm, actual, tpl)
        resume_ms = (time.perf_counter() - started) * 1000.0
        ip = self._refresh_ip(self.ref(vm))
        self.ledger.finish(
            name,
            VMState.RUNNING,
            ip=ip,
            last_resumed_at=utcnow(),
            last_resume_ms=resume_ms,
            error=None,
            raw_state=None,
            saved_state_path=None,
        )
        return resume_ms, ip

    def _start_from(self, vm: VM, state: VMState, tpl: Template) -> None:
        ref = self.ref(vm)
        if state is VMState.PAUSED:
            self.backend.unpause(ref)
        elif state is VMState.SAVED:
            self._resume_saved(vm, tpl)
        elif state is VMState.RUNNING:
            return
        else:
            self.memory_budget().check(tpl.memory_mb, "starting a VM")
            self.backend.start(ref)
            wait_ready(self.backend, ref, tpl.probe, self.settings.ready_timeout_s)

    def _resume_saved(self, vm: VM, tpl: Template) -> None:
        """Resume from Saved; when the saved state is broken, fall back to the clean checkpoint,
        and when that fails too, to a cold boot with a new clean checkpoint."""
        name = vm.name
        ref = self.ref(vm)
        try:
            self.backend.start(ref)
            return
        except SavedStateCorrupt as exc:
            first_error = str(exc)
        with self.ledger.step("resume_fallback", name, vm.pool):
            self.backend.stop(ref, force=True)
            try:
                self.backend.restore_checkpoint(ref, CLEAN_CHECKPOINT)
                self.backend.start(ref)
                return
            except (SavedStateCorrupt, CheckpointNotFound):
                pass
            self.backend.stop(ref, force=True)
            self.backend.start(ref)
            wait_ready(self.backend, ref, tpl.probe, self.settings.ready_timeout_s)
            self.backend.remove_checkpoint(ref, CLEAN_CHECKPOINT)
            self.backend.checkpoint(ref, CLEAN_CHECKPOINT)
            self.ledger.note(name, error=f"recovered by cold boot after: {first_error}"[:2000])

    def _refresh_ip(self, ref: VMRef) -> str | None:
        """The recorded IP is refreshed after every resume (DHCP may have moved it)."""
        found: list[str] = []

        def check() -> bool:
            ip = guest_ip(self.backend, ref)
            if ip:
                found.append(ip)
            return bool(ip)

        try:
            poll(check, min(30.0, self.settings.ready_timeout_s), "IP address", ref.name)
        except HvkubeError:
            return None
        return found[-1]

    def memory_budget(self) -> MemoryBudget:
        """The host's memory as measured now, with the configured ceiling."""
        return MemoryBudget.measure(self.backend, self.settings.memory_ceiling)

    # -- acquire and release -------------------------------------------------------------------

    def acquire(
        self,
        pool: str,
        wait_s: float = 0.0,
        holder: str | None = None,
        agent_id: int | None = None,
        *,
        prefer_host: str | None = None,
        only_host: str | None = None,
    ) -> AcquiredVM:
        """Claim a ready VM of `pool` on any usable host (hot, then warm, then cold; on
        `prefer_host` first among equals; on `only_host` alone when given) and resume it.
        Waits up to `wait_s` for one to free up."""
        if wait_s < 0 or wait_s > 86400:
            raise InvalidInput(f"--wait must be between 0 and 86400 seconds, got {wait_s:g}")
        check_name(pool, "pool name")
        for given in (prefer_host, only_host):
            if given is not None:
                check_host_name(given)
        self.ledger.guard("acquire a VM")
        holder = holder or f"lease-{secrets.token_hex(6)}"
        deadline = time.monotonic() + wait_s
        delay = 0.02
        if only_host is not None:
            hosts: tuple[str, ...] | None = (only_host,)
        elif self.reaches_other_hosts():
            hosts = None  # every usable host
        else:
            hosts = (self.host,)

        def claim() -> VM | None:
            return self.ledger.claim(pool, holder, agent_id, hosts=hosts, prefer=prefer_host)

        claimed = claim()
        while claimed is None:
            self.get_pool(pool)  # an unknown pool is bad input, not an empty pool
            if time.monotonic() >= deadline:
                counts = self.pool_counts(pool)
                if not any(counts.values()):
                    raise NoVMAvailable(
                        f"pool {pool!r} has no VMs yet; build them with 'hvkube pool "
                        f"provision {pool}', or start the controller ('hvkube run'), which "
                        "keeps every pool at its size"
                    )
                raise NoVMAvailable(
                    f"no free VM in pool {pool!r} ({counts.get('held', 0)} held, "
                    f"{sum(v for k, v in counts.items() if k != 'held')} in all); "
                    "wait longer with --wait, or scale the pool"
                )
            time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(0.5, delay * 1.5)
            claimed = claim()
        vm = claimed
        tpl = self.get_template(vm.template)
        while True:
            home = self.on_host(vm.host)
            try:
                resume_ms, address = home.bring_up(vm, tpl)
                break
            except VMNotFoundInHost as exc:
                # Deleted outside hvkube: it is marked missing (reconcile reports it,
                # provisioning replaces it) and another VM is handed out instead.
                self.ledger.fail(vm.name, exc)
                claimed = claim()
                if claimed is None:
                    raise
                vm = claimed
            except Exception as exc:  # any failure after the claim (a full disk, say)
                home.give_back(vm, exc)
                raise
        return AcquiredVM(
            name=vm.name,
            pool=pool,
            ip=address,
            rdp_port=vm.rdp_port,
            mcp_endpoint=tpl.mcp_endpoint.replace("{ip}", address)
            if tpl.mcp_endpoint and address
            else None,
            resume_ms=resume_ms,
            from_state=vm.state,
            holder=holder,
            host=vm.host,
        )

    def give_back(self, vm: VM, exc: Exception) -> None:
        """After a failed acquire of `vm` (as it was when claimed). When the host still shows
        it in that state, the start was refused before anything happened (out of memory, no
        permission, a lost or hung session): it goes back to the pool, free, with the error
        noted. When the resume worked but a write after it failed (not a hypervisor error: a
        full disk, say), the VM is running and unused: it goes back free, and the controller
        parks it in its tier. Otherwise it goes to ERROR, out of circulation, for the
        controller to replace."""
        self.ledger.guard("give a VM back")
        host = None
        with suppress(HvkubeError):
            host = self.host_vm(vm)
        actual = state_from_host(host) if host is not None else None
        resumed = actual is VMState.RUNNING and not isinstance(exc, HvkubeError)
        if actual is not None and (actual is vm.state or resumed):
            self.ledger.finish(
                vm.name,
                actual,
                holder=None,
                agent_id=None,
                error=str(exc)[:2000],
                raw_state=None,
            )
        else:
            self.ledger.fail(vm.name, exc)

    def release(
        self, name: str, policy: ReleasePolicy | str | None = None, holder: str | None = None
    ) -> VM | None:
        """Give a VM back: reset to clean, save as is, or destroy. None when destroyed."""
        vm = self.get_vm(name)
        if vm.host != self.host and vm.host is not None:
            return self.on_host(vm.host).release(name, policy, holder)
        chosen = self._policy(policy) if policy is not None else None
        self.ledger.guard("release a VM")
        if not vm.held:
            raise NotAcquired(f"VM {name!r} is not acquired; nothing to release")
        if holder is not None and vm.holder != holder:
            raise Conflict(f"VM {name!r} is held by someone else ({vm.holder})")
        if chosen is None:
            policy = self.store.catalog.release_policy(vm.pool) if vm.pool else None
            chosen = ReleasePolicy(policy) if policy else ReleasePolicy.RESET
        if chosen is ReleasePolicy.DESTROY:
            self.delete_vm(name, force=True)
            return None
        if chosen is ReleasePolicy.SAVE:
            self._refuse_gpu_save(vm)
        doing = VMState.RESETTING if chosen is ReleasePolicy.RESET else VMState.SAVING
        self.ledger.begin(name, doing, holder=vm.holder, op="release", known=vm)
        with self.ledger.step(f"release_{chosen.value}", name, vm.pool):
            try:
                ref = self.ref(vm)
                if chosen is ReleasePolicy.RESET:
                    self.restore_clean(vm)
                else:
                    host = self.backend.get_vm(ref)
                    if host is not None and host.state in {HostState.RUNNING, HostState.PAUSED}:
                        self.backend.save(ref)
                host = self.backend.get_vm(ref)
            except HvkubeError as exc:
                self.ledger.fail(name, exc)
                raise
        final = (state_from_host(host) if host else None) or VMState.SAVED
        self.ledger.finish(name, final, holder=None, agent_id=None, error=None)
        released = vm.model_copy(
            update={"state": final, "holder": None, "agent_id": None, "error": None}
        )
        if chosen is ReleasePolicy.SAVE and final is VMState.SAVED:
            return self._note_saved_state(released)
        return released

    # -- events --------------------------------------------------------------------------------

    def events(
        self,
        vm: str | None = None,
        pool: str | None = None,
        limit: int = 50,
        since_id: int | None = None,
        kind: str | None = None,
    ) -> list[Event]:
        check_positive(limit, "--limit", maximum=100_000)
        if vm is not None:
            check_name(vm, "VM name")
        return self.store.records.events(vm, pool, limit, since_id, kind)

    # -- agents --------------------------------------------------------------------------------

    def submit_agent(
        self,
        pool: str,
        workflow: str,
        input: dict[str, Any] | None = None,
        timeout_s: int = 600,
        requires_gpu: bool = False,
        exec_command: str | None = None,
        on_host_down: str = "fail",
        exec_env: list[str] | None = None,
    ) -> Agent:
        check_name(workflow, "workflow name")
        if on_host_down not in {"fail", "requeue"}:
            raise InvalidInput(f"--on-host-down {on_host_down!r} is not one of fail, requeue")
        check_positive(timeout_s, "--timeout", maximum=7 * 86400)
        check_json_object(input or {}, "input")
        p = self.get_pool(pool)
        if requires_gpu and not self.get_template(p.template).gpu:
            raise InvalidInput(
                f"the agent needs a GPU but pool {pool!r} uses template {p.template!r}, "
                "which has none; submit to a pool of a GPU template"
            )
        if exec_command is not None and not exec_command.strip():
            raise InvalidInput("--exec is empty; give the command to run")
        exec_env = check_env_names(exec_env or [])
        if exec_env and exec_command is None:
            raise InvalidInput(
                "--exec-env names variables for the agent's --exec command; give --exec too"
            )
        self.ledger.guard("submit an agent")
        return self.store.records.add_agent(
            {
                "pool": pool,
                "workflow": workflow,
                "input": input or {},
                "timeout_s": timeout_s,
                "requires_gpu": requires_gpu,
                "exec_command": exec_command,
                "on_host_down": on_host_down,
                "exec_env": exec_env or None,
                "status": AgentStatus.PENDING.value,
            }
        )

    def get_agent(self, agent_id: int) -> Agent:
        if isinstance(agent_id, bool) or not isinstance(agent_id, int) or agent_id < 1:
            raise InvalidInput(f"agent id must be a positive whole number, got {agent_id!r}")
        found = self.store.records.agent(agent_id)
        if found is None:
            raise NotFound(f"no agent with id {agent_id}; see 'hvkube agent list'")
        return self._with_vm_details([found])[0]

    def _with_vm_details(self, agents: list[Agent]) -> list[Agent]:
        """Running agents get their VM's IP and RDP port (one query for all of them)."""
        names = {a.vm for a in agents if a.vm and a.status is AgentStatus.RUNNING}
        if not names:
            return agents
        contacts = self.store.records.vm_contacts(sorted(names))
        out = []
        for a in agents:
            found = contacts.get(a.vm or "")
            if found is not None and found[2] == a.id and a.status is AgentStatus.RUNNING:
                a = a.model_copy(update={"ip": found[0], "rdp_port": found[1]})
            out.append(a)
        return out

    def list_agents(
        self, status: AgentStatus | None = None, pool: str | None = None, limit: int = 1000
    ) -> list[Agent]:
        found = self.store.records.agents(status.value if status else None, pool, limit)
        return self._with_vm_details(found)

    def finish_agent(
        self, agent_id: int, status: AgentStatus, result: AgentResult | None = None
    ) -> Agent:
        """End an agent (completed, failed or cancelled) and release its VM by pool policy."""
        if result is not None and result.output is not None:
            check_json_object(result.output, "output")
        agent = self.get_agent(agent_id)
        self.ledger.guard("finish an agent")
        if agent.status.finished:
            raise Conflict(f"agent {agent_id} has already ended ({agent.status.value})")
        if not self.agents.end(agent_id, status, result):
            raise Conflict(f"agent {agent_id} ended meanwhile")
        if agent.vm:
            self.release_agent_vm(agent_id, agent.vm)
        return self.get_agent(agent_id)

    def release_agent_vm(self, agent_id: int, vm_name: str) -> None:
        # Refused here, not only in release(), whose errors are swallowed below.
        self.ledger.guard("release an agent's VM")
        held = self.store.records.vm_holder(vm_name)
        if held is None or held[0] != agent_id or held[1] is None:
            return
        # On failure the VM is left in ERROR with the reason; the controller replaces it.
        with suppress(HvkubeError):
            self.release(vm_name, holder=held[1])

    def cancel_agent(self, agent_id: int) -> Agent:
        return self.finish_agent(
            agent_id, AgentStatus.CANCELLED, AgentResult(success=False, error="cancelled")
        )

    # -- provisioning and reconcile live in their own modules ----------------------------------

    def provision_pool(
        self,
        name: str,
        parallelism: int | None = None,
        progress: ProgressFn | None = None,
        count: int | None = None,
        stop: threading.Event | None = None,
    ) -> ProvisionReport:
        """Build VMs of the pool on this host: the ones it is missing, or `count` of them.
        Once `stop` is set, no VM is begun any more, and those being built are finished
        (past their checkpoint) or removed again."""
        return provision_pool(
            self, name, parallelism=parallelism, progress=progress, count=count, stop=stop
        )

    def scale_pool(
        self,
        name: str,
        count: int,
        progress: ProgressFn | None = None,
        stop: threading.Event | None = None,
    ) -> ProvisionReport:
        return scale_pool(self, name, count, progress=progress, stop=stop)

    def reconcile(self, remove_orphans: bool = False) -> Any:
        return reconcile(self, remove_orphans=remove_orphans)

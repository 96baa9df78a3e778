"""Several hosts on one store (in one process: an engine per host on one SQLite file, each
host with its own simulated host state): each host acts on its own VMs only, pools spread
over hosts, a host whose heartbeat stops is taken down, and bad input changes nothing."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from ctl_support import hvkube, isolated_env, running, wait_for

from core import Engine, open_engine
from core.controller import Controller
from core.errors import Conflict, InvalidInput, NoVMAvailable
from core.models import AgentStatus, VMState
from core.utc import utcnow


def host_engine(db: Path, host: str) -> Engine:
    return open_engine(db=str(db), backend="sim", sim_scale=0, host=host)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "data" / "hvkube.db"


@pytest.fixture
def hosts(db: Path) -> Iterator[dict[str, Engine]]:
    engines = {name: host_engine(db, name) for name in ("h1", "h2", "h3")}
    for name, engine in engines.items():
        engine.store.hosts.ensure(name, "sim")  # as its first heartbeat does
    engines["h1"].create_template("win11", r"C:\t\win11.vhdx", memory_mb=4096)
    try:
        yield engines
    finally:
        for engine in engines.values():
            engine.close()


@contextlib.contextmanager
def fleet(engines: dict[str, Engine], **kw: object) -> Iterator[dict[str, Controller]]:
    with contextlib.ExitStack() as stack:
        controllers = {
            name: stack.enter_context(running(engine, **kw))  # type: ignore[arg-type]
            for name, engine in engines.items()
        }
        yield controllers


def by_host(engine: Engine, pool: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for vm in engine.list_vms(pool=pool):
        counts[vm.host or "?"] = counts.get(vm.host or "?", 0) + 1
    return counts


def test_another_hosts_reconcile_leaves_this_hosts_vms_alone(hosts: dict[str, Engine]) -> None:
    h1, h2 = hosts["h1"], hosts["h2"]
    h1.create_pool("bp", "win11", count=3, warm=3)
    assert not h1.provision_pool("bp").failed
    before = {vm.name: (vm.state, vm.host) for vm in h1.list_vms()}

    report = h2.reconcile()

    assert report.missing == [] and report.checked == 0
    assert {vm.name: (vm.state, vm.host) for vm in h1.list_vms()} == before
    assert set(before.values()) == {(VMState.SAVED, "h1")}


def test_a_pool_spreads_over_the_hosts_within_max_per_host(hosts: dict[str, Engine]) -> None:
    h1 = hosts["h1"]
    with fleet(hosts):
        wait_for(lambda: {h.status for h in h1.list_hosts()} == {"up"}, "three hosts heartbeating")
        h1.create_pool("bp", "win11", count=6, warm=3, max_per_host=2)
        wait_for(
            lambda: (
                by_host(h1, "bp") == {"h1": 2, "h2": 2, "h3": 2}
                and all(
                    vm.state is VMState.SAVED or vm.state is VMState.OFF for vm in h1.list_vms()
                )
            ),
            "two VMs on each host",
        )
        # The pool's warm tier is split between the hosts too: one Saved VM on each.
        wait_for(
            lambda: (
                sorted(vm.host for vm in h1.list_vms(state=VMState.SAVED)) == ["h1", "h2", "h3"]
            ),
            "one warm VM per host",
        )


def test_acquire_picks_across_hosts_prefers_one_and_says_which(hosts: dict[str, Engine]) -> None:
    h1, h2 = hosts["h1"], hosts["h2"]
    h1.create_pool("bp", "win11", count=2, warm=2)
    assert not h1.provision_pool("bp", count=1).failed
    assert not h2.provision_pool("bp", count=1).failed

    got = h1.acquire("bp", prefer_host="h2")
    assert got.host == "h2" and h1.get_vm(got.name).host == "h2"
    other = h1.acquire("bp")
    assert other.host == "h1"
    h1.release(got.name)  # reset on h2's simulated host, through h1's engine
    assert h2.get_vm(got.name).state is VMState.SAVED

    h1.release(other.name)
    h1.drain_host("h2")
    for _ in range(2):
        taken = h1.acquire("bp")
        assert taken.host == "h1", "a draining host hands out nothing"
        h1.release(taken.name)


def _two_hosts_with_agents_on_h2(hosts: dict[str, Engine]) -> tuple[int, int]:
    """Pool bp with two VMs on h1 and two on h2; two agents running on h2's VMs (one to fail,
    one to requeue when h2 is lost); h2 heartbeating."""
    h1, h2 = hosts["h1"], hosts["h2"]
    h1.create_pool("bp", "win11", count=4, warm=4, max_per_host=2)
    assert not h1.provision_pool("bp", count=2).failed
    assert not h2.provision_pool("bp", count=2).failed
    failing = h1.submit_agent("bp", "wf")
    requeued = h1.submit_agent("bp", "wf", on_host_down="requeue")
    assert len(h2.agents.schedule("bp", 2, "h2")) == 2
    for agent in (failing, requeued):
        vm = h2.acquire("bp", holder=f"agent:{agent.id}", agent_id=agent.id, only_host="h2")
        assert h2.agents.start(agent.id, vm.name)
    h2.store.hosts.heartbeat("h2", 15.0, 65536, 60000, "sim")
    return failing.id, requeued.id


def _silence(engine: Engine, host: str) -> None:
    """The host's controller stopped heartbeating longer ago than its lease."""
    engine.store.t.Host.update(expires_at=utcnow() - timedelta(seconds=1)).where(
        engine.store.t.Host.name == host
    ).execute()


def test_a_silent_host_goes_down_its_vms_unknown_its_agents_by_policy(
    hosts: dict[str, Engine],
) -> None:
    h1, h2 = hosts["h1"], hosts["h2"]
    failing, requeued = _two_hosts_with_agents_on_h2(hosts)
    # h2's controller heartbeated once, then went silent (its lease is already over).
    _silence(h2, "h2")

    controller = Controller(h1, tick_s=0.05)
    controller.run(__import__("threading").Event(), once=True)

    assert controller.hosts_taken_down == ["h2"]
    assert h1.get_host("h2").status == "down"
    on_h2 = h1.list_vms(host="h2")
    assert {vm.state for vm in on_h2} == {VMState.UNKNOWN} and not any(vm.held for vm in on_h2)
    assert len(h1.list_vms(pool="bp")) == 4, "nothing rebuilt elsewhere"
    assert h1.get_agent(failing).status is AgentStatus.FAILED
    assert "went down" in (h1.get_agent(failing).result.error or "")  # type: ignore[union-attr]
    # The other was queued again, and h1's controller placed it on one of h1's VMs.
    again = h1.get_agent(requeued)
    assert again.status is AgentStatus.RUNNING and again.host == "h1"
    assert h1.get_vm(again.vm or "").host == "h1"

    # h2 comes back: its reconcile settles its own VMs against its host.
    report = h2.reconcile()
    assert sorted(line.split(":")[0] for line in report.fixed) == sorted(v.name for v in on_h2)
    assert {vm.state for vm in h2.list_vms(host="h2")} == {VMState.SAVED}


def test_an_owner_on_another_host_is_judged_by_that_hosts_heartbeat(
    hosts: dict[str, Engine],
) -> None:
    h1, h2 = hosts["h1"], hosts["h2"]
    theirs = h2.owner
    assert theirs.startswith("h2:") and h1.owner.startswith("h1:")
    assert h1.owner_alive(theirs), "an idle host's processes are not judged by local pids"
    h2.store.hosts.heartbeat("h2", 15.0, None, None, "sim")
    h1.store.hosts.take_down("h2", utcnow() + timedelta(seconds=60))
    assert not h1.owner_alive(theirs)
    assert h1.owner_alive(h1.owner)


def test_draining_the_last_host_of_a_pool_with_held_vms_is_refused(
    hosts: dict[str, Engine],
) -> None:
    h1 = hosts["h1"]
    h1.create_pool("solo", "win11", count=1, warm=1, hosts=["h1"])
    assert not h1.provision_pool("solo").failed
    h1.acquire("solo")
    with pytest.raises(InvalidInput, match="last host of pool 'solo'"):
        h1.drain_host("h1")
    assert not h1.get_host("h1").draining
    with pytest.raises(Conflict, match="still has 1 VM"):
        h1.remove_host("h1")


def test_migrating_a_single_host_store_names_the_machine_as_the_vms_host(
    tmp_path: Path, engine: Engine, pool: str
) -> None:
    path = engine.store.path
    engine.close()
    con = sqlite3.connect(path)
    con.execute('UPDATE "vm" SET "host" = NULL')
    con.execute('DROP TABLE "host"')
    con.execute("UPDATE meta SET value = '3' WHERE key = 'schema_version'")
    con.commit()
    con.close()
    with open_engine(db=str(path), backend="sim", sim_scale=0) as again:
        assert {vm.host for vm in again.list_vms()} == {again.host}
        assert [h.name for h in again.list_hosts()] == [again.host]
        assert again.reconcile().missing == []


# -- the command line --------------------------------------------------------------------------


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return isolated_env(tmp_path)


def test_bad_host_input_is_one_line_exit_2_and_changes_nothing(
    tmp_path: Path, env: dict[str, str], hosts: dict[str, Engine], db: Path
) -> None:
    env["HVKUBE_DB"] = str(db)
    fresh = {**env, "HVKUBE_DB": str(tmp_path / "new" / "x.db")}
    cases = [
        (("run", "--host", "bad host!"), fresh),
        (
            (
                "pool",
                "create",
                "--name",
                "p",
                "--template",
                "win11",
                "--count",
                "1",
                "--hosts",
                "h1,nosuch",
            ),
            env,
        ),
        (("vm", "list", "--host", "-x-"), env),
        (("acquire", "-p", "nopool", "--prefer-host", "nosuch"), env),
    ]
    for args, where in cases:
        result = hvkube(*args, env=where)
        assert result.returncode == 2, (args, result.stderr)
        errors = [line for line in result.stderr.splitlines() if line.startswith("hvkube:")]
        assert len(errors) == 1 and "host" in errors[0], result.stderr
    assert not (tmp_path / "new").exists()
    assert hosts["h1"].list_pools() == []

    hosts["h1"].create_pool("solo", "win11", count=1, warm=1)
    assert not hosts["h1"].provision_pool("solo").failed
    hosts["h1"].acquire("solo")
    hosts["h1"].drain_host("h2")
    hosts["h1"].drain_host("h3")
    result = hvkube("host", "drain", "h1", env=env)
    assert result.returncode == 2 and "last host of pool 'solo'" in result.stderr
    assert not hosts["h1"].get_host("h1").draining


def test_host_list_shows_each_host_and_its_vms(
    env: dict[str, str], hosts: dict[str, Engine], db: Path
) -> None:
    env["HVKUBE_DB"] = str(db)
    hosts["h1"].create_pool("bp", "win11", count=2, warm=2)
    assert not hosts["h2"].provision_pool("bp").failed
    hosts["h2"].store.hosts.heartbeat("h2", 30.0, 65536, 57344, "sim")
    result = hvkube("host", "list", env=env)
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stdout.splitlines() if line.startswith("h2"))
    assert "up" in line and "2 saved" in line and "57,344" in line
    shown = hvkube("vm", "list", "--host", "h2", "--json", env=env)
    assert [vm["host"] for vm in __import__("json").loads(shown.stdout)] == ["h2", "h2"]
    assert os.path.exists(db)


def test_a_host_taken_down_while_its_controller_lived_settles_its_vms_again(
    hosts: dict[str, Engine],
) -> None:
    from core.fleet import take_down_expired

    h1, h2 = hosts["h1"], hosts["h2"]
    h1.create_pool("bp", "win11", count=2, warm=2, hosts=["h1"])
    with running(h1, lease_ttl_s=15.0):
        wait_for(lambda: [vm.state for vm in h1.list_vms()] == [VMState.SAVED] * 2, "two warm VMs")
        # The store was out of h1's reach for longer than its lease: h2 takes it down. In one
        # write transaction, so that h1's controller cannot heartbeat or settle its VMs
        # before the test has looked.
        with h2.store.write():
            _silence(h2, "h1")
            assert take_down_expired(h2.store, "h2", None, None) == ["h1"]
            assert {vm.state for vm in h2.list_vms(pool="bp")} == {VMState.UNKNOWN}
        # h1's next heartbeat finds it was taken down, and its controller settles its VMs.
        wait_for(
            lambda: (
                [vm.state for vm in h1.list_vms()] == [VMState.SAVED] * 2
                and h1.get_host("h1").status == "up"
            ),
            "h1's VMs settled again",
        )


# -- a host gone for good -----------------------------------------------------------------------


def test_a_host_gone_for_good_is_forgotten_with_its_vm_rows_and_nothing_else(
    hosts: dict[str, Engine],
) -> None:
    h1, h2 = hosts["h1"], hosts["h2"]
    failing, requeued = _two_hosts_with_agents_on_h2(hosts)
    before = {vm.name: vm for vm in h1.list_vms()}
    on_h2 = sorted(name for name, vm in before.items() if vm.host == "h2")
    assert len(on_h2) == 2

    def unchanged() -> None:
        assert {vm.name: vm for vm in h1.list_vms()} == before
        assert {h.name for h in h1.list_hosts()} == {"h1", "h2", "h3"}
        assert h1.get_agent(failing).status is AgentStatus.RUNNING

    with pytest.raises(Conflict, match=r"is up .* add --force if it is gone for good"):
        h1.remove_host("h2", forget_vms=True)
    unchanged()
    _silence(h1, "h2")
    with pytest.raises(Conflict, match=r"still has 2 VM.* add --forget-vms"):
        h1.remove_host("h2")
    unchanged()
    with pytest.raises(Conflict, match=r"2 VM.* of host 'h2' are held.*--force"):
        h1.remove_host("h2", forget_vms=True)
    unchanged()

    result = h1.remove_host("h2", forget_vms=True, force=True)

    assert result == {
        "removed": "h2",
        "vms_forgotten": 2,
        "agents_requeued": 1,
        "agents_failed": 1,
    }
    assert {h.name for h in h1.list_hosts()} == {"h1", "h3"}
    assert {vm.name: vm for vm in h1.list_vms()} == {
        name: vm for name, vm in before.items() if vm.host == "h1"
    }
    assert h1.get_agent(failing).status is AgentStatus.FAILED
    assert "removed from the store" in (h1.get_agent(failing).result.error or "")  # type: ignore[union-attr]
    assert h1.get_agent(requeued).status is AgentStatus.PENDING
    assert sorted(e.vm for e in h1.events(kind="forget")) == on_h2
    # Rows only: h2's hypervisor still has its VMs, untouched.
    assert sorted(vm.name for vm in h2.backend.list_vms()) == on_h2


def test_a_pool_that_names_the_host_keeps_it(hosts: dict[str, Engine]) -> None:
    h1 = hosts["h1"]
    h1.create_pool("only2", "win11", count=1, warm=1, hosts=["h2"])
    _silence(h1, "h2")
    with pytest.raises(Conflict, match="only2 name host 'h2'; change their --hosts first"):
        h1.remove_host("h2", forget_vms=True, force=True)
    assert "h2" in {h.name for h in h1.list_hosts()}


def test_host_remove_asks_before_forgetting_rows(
    env: dict[str, str], hosts: dict[str, Engine], db: Path
) -> None:
    env["HVKUBE_DB"] = str(db)
    h1 = hosts["h1"]
    failing, _ = _two_hosts_with_agents_on_h2(hosts)
    _silence(h1, "h2")
    from core.fleet import take_down_expired

    # Another host's controller took h2 down: its VMs are unknown and held by nobody.
    assert take_down_expired(
        h1.store,
        "h1",
        lambda i, b, w: h1.agents.requeue(i, b, w),
        lambda i, b, w: h1.agents.fail(i, w, before=b),
    ) == ["h2"]
    rows = len(h1.list_vms())

    # Not a terminal and no --yes: nothing is asked, nothing changes.
    refused = hvkube("host", "remove", "h2", "--forget-vms", env=env)
    assert refused.returncode == 2
    errors = [line for line in refused.stderr.splitlines() if line.startswith("hvkube:")]
    assert len(errors) == 1 and "add --yes to confirm, nothing was changed" in errors[0]
    assert "h2 (down) and the rows of its 2 VM(s)" in errors[0]
    assert len(h1.list_vms()) == rows and "h2" in {h.name for h in h1.list_hosts()}

    unknown = hvkube("host", "remove", "nosuch", "--forget-vms", "--yes", env=env)
    assert unknown.returncode == 2 and "no host named 'nosuch'" in unknown.stderr

    removed = hvkube("host", "remove", "h2", "--forget-vms", "--yes", env=env)
    assert removed.returncode == 0, removed.stderr
    assert "host h2 removed: 2 VM row(s) forgotten" in removed.stdout
    assert len(h1.list_vms()) == rows - 2 and "h2" not in {h.name for h in h1.list_hosts()}
    assert h1.get_agent(failing).status is AgentStatus.FAILED  # by the take-down, once


def test_a_command_run_under_another_host_name_says_where_the_vms_are(tmp_path: Path) -> None:
    """Hyper-V (over the fake PowerShell host) reaches only its own host's VMs: a command
    run under another name than the host's controller finds none, and says so."""
    from tests.conformance.backends import _hyperv_settings

    settings = _hyperv_settings(tmp_path)
    with open_engine(settings.replace(host="hv01")) as hv01:
        hv01.create_template("win11", r"C:\t\win11.vhdx", memory_mb=1024)
        hv01.create_pool("bp", "win11", count=1, warm=1)
        assert not hv01.provision_pool("bp").failed
        (vm,) = hv01.list_vms()
    with open_engine(settings.replace(host="other")) as other:
        with pytest.raises(NoVMAvailable) as caught:
            other.acquire("bp")
        message = str(caught.value)
        assert "no VMs on host other" in message and "they are on hv01 (1)" in message
        assert "set HVKUBE_HOST" in message
        with pytest.raises(Conflict, match="set HVKUBE_HOST=hv01 for every hvkube command"):
            other.stop_vm(vm.name)
        assert other.get_vm(vm.name).state is VMState.SAVED and not other.get_vm(vm.name).held

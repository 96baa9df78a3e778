"""GPU pools: a VM with a GPU partition can be neither saved nor checkpointed (Hyper-V, as
community reports say), so such a pool keeps VMs hot or cold and resets by a new disk."""

from __future__ import annotations

import pytest

from core.engine import Engine
from core.errors import InvalidInput
from core.models import VMState
from tests.conftest import run_cli
from tests.host_support import ref_named


@pytest.fixture
def gpu_pool(engine: Engine) -> str:
    engine.create_template("gpu", r"C:\Templates\gpu.vhdx", memory_mb=4096, gpu=True)
    engine.create_pool("gp", "gpu", count=2, hot=1)
    report = engine.provision_pool("gp")
    assert not report.failed, report.failed
    return "gp"


def test_warm_tiers_and_save_release_are_refused_for_a_gpu_template(engine: Engine) -> None:
    engine.create_template("gpu", r"C:\Templates\gpu.vhdx", gpu=True)
    with pytest.raises(InvalidInput, match="GPU partition"):
        engine.create_pool("gp", "gpu", count=2, warm=1)
    with pytest.raises(InvalidInput, match="--release save"):
        engine.create_pool("gp", "gpu", count=2, release="save")
    engine.create_pool("gp", "gpu", count=2)
    with pytest.raises(InvalidInput, match="--warm 1"):
        engine.update_pool("gp", warm=1)
    assert engine.get_pool("gp").warm_count == 0


def test_gpu_vms_are_parked_hot_or_cold_with_no_checkpoint(engine: Engine, gpu_pool: str) -> None:
    states = sorted(vm.state.value for vm in engine.list_vms(pool=gpu_pool))
    assert states == ["off", "paused"]
    for vm in engine.list_vms(pool=gpu_pool):
        assert engine.backend.checkpoint_names(ref_named(engine, vm.name)) == []


def test_release_with_reset_makes_the_disk_anew_and_leaves_the_vm_cold(
    engine: Engine, gpu_pool: str
) -> None:
    got = engine.acquire(gpu_pool)
    released = engine.release(got.name)
    assert released is not None and released.state is VMState.OFF and not released.held
    events = [e.kind for e in engine.events(vm=got.name, limit=5)]
    assert events[0] == "release_reset"
    again = engine.acquire(gpu_pool, wait_s=5)  # the cold one boots
    assert engine.get_vm(again.name).state is VMState.RUNNING


def test_pool_create_says_what_a_gpu_pool_does(tmp_path) -> None:  # type: ignore[no-untyped-def]
    db = str(tmp_path / "g.db")
    args = ("--db", db, "--backend", "sim")
    assert (
        run_cli(
            *args, "template", "create", "--name", "g", "--vhdx", r"C:\g.vhdx", "--gpu"
        ).returncode
        == 0
    )
    done = run_cli(*args, "pool", "create", "--name", "gp", "--template", "g", "--count", "1")
    assert (
        done.returncode == 0 and "GPU pool" in done.stdout and "hot (paused) or cold" in done.stdout
    )
    refused = run_cli(
        *args, "pool", "create", "--name", "gw", "--template", "g", "--count", "2", "--warm", "1"
    )
    assert refused.returncode == 2 and "GPU partition" in refused.stderr


def test_saving_a_gpu_vm_is_refused_before_the_host_is_asked(engine: Engine, gpu_pool: str) -> None:
    got = engine.acquire(gpu_pool)
    with pytest.raises(InvalidInput, match="cannot save"):
        engine.save_vm(got.name)
    with pytest.raises(InvalidInput, match="cannot save"):
        engine.release(got.name, policy="save")
    vm = engine.get_vm(got.name)
    assert vm.state is VMState.RUNNING and vm.held and vm.error is None


def test_the_controller_moves_a_surplus_hot_gpu_vm_to_cold(engine: Engine, gpu_pool: str) -> None:
    from tests.ctl_support import once

    engine.update_pool(gpu_pool, hot=0)
    once(engine)
    states = sorted(vm.state.value for vm in engine.list_vms(pool=gpu_pool))
    assert states == ["off", "off"]

"""Shared helpers for the Hyper-V backend tests: a backend over the fake PowerShell host."""

from __future__ import annotations

from pathlib import Path

from core.backends.base import Backend, VMRef
from core.backends.hyperv import HyperVBackend
from core.backends.sim import SimHost
from core.engine import Engine
from core.settings import Settings
from core.store import Store
from tests.fakes.fakeps import python_fake_command


def fake_command(state_dir: Path, *extra: str) -> str:
    """The `powershell` setting that runs the fake host on `state_dir` at full speed."""
    return python_fake_command("--state-dir", str(state_dir), "--sim-scale", "0", *extra)


def fake_backend(
    state_dir: Path, *extra: str, op_timeout_s: float = 20.0, sessions: int = 2
) -> HyperVBackend:
    return HyperVBackend(
        fake_command(state_dir, *extra),
        vm_dir="D:\\hvkube\\vms",
        switch="Default Switch",
        sessions=sessions,
        op_timeout_s=op_timeout_s,
        startup_timeout_s=30.0,
    )


def sim_host(state_dir: Path) -> SimHost:
    """The same simulated host the fake PowerShell host answers from."""
    return SimHost(state_dir, scale=0, vm_dir="D:\\hvkube\\vms")


OWNER = "5" * 32  # the store id the test VMs are marked with


def make_running_vm(backend: HyperVBackend, name: str = "p-001", memory_mb: int = 1024) -> VMRef:
    disk = backend.disk_path_for(name, "C:\\templates\\win11.vhdx")
    backend.create_differencing_disk("C:\\templates\\win11.vhdx", disk)
    made = backend.create_vm(name, disk, memory_mb, 2, False, owner=OWNER)
    ref = VMRef(made.name, made.id)
    backend.start(ref)
    return ref


def engine_on(kind: str, state_dir: Path, *fake_args: str, sessions: int = 2) -> Engine:
    """An engine on the simulated host, or on Hyper-V over the fake PowerShell host answering
    from that same simulated host, with a template 'win11' and a pool 'web' of two warm VMs."""
    settings = Settings(
        db=str(state_dir / "hvkube.db"),
        backend=kind,
        sim_scale=0,
        ready_timeout_s=10,
        op_timeout_s=20,
    )
    backend: Backend = (
        sim_host(state_dir)
        if kind == "sim"
        else fake_backend(state_dir, *fake_args, sessions=sessions)
    )
    engine = Engine(Store(settings.db_path()), backend, settings)
    engine.create_template("win11", "C:\\templates\\win11.vhdx", memory_mb=2048)
    engine.create_pool("web", "win11", count=2, warm=2)
    return engine

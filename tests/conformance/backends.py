"""The backends the conformance suite runs on, and what each needs to be driven.

Each entry says how to configure the engine for it, which template disk to use, how
to damage a VM's saved state, how big its screenshots are, and why it is missing on
this machine (when it is). Add a backend by adding a `BackendCase`.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.backends.base import VMRef
from core.engine import Engine
from core.settings import Settings
from tests.host_support import ref_named
from tests.pg_support import pg_missing


@dataclass(frozen=True)
class BackendCase:
    name: str
    # Why the backend cannot run here, or None when it can.
    missing: Callable[[], str | None]
    # Settings for an engine whose database and host state live under `root`.
    settings: Callable[[Path], Settings]
    template_disk: Callable[[Path], str]
    damage_saved_state: Callable[[Engine, str], None]
    screen_size: tuple[int, int]
    memory_mb: int = 512
    # Environment for a subprocess that opens the same engine (HVKUBE_* variables).
    env: Callable[[Settings], dict[str, str]] = field(default=lambda s: {})
    # Ends whatever the backend left running under `root` (never other processes).
    cleanup: Callable[[Engine, Path], None] = field(default=lambda engine, root: None)
    # The store: "sqlite" (a file under root) or "postgresql" (a fresh database).
    store: str = "sqlite"


def _settings_env(settings: Settings, names: list[str]) -> dict[str, str]:
    values = settings.values()
    return {f"HVKUBE_{name.upper()}": str(values[name]) for name in names}


# -- sim ---------------------------------------------------------------------------------------


def _sim_settings(root: Path) -> Settings:
    return Settings(db=str(root / "hvkube.db"), backend="sim", sim_scale=0.0)


def _sim_damage(engine: Engine, vm: str) -> None:
    engine.backend.inject_fault("corrupt-saved-state", vm=vm)  # type: ignore[attr-defined]


SIM = BackendCase(
    name="sim",
    missing=lambda: None,
    settings=_sim_settings,
    template_disk=lambda root: "D:\\templates\\win11.vhdx",
    damage_saved_state=_sim_damage,
    screen_size=(640, 400),
    env=lambda s: _settings_env(s, ["db", "backend", "sim_scale"]),
)


# -- hyperv over the fake PowerShell host ------------------------------------------------------


def _hyperv_settings(root: Path) -> Settings:
    from tests.fakes.fakeps import python_fake_command

    return Settings(
        db=str(root / "hvkube.db"),
        backend="hyperv",
        powershell=python_fake_command("--state-dir", str(root / "host"), "--sim-scale", "0"),
        hyperv_sessions=2,
        op_timeout_s=30.0,
        ready_timeout_s=30.0,
    )


def _hyperv_damage(engine: Engine, vm: str) -> None:
    from core.backends.sim import SimHost

    # The fake PowerShell host answers from this simulated host's state.
    SimHost(Path(engine.settings.db_path()).parent / "host", scale=0).inject_fault(
        "corrupt-saved-state", vm=vm
    )


HYPERV = BackendCase(
    name="hyperv",
    missing=lambda: None,
    settings=_hyperv_settings,
    template_disk=lambda root: "C:\\templates\\win11.vhdx",
    damage_saved_state=_hyperv_damage,
    screen_size=(640, 400),
    env=lambda s: _settings_env(
        s, ["db", "backend", "powershell", "hyperv_sessions", "op_timeout_s", "ready_timeout_s"]
    ),
)


# -- qemu --------------------------------------------------------------------------------------


def _qemu_missing() -> str | None:
    from core.backends.qemu import default_test_guest

    if shutil.which("qemu-system-x86_64") is None:
        return "qemu-system-x86_64 is not installed (Debian package qemu-system-x86)"
    if shutil.which("qemu-img") is None:
        return "qemu-img is not installed (Debian package qemu-utils)"
    guest = default_test_guest()
    if not guest.is_file() or not guest.with_suffix(".kernel").is_file():
        return f"no test guest at {guest}; build it with scripts/build-test-guest.sh"
    return None


# Read at import: the suite's autouse fixture clears HVKUBE_* variables for each test.
QEMU_ACCEL = os.environ.get("HVKUBE_QEMU_ACCEL", "auto")


@functools.cache
def qemu_accel() -> str:
    """The accelerator for the suite's VMs: probed once (and cached per host boot)."""
    from core.backends.qemu import boot_files_for, default_test_guest
    from core.backends.qemu.accel import choose_accel

    setting = QEMU_ACCEL
    cache = default_test_guest().parent
    guest = boot_files_for(default_test_guest())
    return choose_accel(setting, "qemu-system-x86_64", cache, guest).accel


def _qemu_settings(root: Path) -> Settings:
    return Settings(
        db=str(root / "hvkube.db"),
        backend="qemu",
        qemu_dir=str(root / "vms"),
        qemu_accel=qemu_accel(),  # type: ignore[arg-type]
        op_timeout_s=120.0,
        ready_timeout_s=180.0,
        provision_parallelism=2,
    )


def _qemu_template(root: Path) -> str:
    from core.backends.qemu import default_test_guest

    return str(default_test_guest())


def _qemu_damage(engine: Engine, vm: str) -> None:
    path = engine.backend.saved_state_path(ref_named(engine, vm))
    assert path is not None, f"{vm} has no saved state to damage"
    with open(path, "r+b") as fh:  # keep the size, break the content
        fh.write(b"\0" * 4096)
    os.truncate(path, os.path.getsize(path) // 2)


def _qemu_cleanup(engine: Engine, root: Path) -> None:
    # Through the engine's backend first: it reaps the QEMU processes it started.
    for vm in engine.backend.list_vms():
        with contextlib.suppress(Exception):
            engine.backend.remove(VMRef(vm.name, vm.id))
    from core.backends.qemu import QemuBackend

    vms = root / "vms"
    if vms.is_dir():
        backend = QemuBackend(vms, state_dir=root, accel="tcg")
        for vm in backend.list_vms():
            with contextlib.suppress(Exception):
                backend.remove(VMRef(vm.name, vm.id))


QEMU = BackendCase(
    name="qemu",
    missing=_qemu_missing,
    settings=_qemu_settings,
    template_disk=_qemu_template,
    damage_saved_state=_qemu_damage,
    screen_size=(720, 400),
    env=lambda s: _settings_env(
        s, ["db", "backend", "qemu_dir", "qemu_accel", "op_timeout_s", "ready_timeout_s"]
    ),
    cleanup=_qemu_cleanup,
)

# The simulated host over a PostgreSQL store: the store is the only difference from SIM.
SIM_POSTGRESQL = BackendCase(
    name="sim-postgresql",
    missing=pg_missing,
    settings=_sim_settings,
    template_disk=SIM.template_disk,
    damage_saved_state=_sim_damage,
    screen_size=SIM.screen_size,
    env=SIM.env,
    store="postgresql",
)

CASES: list[BackendCase] = [SIM, SIM_POSTGRESQL, HYPERV, QEMU]


def case_ids(case: Any) -> str:
    return str(case.name)

"""A write that fails after a VM was claimed (a full disk) gives the VM back, whatever the
exception: in `hvkube acquire`, in the controller's agent placement and in the HTTP API."""

from __future__ import annotations

import errno
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ctl_support import isolated_env, make_engine, once

from core import Engine
from core.ledger import Ledger
from core.models import AgentStatus, VMState

DISK_FULL = sqlite3.OperationalError("database or disk is full")


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    eng = make_engine(tmp_path)
    eng.create_template("win11", r"C:\Templates\win11.vhdx", memory_mb=4096)
    eng.create_pool("bp", "win11", 2, warm=2)
    assert not eng.provision_pool("bp").failed
    yield eng
    eng.close()


def fail_first_running_write(monkeypatch: pytest.MonkeyPatch, exc: BaseException) -> list[str]:
    """Ledger.finish raises `exc` once, at the write that records a resumed VM as running
    (the write right after the claim); returns the names it failed for."""
    real = Ledger.finish
    failed: list[str] = []

    def finish(self: Ledger, name: str, state: VMState, **fields: Any) -> None:
        if state is VMState.RUNNING and "holder" not in fields and not failed:
            failed.append(name)
            raise exc
        real(self, name, state, **fields)

    monkeypatch.setattr(Ledger, "finish", finish)
    return failed


def assert_all_free(engine: Engine, pool: str) -> None:
    for vm in engine.list_vms(pool=pool):
        assert vm.holder is None, vm
        assert not vm.state.transitional, vm
        assert vm.state is not VMState.ERROR, vm


def test_cli_acquire_gives_the_vm_back(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from core.cli import main

    for key, value in isolated_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    failed = fail_first_running_write(monkeypatch, DISK_FULL)
    assert main(["acquire", "--pool", "bp"]) == 1
    assert failed
    assert_all_free(engine, "bp")
    # and it can be acquired again
    got = engine.acquire("bp")
    engine.release(got.name)


def test_controller_gives_the_vm_back_when_the_agent_cannot_start(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = engine.submit_agent("bp", "wf")
    calls: list[int] = []

    def start(agent_id: int, vm: str, *args: Any, **kwargs: Any) -> bool:
        calls.append(agent_id)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(engine.agents, "start", start)
    once(engine)
    assert calls
    assert_all_free(engine, "bp")
    assert engine.get_agent(agent.id).status is not AgentStatus.RUNNING


def test_api_acquire_gives_the_vm_back(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fastapi.testclient import TestClient

    from core.api import make_api
    from core.api.leases import ApiLeases

    app = make_api(engine.settings, engine_factory=lambda: engine, token="t" * 32)
    headers = {"Authorization": "Bearer " + "t" * 32}
    monkeypatch.setattr(Engine, "close", lambda self: None)  # the fixture closes it
    with TestClient(app, raise_server_exceptions=False) as client:
        # at the engine's write after the claim
        fail_first_running_write(monkeypatch, DISK_FULL)
        r = client.post("/api/v1/acquire", json={"pool": "bp"}, headers=headers)
        assert r.status_code == 500 and r.json()["code"] == "internal_error"
        assert_all_free(engine, "bp")
        monkeypatch.undo()
        monkeypatch.setattr(Engine, "close", lambda self: None)

        # at the API's own write after the claim (the lease naming its VM)
        def bind(self: ApiLeases, *args: Any) -> Any:
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(ApiLeases, "bind", bind)
        r = client.post("/api/v1/acquire", json={"pool": "bp"}, headers=headers)
        assert r.status_code == 500
        assert_all_free(engine, "bp")
        assert engine.store.t.Lease.select().count() == 0

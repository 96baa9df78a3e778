from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.backends import make_backend
from core.engine import Engine
from core.store import Store
from tests.conformance.backends import CASES, BackendCase


@pytest.fixture(params=CASES, ids=[c.name for c in CASES])
def case(request: pytest.FixtureRequest) -> BackendCase:
    backend_case: BackendCase = request.param
    reason = backend_case.missing()
    if reason is not None:
        if os.environ.get("HVKUBE_REQUIRE_ALL_BACKENDS") == "1":
            pytest.fail(f"{backend_case.name} is required here but missing: {reason}")
        pytest.skip(f"{backend_case.name}: {reason}")
    return backend_case


@pytest.fixture
def root() -> Iterator[Path]:
    # Short paths: QEMU's unix sockets live in the VM directories.
    import tempfile

    with tempfile.TemporaryDirectory(prefix="hvk-") as tmp:
        yield Path(tmp)


@pytest.fixture
def engine(
    case: BackendCase, root: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Iterator[Engine]:
    monkeypatch.setenv("HVKUBE_CONFIG", str(root / "no-config.toml"))
    # With a PostgreSQL store the host's state lives in the data folder: root here too.
    monkeypatch.setenv("HVKUBE_DATA_DIR", str(root))
    settings = case.settings(root)
    if case.store == "postgresql":
        settings = settings.replace(db=request.getfixturevalue("pg_url"))
    eng = Engine(Store(settings.db_location()), make_backend(settings), settings)
    try:
        yield eng
    finally:
        try:
            case.cleanup(eng, root)
        finally:
            eng.close()


def engine_env(case: BackendCase, engine: Engine, root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HVKUBE_")}
    env["HVKUBE_CONFIG"] = str(root / "no-config.toml")
    env["HVKUBE_DATA_DIR"] = str(root)
    env.update(case.env(engine.settings))
    return env

"""Shared fixtures: a real SQLite file and a simulated host at scale 0 in a temp folder."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from core import Engine, open_engine
from tests.pg_support import pg_server, pg_url, store_url
from tests.snapshot_diff import explain

__all__ = ["pg_server", "pg_url", "store_url"]

REPO = Path(__file__).resolve().parent.parent


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failed snapshot test gets the differing lines of the screen in its report."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.when == "call" and report.failed and "snap_compare" in item.fixturenames:
        from pytest_textual_snapshot import node_to_report_path

        text = explain(node_to_report_path(item))
        if text:
            report.sections.append(("snapshot text diff", text))


@pytest.fixture(autouse=True)
def _isolated_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads the user's config or data, or a developer's HVKUBE_* variables."""
    for key in list(os.environ):
        if key.startswith("HVKUBE_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("HVKUBE_CONFIG", str(tmp_path / "no-config.toml"))
    monkeypatch.setenv("HVKUBE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("HVKUBE_SIM_SCALE", "0")


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "hvkube.db"


@pytest.fixture
def engine(db_path: Path) -> Iterator[Engine]:
    with open_engine(db=str(db_path), backend="sim", sim_scale=0) as eng:
        yield eng


@pytest.fixture
def pool(engine: Engine) -> str:
    """A provisioned pool of 5: 1 hot, 3 warm, 1 cold."""
    engine.create_template("win11", r"C:\Templates\win11.vhdx", memory_mb=4096, cpus=2)
    engine.create_pool("bp", "win11", count=5, warm=3, hot=1)
    report = engine.provision_pool("bp")
    assert not report.failed
    return "bp"


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """`hvkube ARGS` as a user runs it: a real process, with this test's environment."""
    return subprocess.run(
        [sys.executable, "-m", "core.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=REPO,
    )

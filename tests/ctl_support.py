"""Helpers for the controller tests: isolated settings, an engine on a real SQLite file,
and `hvkube` as real processes."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from core import Engine, open_engine
from core.controller import Controller

REPO = Path(__file__).resolve().parent.parent


def isolated_env(tmp_path: Path, scale: str = "0") -> dict[str, str]:
    """The environment for a child `hvkube`: this test's database, no user config."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HVKUBE_")}
    env.update(
        HVKUBE_CONFIG=str(tmp_path / "no-config.toml"),
        HVKUBE_DATA_DIR=str(tmp_path / "data"),
        HVKUBE_DB=str(tmp_path / "data" / "hvkube.db"),
        HVKUBE_BACKEND="sim",
        HVKUBE_SIM_SCALE=scale,
        PYTHONPATH=str(REPO),
    )
    return env


def make_engine(tmp_path: Path, **overrides: Any) -> Engine:
    settings: dict[str, Any] = {
        "db": str(tmp_path / "data" / "hvkube.db"),
        "backend": "sim",
        "sim_scale": 0,
    }
    settings.update(overrides)
    return open_engine(**settings)


def once(engine: Engine, **kw: Any) -> Controller:
    """One controller tick (reconcile first), waiting for all the work it started."""
    controller = Controller(engine, tick_s=0.05, **kw)
    controller.run(threading.Event(), once=True)
    return controller


@contextlib.contextmanager
def running(engine: Engine, **kw: Any) -> Iterator[Controller]:
    """A controller running in a thread for the duration of the block."""
    kw.setdefault("tick_s", 0.05)
    controller = Controller(engine, **kw)
    stop = threading.Event()
    thread = threading.Thread(target=controller.run, args=(stop,), name="controller")
    thread.start()
    try:
        wait_for(lambda: controller.ticks > 0, "the controller's first tick")
        yield controller
    finally:
        stop.set()
        thread.join(120)
        assert not thread.is_alive()


def wait_for(check: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    """Poll until `check()` is truthy; generous deadlines, never a timing assertion."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


def hvkube(
    *args: str, env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "core.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=REPO,
    )


def start_controller(env: dict[str, str], *args: str, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "core.cli", "run", *args],
            stdout=out,
            stderr=out,
            env=env,
            cwd=REPO,
        )

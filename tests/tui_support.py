"""Helpers for the dashboard tests: a seeded demo database with every time and latency
fixed, deterministic VM screens, and waiting for the app to settle."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from textual.pilot import Pilot
from textual.widgets import DataTable

from core import Engine, open_engine
from core.settings import Settings
from hvkube_tui.app import HvkubeApp, fixed_clock, make_app
from hvkube_tui.demo import demo_settings, freeze_times, seed_demo, steady_screens

NOW = datetime(2026, 3, 2, 9, 30, 0, tzinfo=UTC)  # the fixed clock


def seeded(tmp_path: Path, **overrides: Any) -> tuple[Settings, Engine]:
    """The demo's database and simulated host at scale 0, frozen at NOW."""
    directory = tmp_path / "demo"
    seed_demo(directory, scale=0.0)
    settings = demo_settings(directory, scale=0.0, **overrides)
    engine = open_engine(settings)
    freeze_times(engine, NOW)
    steady_screens(engine)
    return settings, engine


def build_app(tmp_path: Path, **overrides: Any) -> HvkubeApp:
    settings, engine = seeded(tmp_path, **overrides)
    return make_app(
        settings,
        engine=engine,
        clock=fixed_clock(NOW),
        poll_interval=0.5,
        thumbnail_interval=0,
        screenshot_dir=tmp_path / "shots",
    )


async def settle(pilot: Pilot[Any]) -> None:
    """Wait until actions and thumbnails are done and a fresh read has been shown."""
    app = pilot.app
    assert isinstance(app, HvkubeApp)
    while not app.loaded.is_set():
        await pilot.pause(0.01)
    while any(w.is_running and w.group in ("actions", "thumbnail") for w in app.workers):
        await pilot.pause(0.01)
    await pilot.pause()
    # Two reads: the second one starts after everything before was shown. (None while a
    # dialog is open: polling is paused then.)
    for _ in range(0 if app._modal_open() else 2):
        start = app.polls
        app.refresh_now()
        while app.polls < start + 1 or not app._applied.is_set():
            await pilot.pause(0.01)
    await pilot.pause()
    while any(w.is_running and w.group == "thumbnail" for w in app.workers):
        await pilot.pause(0.01)
    await pilot.pause()
    # DataTable measures new and changed cells on its next idle; on a loaded machine a
    # picture taken before that shows columns at their old widths. Wait for the tables
    # on screen to have measured (bounded: a hidden table gets no idle).
    for _ in range(200):
        pending = [
            t
            for t in app.query(DataTable)
            if t.is_on_screen and (t._require_update_dimensions or t._updated_cells)
        ]
        if not pending:
            break
        await pilot.pause(0.01)
    await pilot.pause()
    # Last, the picture itself must hold still: anything still landing (a late layout, a
    # widget refreshed by a message in flight) shows as a difference between two looks.
    previous = None
    for _ in range(100):
        current = app.export_screenshot()
        if current == previous:
            break
        previous = current
        await pilot.pause(0.05)


async def until(
    pilot: Pilot[Any], check: Callable[[], bool], what: str, limit_s: float = 30.0
) -> None:
    """Wait for what a key press started to show (messages are handled asynchronously; on a
    busy machine one pause is not always enough). Fails with `what` after `limit_s`."""
    deadline = time.monotonic() + limit_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {limit_s:g} s: {what}")
        await pilot.pause(0.02)

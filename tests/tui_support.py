"""Helpers for the dashboard tests: a seeded demo database with every time and latency
fixed, deterministic VM screens, and waiting for the app to settle."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from textual.pilot import Pilot
from textual.widgets import DataTable

from core import Engine, open_engine
from core.backends.base import VMRef
from core.imaging import text_card
from core.settings import Settings
from hvkube_tui.app import HvkubeApp, make_app
from hvkube_tui.data import Clock
from hvkube_tui.demo import demo_settings, seed_demo

NOW = datetime(2026, 3, 2, 9, 30, 0, tzinfo=UTC)  # the fixed clock


def fixed_clock(when: datetime) -> Clock:
    return lambda: when


def _naive(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(tzinfo=None)


def freeze_times(engine: Engine, now: datetime) -> None:
    """Rewrite every timestamp and duration in the store to fixed values derived from `now`:
    the same pictures on every run (snapshot tests, README screenshots)."""
    t = engine.store.t
    base = _naive(now)
    for i, name in enumerate(n for (n,) in t.VM.select(t.VM.name).order_by(t.VM.name).tuples()):
        row = t.VM.get(t.VM.name == name)
        values: dict[str, Any] = {"created_at": base - timedelta(hours=3)}
        if row.last_resumed_at is not None:
            values["last_resumed_at"] = base - timedelta(seconds=95 + 61 * i)
            values["last_resume_ms"] = 90.0 + 23.0 * (i % 5)
        t.VM.update(**values).where(t.VM.name == name).execute()
    ids = [i for (i,) in t.Agent.select(t.Agent.id).order_by(t.Agent.id).tuples()]
    for n, agent_id in enumerate(ids):
        row = t.Agent.get(t.Agent.id == agent_id)
        created = base - timedelta(minutes=5 * (len(ids) - n))
        values = {"created_at": created}
        if row.started_at is not None:
            values["started_at"] = created + timedelta(seconds=4)
        if row.finished_at is not None:
            values["finished_at"] = created + timedelta(seconds=4 + 73)
        t.Agent.update(**values).where(t.Agent.id == agent_id).execute()
    top = t.Event.select(t.Event.id).order_by(t.Event.id.desc()).scalar() or 0
    for (event_id,) in t.Event.select(t.Event.id).tuples():
        t.Event.update(
            started_at=base - timedelta(seconds=7 * (top - event_id) + 30),
            duration_ms=60.0 + (event_id * 37) % 180,
        ).where(t.Event.id == event_id).execute()


def steady_screens(engine: Engine) -> None:
    """The simulated screen carries a wall-clock stamp; tests draw it without one."""
    backend: Any = engine.backend

    def screenshot(ref: VMRef) -> bytes:
        name = ref.name
        host = backend.get_vm(ref)
        state = host.raw_state if host else "gone"
        if state == "Off":
            return text_card([name, state], background=(0, 0, 0))
        return text_card([name, state])

    backend.screenshot = screenshot


def seeded(tmp_path: Path, **overrides: Any) -> tuple[Settings, Engine]:
    """The demo's database and simulated host at scale 0, frozen at NOW."""
    directory = tmp_path / "demo"
    seed_demo(directory, scale=0.0)
    settings = demo_settings(directory, scale=0.0, **overrides)
    if settings.readonly:  # a read-only engine cannot rewrite the times: a writable one does
        with open_engine(settings.replace(readonly=False)) as writer:
            freeze_times(writer, NOW)
        engine = open_engine(settings)
    else:
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
    for _ in range(0 if app.modal_open() else 2):
        start = app.polls
        app.refresh_now()
        while app.polls < start + 1 or not app.applied.is_set():
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

"""Snapshots of the dashboard: every view, the VM detail pane with its thumbnail, help,
a confirmation, a form with an inline error, read-only mode and an 80x24 terminal.

The database is the demo's, seeded at simulated speed 0 with every time fixed, and the
app's clock is fixed, so the pictures are the same on every run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot

from tests.tui_support import build_app, settle

WIDE = (120, 36)
SMALL = (80, 24)


def _app(tmp_path: Path, **overrides: Any) -> Any:
    return build_app(tmp_path, **overrides)


def _goto(view: str, row: str | None = None, press: tuple[str, ...] = ()) -> Any:
    """Show `view` (with the cursor on `row`), press the keys, and wait until it all shows:
    keys are pressed here rather than by snap_compare, which takes its picture without
    waiting for what they started."""

    async def run_before(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        app: Any = pilot.app
        if row is None:
            app.action_show_view(view)
        else:
            assert app.select_row(view, row)
        await settle(pilot)
        if press:
            await pilot.press(*press)
            await settle(pilot)

    return run_before


@pytest.mark.parametrize("view", ["pools", "templates", "agents", "events"])
def test_view(view: str, snap_compare: Any, tmp_path: Path) -> None:
    assert snap_compare(_app(tmp_path), terminal_size=WIDE, run_before=_goto(view))


def test_vms_with_thumbnail(snap_compare: Any, tmp_path: Path) -> None:
    assert snap_compare(_app(tmp_path), terminal_size=WIDE, run_before=_goto("vms", "browser-001"))


def test_vm_in_error(snap_compare: Any, tmp_path: Path) -> None:
    assert snap_compare(_app(tmp_path), terminal_size=WIDE, run_before=_goto("vms", "office-004"))


def test_help(snap_compare: Any, tmp_path: Path) -> None:
    assert snap_compare(
        _app(tmp_path), terminal_size=WIDE, run_before=_goto("vms", press=("question_mark",))
    )


def test_confirm_reset(snap_compare: Any, tmp_path: Path) -> None:
    assert snap_compare(
        _app(tmp_path), terminal_size=WIDE, run_before=_goto("vms", "browser-003", press=("x",))
    )


def test_new_pool_form_with_error(snap_compare: Any, tmp_path: Path) -> None:
    assert snap_compare(
        _app(tmp_path),
        terminal_size=WIDE,
        run_before=_goto("pools", press=("n", *"web pool")),
    )


def test_readonly(snap_compare: Any, tmp_path: Path) -> None:
    assert snap_compare(
        _app(tmp_path, readonly=True),
        terminal_size=WIDE,
        run_before=_goto("vms", "browser-001"),
    )


@pytest.mark.parametrize("view", ["pools", "vms"])
def test_small_terminal(view: str, snap_compare: Any, tmp_path: Path) -> None:
    row = "browser-002" if view == "vms" else None
    assert snap_compare(_app(tmp_path), terminal_size=SMALL, run_before=_goto(view, row))


# At 80x24, the advertised minimum: what explains a problem is on screen, first in the
# detail pane, and help shows how to close it.


def test_small_vm_in_error(snap_compare: Any, tmp_path: Path) -> None:
    assert snap_compare(_app(tmp_path), terminal_size=SMALL, run_before=_goto("vms", "office-004"))


def test_small_failed_agent(snap_compare: Any, tmp_path: Path) -> None:
    assert snap_compare(_app(tmp_path), terminal_size=SMALL, run_before=_goto("agents", "3"))


def test_small_help(snap_compare: Any, tmp_path: Path) -> None:
    assert snap_compare(
        _app(tmp_path), terminal_size=SMALL, run_before=_goto("vms", press=("question_mark",))
    )

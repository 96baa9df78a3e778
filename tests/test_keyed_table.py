"""The dashboard's tables show whole cells once their columns have been measured, even
when the screen was drawn in between, as happens on a busy machine or when a value grows
(a VM's state from "off" to "running", a latency from "-" to "111ms")."""

from __future__ import annotations

import asyncio

from textual.app import App, ComposeResult

from hvkube_tui.widgets.keyed_table import KeyedTable
from tests.snapshot_diff import screen_lines

COLUMNS = (("name", "NAME"), ("template", "TEMPLATE"))


class _TableApp(App[None]):
    def compose(self) -> ComposeResult:
        yield KeyedTable("pools", COLUMNS, id="t")


def test_a_cell_that_grows_is_shown_whole_after_a_draw_in_between() -> None:
    async def scenario() -> list[str]:
        app = _TableApp()
        async with app.run_test(size=(60, 8)) as pilot:
            table = app.query_one(KeyedTable)
            table.sync({"a": ("a", "b"), "c": ("c", "d")})
            await pilot.pause()
            table.sync({"a": ("browser", "win11-base"), "c": ("c", "d")})
            app.export_screenshot()  # drawn before the table measured the new values
            await pilot.pause()
            await pilot.pause()
            return screen_lines(app.export_screenshot())

    lines = asyncio.run(scenario())
    assert any("browser" in line and "win11-base" in line for line in lines), lines
    assert not any("…" in line for line in lines), lines

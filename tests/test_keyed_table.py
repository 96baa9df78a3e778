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


def test_columns_are_as_wide_as_datatable_would_measure_them() -> None:
    """The widths the table sets itself are the ones DataTable's own measuring gives (the
    look of the dashboard before it set them): grown by new rows, kept when rows go,
    fitted again to the rows shown when a cell of the column changes."""
    steps: list[dict[str, tuple[str, str]]] = [
        {"a": ("a", "b"), "c": ("c", "d")},
        {"a": ("browser", "win11-base"), "c": ("c", "d")},
        {"a": ("browser", "win11-base"), "c": ("c", "d"), "w": ("a-very-long-name", "x")},
        {"a": ("browser", "win11-base"), "c": ("c", "d")},  # the widest row goes: kept
        {"a": ("browser", "win11"), "c": ("cc", "d")},  # a cell changes: fitted again
        {"a": ("b", "w"), "c": ("⟳ saving", "d")},
        {},
        {"z": ("zz", "zz")},
    ]

    async def scenario() -> list[tuple[list[int], list[int]]]:
        class _Both(App[None]):
            def compose(self) -> ComposeResult:
                yield KeyedTable("pools", COLUMNS, id="ours")
                yield KeyedTable("pools", COLUMNS, id="measured")

        app = _Both()
        seen: list[tuple[list[int], list[int]]] = []
        async with app.run_test(size=(80, 20)) as pilot:
            ours = app.query_one("#ours", KeyedTable)
            measured = app.query_one("#measured", KeyedTable)
            await pilot.pause()
            for column in measured.columns.values():
                column.auto_width = True  # DataTable measures this one itself
            for rows in steps:
                ours.sync(rows)
                measured.sync(rows)
                for _ in range(3):
                    await pilot.pause()
                seen.append(
                    (
                        [c.get_render_width(ours) for c in ours.ordered_columns],
                        [c.get_render_width(measured) for c in measured.ordered_columns],
                    )
                )
        return seen

    for step, (ours, measured) in enumerate(asyncio.run(scenario())):
        assert ours == measured, (step, ours, measured)

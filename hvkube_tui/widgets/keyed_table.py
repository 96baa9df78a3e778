"""A DataTable updated by keyed diffs: rows are added, changed cell by cell, or removed,
never cleared and refilled, so the cursor and the scroll position stay put."""

from __future__ import annotations

from collections.abc import Iterable

from rich.text import Text
from textual.widgets import DataTable
from textual.widgets.data_table import RowKey

from hvkube_tui.data import Cell, Row


def render_cell(cell: Cell) -> Text:
    if isinstance(cell, tuple):
        text, style = cell
        return Text(text, style=style, no_wrap=True, overflow="ellipsis")
    return Text(cell, no_wrap=True, overflow="ellipsis")


class KeyedTable(DataTable[Text]):
    """Rows keyed by a string; `sync()` makes the table show exactly the given rows."""

    def __init__(self, view: str, columns: tuple[tuple[str, str], ...], **kwargs: object) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)  # type: ignore[arg-type]
        self.view = view
        self.column_spec = columns
        self.shown: dict[str, Row] = {}
        self._measured: list[int] = []  # column widths the drawn cells were cut to

    def on_mount(self) -> None:
        for key, label in self.column_spec:
            self.add_column(label, key=key)

    def _update_dimensions(self, new_rows: Iterable[RowKey]) -> None:
        # DataTable measures new and changed cells when idle, and caches drawn cells by
        # content, not width: a row drawn before its columns were measured would keep
        # showing its cells cut ("bro…") until it next changes. So when a width moved,
        # what was drawn goes.
        super()._update_dimensions(new_rows)
        widths = [column.get_render_width(self) for column in self.ordered_columns]
        if widths != self._measured:
            self._measured = widths
            self._clear_caches()
            self.refresh()

    @property
    def cursor_key(self) -> str | None:
        if not self.shown or self.cursor_row < 0 or self.cursor_row >= self.row_count:
            return None
        try:
            row_key, _ = self.coordinate_to_cell_key(self.cursor_coordinate)
        except Exception:
            return None
        return row_key.value

    def select_key(self, key: str) -> bool:
        if key not in self.shown:
            return False
        self.move_cursor(row=self.get_row_index(key))
        return True

    def sync(self, rows: dict[str, Row]) -> int:
        """Diff `rows` (in display order) against what is shown; returns cells touched."""
        keep = self.cursor_key
        touched = 0
        removed = [key for key in self.shown if key not in rows]
        if removed and len(removed) > 200 and len(removed) > len(self.shown) // 2:
            # Most rows go (a new filter, say): rebuilding is cheaper than removing one by one.
            self.clear()
            self.shown = {}
            removed = []
        for key in removed:
            self.remove_row(key)
            del self.shown[key]
            touched += 1
        added = False
        columns = [key for key, _ in self.column_spec]
        for key, row in rows.items():
            old = self.shown.get(key)
            if old is None:
                self.add_row(*(render_cell(c) for c in row), key=key)
                added = True
                touched += len(row)
            elif old != row:
                for index, (before, after) in enumerate(zip(old, row, strict=True)):
                    if before != after:
                        self.update_cell(key, columns[index], render_cell(after), update_width=True)
                        touched += 1
            else:
                continue
            self.shown[key] = row
        if added and list(self.shown) != list(rows):
            order = {key: i for i, key in enumerate(rows)}
            self.shown = {key: self.shown[key] for key in rows}
            self.sort(columns[0], key=lambda cell: order.get(cell.plain, 0))
        if keep is not None and keep in self.shown and self.cursor_key != keep:
            self.move_cursor(row=self.get_row_index(keep), animate=False)
        return touched

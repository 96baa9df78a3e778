"""A DataTable updated by keyed diffs: rows are added, changed cell by cell, or removed,
never cleared and refilled, so the cursor and the scroll position stay put.

Column widths are kept here rather than left to DataTable's own measuring. DataTable
measures new and changed cells when it is next idle, and caches drawn cells by content,
not width: a row drawn before its column was measured would keep its cells cut ("bro…")
until it next changed. So every column gets a fixed width (`add_column(width=...)`), set
in `sync()` together with the cells that need it; the change that brings the new content
also invalidates what was drawn before, and the first drawing is already whole.

The widths follow DataTable's own rule, so the table looks as it did when it measured
them itself: a column is as wide as its label and the widest cell ever added to it; when
a cell of it changes, as wide as its label and its widest cell now shown (rows removed
since no longer count).
"""

from __future__ import annotations

from collections import Counter

from rich.cells import cell_len
from rich.text import Text
from textual.widgets import DataTable
from textual.widgets.data_table import ColumnKey

from hvkube_tui.data import Cell, Row


def render_cell(cell: Cell) -> Text:
    if isinstance(cell, tuple):
        text, style = cell
        return Text(text, style=style, no_wrap=True, overflow="ellipsis")
    return Text(cell, no_wrap=True, overflow="ellipsis")


def text_width(text: str) -> int:
    """The cells `text` takes in a table, measured as Rich measures a Text: its widest line."""
    return max((cell_len(line) for line in text.splitlines()), default=0)


def cell_width(cell: Cell) -> int:
    return text_width(cell[0] if isinstance(cell, tuple) else cell)


class KeyedTable(DataTable[Text]):
    """Rows keyed by a string; `sync()` makes the table show exactly the given rows."""

    def __init__(
        self,
        view: str,
        columns: tuple[tuple[str, str], ...],
        *,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, id=id, classes=classes)
        self.view = view
        self.column_spec = columns
        self.shown: dict[str, Row] = {}
        self._column_keys: list[ColumnKey] = []
        self._label_widths: list[int] = []
        self._widths: list[int] = []  # each column's width (cells, without padding)
        self._counts: list[Counter[int]] = []  # per column: how many shown cells have each width

    def on_mount(self) -> None:
        for key, label in self.column_spec:
            width = text_width(Text.from_markup(label).plain)
            self._column_keys.append(self.add_column(label, width=width, key=key))
            self._label_widths.append(width)
            self._widths.append(width)
            self._counts.append(Counter())

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

    def _count(self, index: int, cell: Cell) -> int:
        width = cell_width(cell)
        self._counts[index][width] += 1
        return width

    def _uncount(self, index: int, cell: Cell) -> None:
        counts = self._counts[index]
        width = cell_width(cell)
        counts[width] -= 1
        if counts[width] <= 0:
            del counts[width]

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
            for counts in self._counts:
                counts.clear()
        for key in removed:
            for index, cell in enumerate(self.shown[key]):
                self._uncount(index, cell)
            self.remove_row(key)
            del self.shown[key]
            touched += 1
        added = False
        changed_columns: set[int] = set()
        widths = self._widths
        columns = [key for key, _ in self.column_spec]
        for key, row in rows.items():
            old = self.shown.get(key)
            if old is None:
                self.add_row(*(render_cell(c) for c in row), key=key)
                for index, cell in enumerate(row):
                    widths[index] = max(widths[index], self._count(index, cell))
                added = True
                touched += len(row)
            elif old != row:
                for index, (before, after) in enumerate(zip(old, row, strict=True)):
                    if before != after:
                        # update_width only for a column DataTable sizes itself: it measures
                        # the whole column again for each cell that narrows (seconds at
                        # 10,000 rows). Ours are sized here; a changed cell is drawn anew.
                        self.update_cell(
                            key,
                            columns[index],
                            render_cell(after),
                            update_width=self.columns[self._column_keys[index]].auto_width,
                        )
                        self._uncount(index, before)
                        self._count(index, after)
                        changed_columns.add(index)
                        touched += 1
            else:
                continue
            self.shown[key] = row
        for index in changed_columns:
            widths[index] = max(self._label_widths[index], max(self._counts[index], default=0))
        resized = False
        for index, width in enumerate(widths):
            column = self.columns[self._column_keys[index]]
            if column.width != width:
                column.width = width
                resized = True
        if resized:
            # The table's scrollable width follows its columns: have DataTable work it out
            # again when next idle (what update_width=True would ask for, without measuring).
            self._require_update_dimensions = True
            self.refresh()
        if added and list(self.shown) != list(rows):
            order = {key: i for i, key in enumerate(rows)}
            self.shown = {key: self.shown[key] for key in rows}
            self.sort(columns[0], key=lambda cell: order.get(cell.plain, 0))
        if keep is not None and keep in self.shown and self.cursor_key != keep:
            self.move_cursor(row=self.get_row_index(keep), animate=False)
        return touched

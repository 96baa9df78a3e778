"""What every view of the dashboard has: a keyed table with its columns, the rows it was
last given, a filter, the rows an action is busy with, its part of the detail pane, and
the helpers its actions use.

A view's row formatting (`records`, `format_row`, `ticking`) is made of class methods
that touch no widget: the poll worker calls them in its own thread (see
hvkube_tui/views/formatter.py). Everything else runs on the UI thread.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Mapping
from datetime import datetime
from itertools import islice
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from rich.console import RenderableType
from rich.text import Text
from textual import on
from textual.widget import Widget

from hvkube_tui.abstract import AbstractPumpMeta
from hvkube_tui.actions import VIEW_TITLES, start_action
from hvkube_tui.data import Row, Snapshot
from hvkube_tui.messages import ActionDone, ActionFailed, ActionProgress
from hvkube_tui.widgets.dialogs import ConfirmScreen
from hvkube_tui.widgets.keyed_table import KeyedTable

if TYPE_CHECKING:
    from hvkube_tui.app import HvkubeApp

T = TypeVar("T")
BUSY_STYLE = "bold yellow"


class View(KeyedTable, metaclass=AbstractPumpMeta):  # type: ignore[metaclass]
    """One view: its table is what the view switcher shows."""

    NAME: ClassVar[str]
    COLUMNS: ClassVar[tuple[tuple[str, str], ...]]
    # Which cell shows an action in progress ("⟳ saving"); never the first (the row's key).
    BUSY_COLUMN: ClassVar[int] = 1
    CLOCK: ClassVar[bool] = False  # rows show times that move (ages, uptimes)
    # The rows the table holds at first. A DataTable takes one to two milliseconds per row it
    # is given (it measures every cell), so at fleet scale it shows the first WINDOW rows
    # that pass the filter and the crumbs say how many match: `/` finds any other, and
    # moving the cursor onto the last row brings the next WINDOW.
    WINDOW: ClassVar[int] = 250

    def __init__(self, dashboard: HvkubeApp) -> None:
        super().__init__(self.NAME, self.COLUMNS, id=self.NAME)
        self.dashboard = dashboard
        self.latest: dict[str, Row] = {}  # the rows last formatted, before busy marks and filter
        self.stale = False  # new rows came while another view was on screen
        self.busy: dict[str, str] = {}  # row key -> what an action is doing to it
        self.needle = ""  # the filter
        self.matching = 0  # rows that pass the filter (every row without one)
        self.window = self.WINDOW  # the most rows the table holds now
        self.on_screen: frozenset[str] = frozenset()  # the keys the table holds
        self._haystack: dict[str, tuple[Row, str]] = {}  # key -> (row, its text lowered)

    # -- rows (class methods: called in the poll worker's thread) ----------------------------

    @classmethod
    def records(cls, snap: Snapshot) -> Mapping[str, dict[str, Any]] | None:
        """The view's records when the snapshot keeps them as dicts (few rows, formatted
        whole every time); None when it keeps raw database rows (formatted one by one,
        only when they change)."""
        return None

    @classmethod
    @abstractmethod
    def format_row(cls, record: dict[str, Any], now: datetime) -> Row:
        """The view's cells for one record."""

    @classmethod
    def ticking(cls, raw: tuple[Any, ...]) -> bool:
        """Does this raw row show a time that moves (an uptime, an age)?"""
        return cls.CLOCK

    # -- rows on screen ------------------------------------------------------------------------

    def set_rows(self, rows: dict[str, Row], *, on_screen: bool) -> int:
        """Take new rows; the table is brought up to date now if it is on screen, else when
        it is next shown. Returns the cells touched."""
        self.latest = rows
        self.stale = not on_screen
        return self.redraw() if on_screen else 0

    def redraw(self) -> int:
        """Show the latest rows with the busy marks and through the filter."""
        self.stale = False
        rows = self.latest
        busy = {key: text for key, text in self.busy.items() if key in rows}
        if busy:
            rows = dict(rows)
            for key, text in busy.items():
                cells = list(rows[key])
                cells[self.BUSY_COLUMN] = (f"⟳ {text}", BUSY_STYLE)
                rows[key] = tuple(cells)
        needle = self.needle.lower()
        if needle:
            rows = {key: row for key, row in rows.items() if needle in self._text(key, row)}
        self.matching = len(rows)
        if len(rows) > self.window:
            rows = dict(islice(rows.items(), self.window))
        touched = self.sync(rows)
        self.on_screen = frozenset(self.shown)
        return touched

    def _text(self, key: str, row: Row) -> str:
        """The row's text as the filter matches it, kept while the row stays the same."""
        seen = self._haystack.get(key)
        if seen is not None and seen[0] is row:
            return seen[1]
        text = " ".join(c if isinstance(c, str) else c[0] for c in row).lower()
        self._haystack[key] = (row, text)
        if len(self._haystack) > 2 * len(self.latest) + 100:  # rows that went
            self._haystack = {k: v for k, v in self._haystack.items() if k in self.latest}
        return text

    def view_shown(self) -> None:
        """Called when the view comes on screen."""

    def filter_rows(self, needle: str) -> None:
        self.needle = needle
        self.window = self.WINDOW
        self.redraw()

    def show_more(self) -> bool:
        """Hold the next WINDOW rows too, when more pass the filter; whether it did."""
        if self.matching <= self.row_count:
            return False
        self.window = self.row_count + self.WINDOW
        self.redraw()
        return True

    # The operator's moves onto the last row held bring the next rows (not the cursor moves
    # a redraw makes when rows go).

    def _more_at_the_end(self) -> None:
        if self.cursor_row == self.row_count - 1 and self.show_more():
            self.dashboard.main.update_crumbs()

    def action_cursor_down(self) -> None:
        super().action_cursor_down()
        self._more_at_the_end()

    def action_page_down(self) -> None:
        super().action_page_down()
        self._more_at_the_end()

    def action_scroll_bottom(self) -> None:
        super().action_scroll_bottom()
        self._more_at_the_end()

    # -- detail pane ---------------------------------------------------------------------------

    def describe(self, snap: Snapshot | None, now: datetime) -> RenderableType:
        """The detail pane's text for the row under the cursor."""
        if snap is None:
            return Text("reading…", style="dim")
        key = self.cursor_key
        record = snap.record(self.NAME, key) if key is not None else None
        if record is None:
            return Text("nothing selected", style="dim")
        return self.detail(record, now)

    @abstractmethod
    def detail(self, record: dict[str, Any], now: datetime) -> RenderableType:
        """What the detail pane shows for the selected record."""

    def detail_widgets(self) -> list[Widget]:
        """Widgets of this view in the detail pane, beside the text (shown with the view)."""
        return []

    def show_detail(self, snap: Snapshot | None) -> None:
        """Bring this view's detail widgets up to date with the row under the cursor."""

    # -- actions -------------------------------------------------------------------------------

    def selected(self) -> str | None:
        key = self.cursor_key
        if key is None:
            self.notify(f"no {VIEW_TITLES[self.NAME][:-1].lower()} selected", severity="warning")
        return key

    def run_engine(
        self,
        key: str,
        busy: str,
        what: str,
        call: Callable[[], T],
        done: Callable[[T], str],
    ) -> bool:
        """Run `call` in a thread worker, show `busy` in the row meanwhile; the end comes
        back as ActionDone or ActionFailed (the app says it)."""
        if key in self.busy:
            self.notify(f"{key} is busy ({self.busy[key]})", severity="warning")
            return False
        self.busy[key] = busy
        self.redraw()
        start_action(self, self.NAME, key, what, call, done)
        return True

    def progress(self, key: str) -> Callable[[str, str, str], None]:
        """An engine progress callback (called in the worker) that shows each step in the row."""

        def report(vm: str, step: str, detail: str) -> None:
            self.post_message(ActionProgress(self.NAME, key, f"{step} {vm}"))

        return report

    def confirm(self, question: str, then: Callable[[], object], label: str = "Yes") -> None:
        def answered(yes: bool | None) -> None:
            if yes:
                then()

        self.app.push_screen(ConfirmScreen(question, label), answered)

    @on(ActionProgress)
    def _progress_shown(self, message: ActionProgress) -> None:
        message.stop()
        if message.key in self.busy:
            self.busy[message.key] = message.text
            self.redraw()

    @on(ActionDone)
    @on(ActionFailed)
    def _action_ended(self, message: ActionDone | ActionFailed) -> None:
        # The message goes on to the app, which says how it went and reads the store again.
        self.busy.pop(message.key, None)
        self.redraw()
        self.after_action()

    def after_action(self) -> None:
        """Called when an action of this view has ended (done or failed)."""

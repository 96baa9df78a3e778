"""The dashboard's screen: header, view tabs, the view on screen, its detail pane, the
`/` and `:` prompt and the footer."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.message import Message
from textual.screen import Screen
from textual.suggester import SuggestFromList
from textual.widgets import ContentSwitcher, DataTable, Footer, Input, Static

from hvkube_tui.actions import VIEW_ALIASES, VIEW_TITLES
from hvkube_tui.data import Row, Snapshot
from hvkube_tui.views import VIEW_CLASSES, VIEW_NAMES, View
from hvkube_tui.widgets.header import Crumbs, Header

if TYPE_CHECKING:
    from hvkube_tui.app import HvkubeApp


class MainScreen(Screen[None]):
    class Ready(Message):
        """The screen and its views are mounted: data can be shown."""

    def __init__(self, dashboard: HvkubeApp) -> None:
        super().__init__()
        self.dashboard = dashboard
        self.views: dict[str, View] = {cls.NAME: cls(dashboard) for cls in VIEW_CLASSES}
        backend = dashboard.engine.backend
        self.header = Header(
            banner=dashboard.banner,
            backend=backend.name,
            simulated=backend.simulated,
            readonly=dashboard.readonly,
            id="header",
        )
        self.crumbs = Crumbs(id="crumbs")
        self.detail_text = Static(id="detail-text")
        self.prompt = Input(id="prompt")
        self.prompt_mode: str | None = None  # "filter" or "jump" while the prompt is open

    @property
    def current(self) -> View:
        return self.views[self.dashboard.view]

    def compose(self) -> ComposeResult:
        yield self.header
        yield self.crumbs
        with ContentSwitcher(initial=self.dashboard.view, id="views"):
            yield from self.views.values()
        with Horizontal(id="detail"):
            yield self.detail_text
            for view in self.views.values():
                yield from view.detail_widgets()
        yield self.prompt
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.prompt.display = False
        self._show_detail_widgets()
        self.header.show(self.dashboard.snapshot)
        self.update_crumbs()
        self.current.focus()
        self.post_message(self.Ready())

    def on_resize(self) -> None:
        self.header.show(self.header.snapshot)

    # -- what the poll worker read -------------------------------------------------------------

    def show_snapshot(self, snapshot: Snapshot, rows: dict[str, dict[str, Row]]) -> int:
        """Give every view its rows (only the one on screen redraws now); returns the cells
        touched. A view left out of `rows` was not formatted this time: it keeps its rows."""
        cells = 0
        for name, view in self.views.items():
            if name in rows:
                cells += view.set_rows(rows[name], on_screen=view is self.current)
        self.header.show(snapshot)
        self.update_crumbs()
        self.update_detail()
        return cells

    def update_crumbs(self) -> None:
        view = self.current
        self.crumbs.show(
            self.dashboard.snapshot, view.NAME, view.needle, view.row_count, view.matching
        )

    def update_detail(self) -> None:
        view = self.current
        snap = self.dashboard.snapshot
        self.detail_text.update(view.describe(snap, self.dashboard.clock()))
        view.show_detail(snap)

    @on(DataTable.RowHighlighted)
    def _row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table is self.current:
            self.update_detail()

    # -- switching views -----------------------------------------------------------------------

    def show_view(self, name: str) -> None:
        view = self.views[name]
        if view.stale:
            view.redraw()
        self.query_one("#views", ContentSwitcher).current = name
        self.hide_prompt()
        self._show_detail_widgets()
        view.view_shown()
        self.update_crumbs()
        self.update_detail()
        view.focus()

    def _show_detail_widgets(self) -> None:
        for view in self.views.values():
            for widget in view.detail_widgets():
                widget.display = view is self.current

    # -- the prompt: / filter, : jump ----------------------------------------------------------

    def show_prompt(self, mode: str) -> None:
        view = self.current
        prompt = self.prompt
        self.prompt_mode = mode
        if mode == "filter":
            prompt.placeholder = f"/ filter {VIEW_TITLES[view.NAME]} (Enter keeps it, Esc clears)"
            prompt.suggester = None
            prompt.value = view.needle
        else:
            prompt.placeholder = ": view name: pools, templates, vms, agents, events"
            prompt.suggester = SuggestFromList(list(VIEW_NAMES), case_sensitive=False)
            prompt.value = ""
        prompt.display = True
        prompt.focus()

    def hide_prompt(self) -> None:
        if self.prompt.display:
            self.prompt.display = False
            self.prompt_mode = None
            self.current.focus()

    def clear(self) -> None:
        """Esc: close the prompt (a filter being typed goes too), or clear the filter."""
        view = self.current
        if self.prompt.display:
            if self.prompt_mode == "filter":
                view.filter_rows("")
            self.hide_prompt()
        elif view.needle:
            view.filter_rows("")
        self.update_crumbs()
        self.update_detail()

    @on(Input.Changed, "#prompt")
    def _prompt_changed(self, event: Input.Changed) -> None:
        if self.prompt_mode == "filter":
            self.current.filter_rows(event.value.strip())
            self.update_crumbs()
            self.update_detail()

    @on(Input.Submitted, "#prompt")
    def _prompt_submitted(self, event: Input.Submitted) -> None:
        mode = self.prompt_mode
        value = event.value.strip().lstrip(":").lower()
        self.hide_prompt()
        if mode != "jump" or not value:
            return
        if value in ("q", "quit"):
            self.app.exit()
            return
        view = VIEW_ALIASES.get(value)
        if view is None:
            self.notify(
                f"no view {value!r}; try :pools :templates :vms :agents :events",
                severity="warning",
            )
            return
        self.dashboard.action_show_view(view)

"""The selected VM's screen, as large as the terminal allows, refreshed about once a
second: the operator's live look at what an agent is doing. Esc closes it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Center
from textual.screen import Screen
from textual.widgets import Static

from hvkube_tui.messages import ThumbnailFailed, ThumbnailReady
from hvkube_tui.widgets.thumbnail import look

if TYPE_CHECKING:
    from core.engine import Engine

REFRESH_S = 1.0


class ScreenView(Screen[None]):
    BINDINGS = [
        Binding("escape", "close", "close", show=False),
        Binding("v", "close", "close", show=False),
        Binding("q", "close", "close", show=False),
    ]

    def __init__(self, engine: Engine, vm: str, refresh_s: float = REFRESH_S) -> None:
        super().__init__()
        self.engine = engine
        self.vm = vm
        self.refresh_s = refresh_s
        self.title_bar = Static(id="screen-title")
        self.image = Static(Text(f"reading the screen of {vm}…", style="dim"), id="screen-image")
        self.digest = ""
        self.frames = 0  # screens drawn (tests wait on it)

    def compose(self) -> ComposeResult:
        yield self.title_bar
        with Center(id="screen-view"):
            yield self.image

    def on_mount(self) -> None:
        self._title("")
        self._fetch()
        if self.refresh_s > 0:
            self.set_interval(self.refresh_s, self._fetch)

    def _title(self, note: str) -> None:
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append(f" {self.vm} ", style="bold reverse")
        text.append(f"  live, every {self.refresh_s:g} s  ·  Esc closes")
        if note:
            text.append(f"  ·  {note}", style="dim")
        self.title_bar.update(text)

    def _cells(self) -> tuple[int, int]:
        width = self.size.width or 80
        height = (self.size.height or 24) - 1
        return max(8, width), max(4, height)

    def _fetch(self) -> None:
        self._read(self.vm, *self._cells())

    @work(thread=True, exclusive=True, group="screen", exit_on_error=False)
    def _read(self, vm: str, cols: int, rows: int) -> None:
        self.post_message(look(self.engine, vm, cols, rows, self.digest))

    def on_thumbnail_ready(self, message: ThumbnailReady) -> None:
        message.stop()
        self.frames += 1
        if message.digest != self.digest:
            self.digest = message.digest
            self.image.update(message.image)
        self._title("")

    def on_thumbnail_failed(self, message: ThumbnailFailed) -> None:
        message.stop()
        self.frames += 1
        self._title(message.error)

    def action_close(self) -> None:
        self.dismiss(None)

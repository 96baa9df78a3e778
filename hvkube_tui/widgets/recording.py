"""A recorded session, frame by frame: the screen as it was, when, and the action before it.
Left and right step through it, Home and End jump to its ends."""

from __future__ import annotations

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, Static

from core.errors import HvkubeError
from core.recording.archive import Archive, Entry
from core.recording.export import describe
from hvkube_tui.widgets.thumbnail import png_to_halfblocks

SCREEN_COLS, SCREEN_ROWS = 96, 26


class RecordingScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("left", "step(-1)", "previous", show=False),
        Binding("right", "step(1)", "next", show=False),
        Binding("home", "jump(0)", "first", show=False),
        Binding("end", "jump(-1)", "last", show=False),
        Binding("escape", "close", "close", show=False),
        Binding("q", "close", "close", show=False),
    ]

    def __init__(self, archive: Archive, rec_id: str, title: str) -> None:
        super().__init__(classes="dialog-screen")
        self.archive = archive
        self.rec_id = rec_id
        self.title_text = title
        self.entries: list[Entry] = []
        self.index = 0

    def compose(self) -> ComposeResult:
        with Vertical(id="recording", classes="dialog"):
            yield Label(self.title_text, id="recording-title")
            yield Static(Text("reading…", style="dim"), id="recording-where")
            yield Static(id="recording-screen")
            yield Static(id="recording-action")
            yield Label("← → step, Home/End first/last, Esc to close", classes="hint")

    def on_mount(self) -> None:
        self._load()

    @work(thread=True, exclusive=True, exit_on_error=False)
    def _load(self) -> None:
        try:
            entries = [e for e in self.archive.entries(self.rec_id) if e.frame is not None]
        except HvkubeError as exc:
            self.app.call_from_thread(self._show_text, exc.message)
            return
        self.app.call_from_thread(self._loaded, entries)

    def _loaded(self, entries: list[Entry]) -> None:
        self.entries = entries
        if not entries:
            self._show_text("no frames recorded yet")
            return
        self.index = len(entries) - 1
        self.show_frame()

    def _show_text(self, message: str) -> None:
        self.query_one("#recording-where", Static).update(Text(message, style="dim"))

    def show_frame(self) -> None:
        entry = self.entries[self.index]
        where = Text.assemble(
            (f"frame {self.index + 1}/{len(self.entries)}", "bold"),
            f"  {entry.at}  {entry.vm}  {entry.width}x{entry.height}",
        )
        self.query_one("#recording-where", Static).update(where)
        try:
            data = self.archive.frame(self.rec_id, entry.frame or "")
            picture = png_to_halfblocks(data, SCREEN_COLS, SCREEN_ROWS)
        except (HvkubeError, OSError) as exc:
            picture = Text(f"frame unreadable: {exc}", style="dim")
        self.query_one("#recording-screen", Static).update(picture)
        # Text the agent typed is shown as text (Text(), not markup).
        action = describe(entry.action) or "(no action: the screen changed by itself)"
        self.query_one("#recording-action", Static).update(Text(action))

    def action_step(self, delta: int) -> None:
        if self.entries:
            self.index = max(0, min(len(self.entries) - 1, self.index + delta))
            self.show_frame()

    def action_jump(self, where: int) -> None:
        if self.entries:
            self.index = where % len(self.entries)
            self.show_frame()

    def action_close(self) -> None:
        self.dismiss(None)

"""Modal dialogs: confirmation before anything destructive, and `?` help."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static

from core.markup import literal


class ConfirmScreen(ModalScreen[bool]):
    """Ask before a destructive action; anything but an explicit yes is a no."""

    BINDINGS = [
        Binding("y", "answer(True)", "yes", show=False),
        Binding("n", "answer(False)", "no", show=False),
        Binding("escape", "answer(False)", "cancel", show=False),
    ]

    def __init__(self, question: str, confirm_label: str = "Yes") -> None:
        super().__init__(classes="dialog-screen")
        self.question = question
        self.confirm_label = confirm_label

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm", classes="dialog"):
            yield Label(literal(self.question), id="question")
            yield Label("y to confirm, n or Esc to cancel", classes="hint")
            with Horizontal(classes="buttons"):
                yield Button(f"{self.confirm_label} (y)", id="yes", variant="error")
                yield Button("Cancel (n)", id="no", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id == "yes")

    def action_answer(self, value: bool) -> None:
        self.dismiss(value)


class HelpScreen(ModalScreen[None]):
    """Every key with what it does, and the views to jump to."""

    BINDINGS = [
        Binding("escape", "close", "close", show=False),
        Binding("question_mark", "close", "close", show=False),
        Binding("q", "close", "close", show=False),
    ]

    def __init__(self, keys: list[tuple[str, str, str]], readonly: bool) -> None:
        super().__init__(classes="dialog-screen")
        self.keys = keys
        self.readonly = readonly

    def compose(self) -> ComposeResult:
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold cyan", no_wrap=True)
        table.add_column()
        table.add_column(style="dim")
        for key, text, where in self.keys:
            table.add_row(literal(key), literal(text), literal(where))
        views = Text.assemble(
            ("Views: ", "bold"),
            ":pools :templates :vms :agents :events (or 1-5). ",
            ("Command palette: ", "bold"),
            "ctrl+p.",
        )
        with Vertical(id="help", classes="dialog"):
            yield Label(
                "hvkube dashboard keys"
                + ("  (read-only: changes are off)" if self.readonly else "")
                + "  ·  Esc or ? closes",
                id="help-title",
            )
            with VerticalScroll():
                yield Static(table)
                yield Static(views, id="help-views")
            yield Label("Esc or ? to close", classes="hint")

    def action_close(self) -> None:
        self.dismiss(None)


class QuitScreen(ModalScreen[str]):
    """On quit while the controller this dashboard started runs: stop it (y), keep it
    running (k), or stay (Esc). Answers "stop", "keep" or "stay"."""

    BINDINGS = [
        Binding("y", "answer('stop')", "stop it", show=False),
        Binding("k", "answer('keep')", "keep it", show=False),
        Binding("escape", "answer('stay')", "stay", show=False),
        Binding("n", "answer('stay')", "stay", show=False),
    ]

    def __init__(self, pid: int) -> None:
        super().__init__(classes="dialog-screen")
        self.pid = pid

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm", classes="dialog"):
            yield Label(
                literal(
                    f"The controller started from this dashboard (pid {self.pid}) is running. "
                    "Stop it as you quit?"
                ),
                id="question",
            )
            yield Label("y stops it, k keeps it running, Esc stays here", classes="hint")
            with Horizontal(classes="buttons"):
                yield Button("Stop it (y)", id="stop", variant="error")
                yield Button("Keep it (k)", id="keep", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#stop", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(str(event.button.id))

    def action_answer(self, value: str) -> None:
        self.dismiss(value)

"""What the dashboard's workers tell the UI thread. Workers never touch widgets: each
posts one of these typed messages and the widget that started the work handles it."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.message import Message

from hvkube_tui.data import Row, Snapshot


@dataclass
class TickStats:
    read_ms: float  # in the worker: data_version, read, format
    apply_ms: float  # on the UI thread: diff and update
    changed: bool  # a new snapshot (not just clock-driven text)
    cells: int  # table cells touched
    read_cpu_ms: float = 0.0  # CPU time of the reader thread for this tick
    apply_cpu_ms: float = 0.0  # CPU time of the UI thread for this tick


class SnapshotReady(Message):
    """The poll worker read the store (or the clock moved): show these rows."""

    def __init__(
        self,
        snapshot: Snapshot,
        rows: dict[str, dict[str, Row]],
        *,
        new: bool,
        read_ms: float,
        read_cpu_ms: float,
    ) -> None:
        super().__init__()
        self.snapshot = snapshot
        self.rows = rows  # every view's rows, keyed, in display order
        self.new = new  # a new snapshot, not just the same one with the time moved on
        self.read_ms = read_ms
        self.read_cpu_ms = read_cpu_ms


class ReadFailed(Message):
    """The poll worker could not read the store (locked, vanished); it goes on polling."""

    def __init__(self, error: str) -> None:
        super().__init__()
        self.error = error


class ThumbnailReady(Message):
    """A VM's screen, drawn in half blocks for `cols` x `rows` cells."""

    def __init__(self, vm: str, digest: str, image: Text) -> None:
        super().__init__()
        self.vm = vm
        self.digest = digest  # of the PNG and the size it was drawn for
        self.image = image


class ThumbnailFailed(Message):
    def __init__(self, vm: str, error: str) -> None:
        super().__init__()
        self.vm = vm
        self.error = error


class ActionProgress(Message):
    """A step of a long action (scaling, provisioning), shown in the row it works on."""

    def __init__(self, view: str, key: str, text: str) -> None:
        super().__init__()
        self.view = view
        self.key = key
        self.text = text


class ActionDone(Message):
    """An action on `key` of `view` finished; `what` names it ("save browser-001") and
    `result` says what came of it."""

    def __init__(self, view: str, key: str, what: str, result: str) -> None:
        super().__init__()
        self.view = view
        self.key = key
        self.what = what
        self.result = result


class ActionFailed(Message):
    """An action on `key` of `view` failed; `error` says why (and what to do)."""

    def __init__(self, view: str, key: str, what: str, error: str) -> None:
        super().__init__()
        self.view = view
        self.key = key
        self.what = what
        self.error = error

"""The dashboard: k9s's keys over Hyper-V Manager's layout.

The app is thin: it owns the engine and the background threads, the keymap, the poll
worker and which view is on screen. The layout is hvkube_tui/screen.py; each view
(columns, rows, detail pane, actions) is a module of hvkube_tui/views.

Nothing blocking runs on the UI thread. One long-lived thread worker polls the store
(only re-reading when SQLite's data_version moved), formats the rows and posts them as a
`SnapshotReady` message; every action runs in its own thread worker and answers with
`ActionDone` or `ActionFailed`. Tables are updated by keyed diffs so the cursor and
scroll stay put.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from textual import work
from textual.app import App
from textual.binding import Binding
from textual.notifications import SeverityLevel
from textual.screen import Screen
from textual.worker import get_current_worker

from core.engine import Engine
from core.errors import HvkubeError
from core.settings import Settings
from hvkube_tui.actions import BY_ID, bindings, help_rows, start_action
from hvkube_tui.commands import HvkubeCommands
from hvkube_tui.data import Clock, DataReader, Snapshot, system_clock
from hvkube_tui.messages import (
    ActionDone,
    ActionFailed,
    ReadFailed,
    SnapshotReady,
    TickStats,
)
from hvkube_tui.screen import MainScreen
from hvkube_tui.views import VIEW_CLASSES, VIEW_NAMES, View
from hvkube_tui.views.formatter import RowFormatter
from hvkube_tui.widgets.dialogs import HelpScreen, QuitScreen

# These views' rows are formatted only while they are on screen (10,000 VMs take a while):
# read and format them anew when one is shown.
READ_WHEN_SHOWN = frozenset({"vms", "agents", "events"})


def _view_action(action_id: str) -> Callable[[HvkubeApp], None]:
    """An action of the ActionSpec table that the view on screen does."""

    def action(app: HvkubeApp) -> None:
        app.run_view_action(action_id)

    action.__name__ = f"action_{action_id}"
    return action


class HvkubeApp(App[None]):
    CSS_PATH = "app.tcss"
    TITLE = "hvkube"
    COMMANDS = App.COMMANDS | {HvkubeCommands}
    BINDINGS: ClassVar = bindings()

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        clock: Clock | None = None,
        *,
        owns_engine: bool = False,
        poll_interval: float = 0.5,
        clock_refresh: float = 5.0,
        thumbnail_interval: float = 3.0,
        screenshot_dir: Path | None = None,
        background: Callable[[threading.Event], None] | None = None,
        title: str | None = None,
        ephemeral: bool = False,
    ) -> None:
        super().__init__()
        self.settings = settings
        self.engine = engine
        self.readonly = bool(settings.readonly or engine.readonly)
        engine.readonly = self.readonly  # the engine refuses too, whatever the UI does
        self.clock: Clock = clock or system_clock
        self.owns_engine = owns_engine
        self.poll_interval = poll_interval
        self.clock_refresh = clock_refresh
        self.thumbnail_interval = thumbnail_interval
        self.screenshot_dir = screenshot_dir or settings.screenshots_path()
        # The store goes away when the dashboard ends (the demo): nothing started here may
        # outlive it.
        self.ephemeral = ephemeral
        self.controller_pid: int | None = None  # the controller `R` started
        self.keep_controller = False  # the operator chose to leave it running
        self.background = background
        self.banner = title
        self.view = "pools"  # the view on screen
        self.snapshot: Snapshot | None = None
        self.loaded = threading.Event()
        self.ticks: list[TickStats] = []
        self.started_at = time.perf_counter()
        self.first_paint_s: float | None = None
        self.polls = 0  # poll cycles done (tests wait on it)
        self._force_read = False  # set when another view is shown: read its rows now
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.applied = threading.Event()  # the last snapshot posted has been shown
        self.applied.set()
        self._bg_thread: threading.Thread | None = None
        self.main = MainScreen(self)

    # -- lifecycle -------------------------------------------------------------------------------

    def get_default_screen(self) -> Screen[Any]:
        return self.main

    def on_mount(self) -> None:
        self._apply_keymap()

    def on_main_screen_ready(self) -> None:
        """Start reading once there is a screen to show what is read."""
        self._poll_loop()
        if self.background is not None:
            self._bg_thread = threading.Thread(
                target=self.background, args=(self._stop,), name="hvkube-demo", daemon=True
            )
            self._bg_thread.start()

    def on_unmount(self) -> None:
        gc.unfreeze()  # collectable again once the dashboard is gone (tests run many)
        self._stop.set()
        self._wake.set()
        self.applied.set()
        self.stop_controller()
        if self.owns_engine:
            self.engine.close()

    def stop_controller(self) -> None:
        """End the controller `R` started, unless the operator chose to keep it."""
        from hvkube_tui import background

        pid = self.controller_pid
        if pid is not None and not self.keep_controller:
            self.controller_pid = None
            background.stop(pid)

    async def action_quit(self) -> None:
        from hvkube_tui import background

        if not self.ephemeral and background.running(self.controller_pid) and not self.modal_open():
            assert self.controller_pid is not None

            def answered(choice: str | None) -> None:
                if choice in ("stop", "keep"):
                    self.keep_controller = choice == "keep"
                    self._quit_now()

            self.push_screen(QuitScreen(self.controller_pid), answered)
            return
        self._quit_now()

    def _quit_now(self) -> None:
        running = [w for w in self.workers if w.group == "actions" and w.is_running]
        if running:
            self.notify(f"waiting for {len(running)} action(s) to finish…", timeout=3)
        if self.controller_pid is not None and not self.keep_controller:
            self.notify("stopping the controller started here…", timeout=3)
        self._stop.set()
        self._wake.set()
        self.exit()

    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: SeverityLevel = "information",
        timeout: float | None = None,
        markup: bool = True,
    ) -> None:
        """Notifications carry names, errors and agents' text: never read as markup."""
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=False)

    def modal_open(self) -> bool:
        return len(self.screen_stack) > 1

    # -- keymap ----------------------------------------------------------------------------------

    def _apply_keymap(self) -> None:
        known = {b.id for b in self.BINDINGS if isinstance(b, Binding) and b.id}
        overrides = dict(self.settings.keys)
        unknown = sorted(set(overrides) - known)
        if unknown:
            self.notify(
                f"config [keys]: unknown action(s) {', '.join(unknown)}; known: "
                f"{', '.join(sorted(known))}",
                severity="warning",
                timeout=30,
            )
        self.set_keymap({k: v for k, v in overrides.items() if k in known})

    def key_for(self, action_id: str) -> str:
        override = self.settings.keys.get(action_id)
        return override if override else BY_ID[action_id].display

    def help_rows(self) -> list[tuple[str, str, str]]:
        return help_rows(self.key_for, self.readonly)

    def action_allowed(self, action: str, *, ignore_modal: bool = False) -> bool:
        spec = BY_ID.get(action)
        if spec is None:
            return True
        if spec.mutating and self.readonly:
            return False
        if not ignore_modal and self.modal_open():
            return False
        return self.view in spec.views

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "show_view" and self.modal_open():
            return False
        return self.action_allowed(action)

    # -- reading ---------------------------------------------------------------------------------

    def refresh_now(self) -> None:
        """Ask the reader for a new look now (after an action). Safe from any thread."""
        self._wake.set()

    @work(thread=True, exclusive=True, group="poll", exit_on_error=False)
    def _poll_loop(self) -> None:
        """The one reader: cheap data_version checks; a full read only when it moved."""
        reader = DataReader(self.engine)
        formatter = RowFormatter(VIEW_CLASSES)
        worker = get_current_worker()
        last: Snapshot | None = None
        formatted_at = 0.0
        force = True
        while not worker.is_cancelled and not self._stop.is_set():
            if not self.modal_open() and self.applied.is_set():
                started = time.perf_counter()
                started_cpu = time.thread_time()
                shown_anew = self._force_read
                if shown_anew:
                    self._force_read, force = False, True
                try:
                    snap = reader.poll(force=force)
                except Exception as exc:  # a locked or vanished database: say so, keep polling
                    self.post_message(
                        ReadFailed(
                            exc.message
                            if isinstance(exc, HvkubeError)
                            else f"{type(exc).__name__}: {exc}"
                        )
                    )
                    snap = None
                force = False
                clock_due = shown_anew or time.monotonic() - formatted_at >= self.clock_refresh
                if snap is not None or (last is not None and clock_due):
                    shown = snap or last
                    assert shown is not None
                    rows = formatter.format(
                        shown,
                        self.clock(),
                        clock={self.view} if clock_due else set(),
                        on_screen={self.view: self.table().on_screen},
                        current=self.view,
                    )
                    if clock_due:
                        formatted_at = time.monotonic()
                    last = shown
                    self.applied.clear()
                    self.post_message(
                        SnapshotReady(
                            shown,
                            rows,
                            new=snap is not None,
                            read_ms=(time.perf_counter() - started) * 1000.0,
                            read_cpu_ms=(time.thread_time() - started_cpu) * 1000.0,
                        )
                    )
                elif last is not None and formatter.pending:
                    # Nothing new: format the views left out (off screen, too many rows to
                    # format before the first paint), so that showing one is quick.
                    rows = formatter.catch_up(last, self.clock())
                    self.applied.clear()
                    self.post_message(
                        SnapshotReady(
                            last,
                            rows,
                            new=False,
                            read_ms=(time.perf_counter() - started) * 1000.0,
                            read_cpu_ms=(time.thread_time() - started_cpu) * 1000.0,
                        )
                    )
            self.polls += 1
            # Views left out of the first paint are formatted as soon as it has been shown.
            self._wake.wait(0.05 if formatter.pending else self.poll_interval)
            self._wake.clear()

    def on_read_failed(self, message: ReadFailed) -> None:
        self.notify(f"reading the database failed: {message.error}", severity="error", timeout=5)

    def on_snapshot_ready(self, message: SnapshotReady) -> None:
        started = time.perf_counter()
        started_cpu = time.thread_time()
        try:
            self.snapshot = message.snapshot
            with self.batch_update():
                cells = self.main.show_snapshot(message.snapshot, message.rows)
            if not self.loaded.is_set():
                self.first_paint_s = time.perf_counter() - self.started_at
                self.loaded.set()
                # What exists now (imports, widgets, the first data) lives as long as the
                # dashboard: kept out of the collector's full passes, which otherwise walk it
                # all (100 ms and more at fleet scale) while the reader or a redraw waits.
                gc.freeze()
            self.ticks.append(
                TickStats(
                    message.read_ms,
                    (time.perf_counter() - started) * 1000.0,
                    message.new,
                    cells,
                    message.read_cpu_ms,
                    (time.thread_time() - started_cpu) * 1000.0,
                )
            )
            del self.ticks[:-1000]
        finally:
            self.applied.set()

    # -- views -----------------------------------------------------------------------------------

    def table(self, view: str | None = None) -> View:
        return self.main.views[view or self.view]

    def action_show_view(self, view: str) -> None:
        if view not in VIEW_NAMES:
            return
        self.view = view
        if view in READ_WHEN_SHOWN:
            self._force_read = True
            self.refresh_now()
        self.main.show_view(view)
        self.refresh_bindings()

    def select_row(self, view: str, key: str) -> bool:
        """Show `view` with the cursor on `key`."""
        if view != self.view:
            self.action_show_view(view)
        found = self.table(view).select_key(key)
        self.main.update_detail()
        return found

    def action_filter(self) -> None:
        self.main.show_prompt("filter")

    def action_jump(self) -> None:
        self.main.show_prompt("jump")

    def action_clear(self) -> None:
        self.main.clear()

    def action_help(self) -> None:
        self.push_screen(HelpScreen(self.help_rows(), self.readonly))

    # -- actions ---------------------------------------------------------------------------------

    def run_view_action(self, action_id: str) -> None:
        """Do an action of the ActionSpec table: the view on screen knows how."""
        method = getattr(self.table(), f"action_{action_id}", None)
        if method is not None:
            method()

    action_resume = _view_action("resume")
    action_save = _view_action("save")
    action_reset = _view_action("reset")
    action_console = _view_action("console")
    action_capture = _view_action("capture")
    action_screen = _view_action("screen")
    action_acquire = _view_action("acquire")
    action_scale_up = _view_action("scale_up")
    action_scale_down = _view_action("scale_down")
    action_edit = _view_action("edit")
    action_new = _view_action("new")
    action_delete = _view_action("delete")
    action_recording = _view_action("recording")

    def action_controller(self) -> None:
        from core.controller import start_in_background

        settings = self.engine.settings

        def started(result: tuple[int, Path]) -> str:
            self.controller_pid = result[0]
            ends = (
                "it stops when the demo ends"
                if self.ephemeral
                else "on quit you choose whether it keeps running"
            )
            return f"controller started (pid {result[0]}); {ends}; log: {result[1]}"

        start_action(
            self,
            "",
            "",
            "controller",
            lambda: start_in_background(settings),
            started,
        )

    def on_action_done(self, message: ActionDone) -> None:
        self.notify(message.result, title=message.what)
        self.refresh_now()

    def on_action_failed(self, message: ActionFailed) -> None:
        self.notify(message.error, title=f"{message.what} failed", severity="error", timeout=10)
        self.refresh_now()


def make_app(
    settings: Settings,
    engine: Engine | None = None,
    clock: Clock | None = None,
    **options: Any,
) -> HvkubeApp:
    """The dashboard on `engine` (opened from `settings` when not given). Used by the CLI
    and by the tests; `clock` fixes the time that ages and uptimes are measured from."""
    owns = engine is None
    if engine is None:
        from core import open_engine

        engine = open_engine(settings)
    return HvkubeApp(settings, engine, clock, owns_engine=owns, **options)

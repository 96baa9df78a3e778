"""The dashboard: k9s's keys over Hyper-V Manager's layout.

Nothing blocking runs on the UI thread. One long-lived thread worker polls the
store (only re-reading when SQLite's data_version moved) and posts formatted
rows back; every action runs in its own thread worker and reports back with a
message. Tables are updated by keyed diffs so the cursor and scroll stay put.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.message import Message
from textual.suggester import SuggestFromList
from textual.widgets import ContentSwitcher, DataTable, Footer, Input, Sparkline, Static
from textual.worker import get_current_worker

from core.engine import Engine
from core.errors import HvkubeError
from core.settings import Settings
from hvkube_tui.actions import BY_ID, VIEW_ALIASES, VIEW_TITLES, bindings
from hvkube_tui.commands import HvkubeCommands
from hvkube_tui.data import (
    COLUMNS,
    VIEWS,
    Clock,
    DataReader,
    Row,
    Snapshot,
    ms_text,
    system_clock,
)
from hvkube_tui.widgets.detail import detail_renderable
from hvkube_tui.widgets.dialogs import ConfirmScreen, HelpScreen
from hvkube_tui.widgets.forms import EditPoolForm, PoolForm, TemplateForm
from hvkube_tui.widgets.keyed_table import KeyedTable
from hvkube_tui.widgets.thumbnail import Thumbnail, png_to_halfblocks

# Which cell shows an action in progress ("⟳ saving"); never the first (it is the row's key).
BUSY_COLUMN = {"pools": 9, "templates": 5, "vms": 2}
BUSY_STYLE = "bold yellow"
VIEW_WHERE = {"pools": "Pools", "templates": "Templates", "vms": "VMs"}


class Invoke(Message):
    """Run `callback` on the UI thread (posted from worker threads; never blocks them)."""

    def __init__(self, callback: Callable[[], Any]) -> None:
        super().__init__()
        self.callback = callback


@dataclass
class TickStats:
    read_ms: float  # in the worker: data_version, read, format
    apply_ms: float  # on the UI thread: diff and update
    changed: bool  # a new snapshot (not just clock-driven text)
    cells: int  # table cells touched
    read_cpu_ms: float = 0.0  # CPU time of the reader thread for this tick
    apply_cpu_ms: float = 0.0  # CPU time of the UI thread for this tick


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
        self.screenshot_dir = screenshot_dir or settings.state_dir() / "screenshots"
        self.background = background
        self.banner = title
        self.view = "pools"
        self.snapshot: Snapshot | None = None
        self.rows: dict[str, dict[str, Row]] = {}
        self.busy: dict[tuple[str, str], str] = {}
        self._stale: set[str] = set()
        self._force_read = False  # set when another view is shown: read its rows now
        self.filters: dict[str, str] = {}
        self.prompt_mode: str | None = None
        self.loaded = threading.Event()
        self.ticks: list[TickStats] = []
        self.started_at = time.perf_counter()
        self.first_paint_s: float | None = None
        self.polls = 0  # poll cycles done (tests wait on it)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._applied = threading.Event()
        self._applied.set()
        self._thumb_for: tuple[str, str] | None = None  # (vm, hash of the last image)
        self._bg_thread: threading.Thread | None = None

    # -- layout ----------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Static(id="header")
        yield Static(id="crumbs")
        with ContentSwitcher(initial="pools", id="views"):
            for view in VIEWS:
                yield KeyedTable(view, COLUMNS[view], id=view)
        with Horizontal(id="detail"):
            yield Static(id="detail-text")
            yield Sparkline([], id="spark")
            yield Thumbnail(id="thumb")
        yield Input(id="prompt")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self._apply_keymap()
        self.query_one("#prompt", Input).display = False
        self._show_detail_widgets()
        self.query_one("#header", Static).update(self._header_text())
        self._update_crumbs()
        self.table("pools").focus()
        self._poll_loop()
        if self.thumbnail_interval > 0:
            self.set_interval(self.thumbnail_interval, self._thumb_tick)
        if self.background is not None:
            self._bg_thread = threading.Thread(
                target=self.background, args=(self._stop,), name="hvkube-demo", daemon=True
            )
            self._bg_thread.start()

    def on_unmount(self) -> None:
        self._stop.set()
        self._wake.set()
        self._applied.set()
        if self.owns_engine:
            self.engine.close()

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

    def table(self, view: str | None = None) -> KeyedTable:
        return self.query_one(f"#{view or self.view}", KeyedTable)

    # -- reading -------------------------------------------------------------------------------

    def _modal_open(self) -> bool:
        return len(self.screen_stack) > 1

    @work(thread=True, exclusive=True, group="poll", exit_on_error=False)
    def _poll_loop(self) -> None:
        """The one reader: cheap data_version checks; a full read only when it moved."""
        reader = DataReader(self.engine)
        worker = get_current_worker()
        last: Snapshot | None = None
        formatted_at = 0.0
        force = True
        while not worker.is_cancelled and not self._stop.is_set():
            if not self._modal_open() and self._applied.is_set():
                started = time.perf_counter()
                started_cpu = time.thread_time()
                shown_anew = self._force_read
                if shown_anew:
                    self._force_read, force = False, True
                try:
                    snap = reader.poll(force=force, views={self.view})
                except Exception as exc:  # a locked or vanished database: say so, keep polling
                    self.post_message(Invoke(partial(self._read_failed, exc)))
                    snap = None
                force = False
                clock_due = shown_anew or time.monotonic() - formatted_at >= self.clock_refresh
                if snap is not None or (last is not None and clock_due):
                    shown = snap or last
                    assert shown is not None
                    rows = reader.format(
                        shown, self.clock(), clock={self.view} if clock_due else set()
                    )
                    if clock_due:
                        formatted_at = time.monotonic()
                    read_ms = (time.perf_counter() - started) * 1000.0
                    read_cpu_ms = (time.thread_time() - started_cpu) * 1000.0
                    last = shown
                    self._applied.clear()
                    self.post_message(
                        Invoke(
                            partial(
                                self._apply, shown, rows, read_ms, snap is not None, read_cpu_ms
                            )
                        )
                    )
            self.polls += 1
            self._wake.wait(self.poll_interval)
            self._wake.clear()

    def _read_failed(self, exc: Exception) -> None:
        message = exc.message if isinstance(exc, HvkubeError) else f"{type(exc).__name__}: {exc}"
        self.notify(f"reading the database failed: {message}", severity="error", timeout=5)

    def on_invoke(self, message: Invoke) -> None:
        message.callback()

    def refresh_now(self) -> None:
        """Ask the reader for a new look now (after an action)."""
        self._wake.set()

    def _apply(
        self,
        snap: Snapshot,
        rows: dict[str, dict[str, Row]],
        read_ms: float,
        new: bool,
        read_cpu_ms: float = 0.0,
    ) -> None:
        started = time.perf_counter()
        started_cpu = time.thread_time()
        try:
            self.snapshot = snap
            self.rows = rows
            # Only the table on screen is brought up to date; the others when shown.
            self._stale = set(VIEWS) - {self.view}
            with self.batch_update():
                cells = self._sync(self.view)
                self.query_one("#header", Static).update(self._header_text())
                self._update_crumbs()
                self._update_detail()
            if not self.loaded.is_set():
                self.first_paint_s = time.perf_counter() - self.started_at
                self.loaded.set()
            self.ticks.append(
                TickStats(
                    read_ms,
                    (time.perf_counter() - started) * 1000.0,
                    new,
                    cells,
                    read_cpu_ms,
                    (time.thread_time() - started_cpu) * 1000.0,
                )
            )
            del self.ticks[:-1000]
        finally:
            self._applied.set()

    def _sync(self, view: str) -> int:
        rows = self.rows.get(view, {})
        busy = {key: text for (v, key), text in self.busy.items() if v == view and key in rows}
        if busy:
            rows = dict(rows)
            column = BUSY_COLUMN[view]
            for key, text in busy.items():
                cells = list(rows[key])
                cells[column] = (f"⟳ {text}", BUSY_STYLE)
                rows[key] = tuple(cells)
        needle = self.filters.get(view, "").lower()
        if needle:
            rows = {
                key: row
                for key, row in rows.items()
                if needle in " ".join(c if isinstance(c, str) else c[0] for c in row).lower()
            }
        return self.table(view).sync(rows)

    # -- header, crumbs, detail, thumbnail -------------------------------------------------

    def _header_text(self) -> Text:
        """Backend, host memory and totals; shorter wordings when the terminal is narrow."""
        width = self.size.width or 120
        for verbose in (2, 1, 0, -1):
            text = self._header_variant(verbose)
            if text.cell_len <= width:
                return text
        return text

    def _header_variant(self, verbose: int) -> Text:
        snap = self.snapshot
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append(f" hvkube{' ' + self.banner if self.banner else ''} ", style="bold reverse")
        backend = snap.backend if snap else self.engine.backend.name
        simulated = snap.simulated if snap else getattr(self.engine.backend, "simulated", False)
        text.append(f" {backend}")
        if simulated:
            text.append(" (simulated)", style="magenta")
        if snap and snap.capacity:
            cap = snap.capacity
            used = (cap.total_memory_mb - cap.free_memory_mb) / 1024
            free = cap.free_memory_mb / 1024
            if verbose >= 2:
                text.append(f"  host memory {used:.1f}G used, {free:.1f}G free")
            else:
                text.append(f"  mem {used:.0f}G used {free:.0f}G free")
        if snap:
            states = snap.vm_states
            errors = states.get("error", 0) + states.get("missing", 0)
            queued = snap.agent_counts.get("pending", 0) + snap.agent_counts.get("scheduled", 0)
            running_agents = snap.agent_counts.get("running", 0)
            if verbose >= 1:
                text.append(f"  VMs {states.get('running', 0)} running")
            else:
                text.append(f"  VMs {states.get('running', 0)} run")
            if errors:
                text.append(
                    f" {errors} err" if verbose <= 0 else f", {errors} error", style="bold red"
                )
            if verbose >= 1:
                text.append(f"  agents {queued} queued, {running_agents} running")
            elif verbose == 0:
                text.append(f"  agents {queued} queued {running_agents} run")
        if snap and snap.controller is not None:
            running = snap.controller.running
            label = ("controller " if verbose >= 1 else "ctl ") + ("on" if running else "off")
            text.append(f"  {label}", style="green" if running else "dim")
        if self.readonly:
            text.append("  READ-ONLY ", style="bold reverse red")
        return text

    def on_resize(self) -> None:
        self.query_one("#header", Static).update(self._header_text())

    def _update_crumbs(self) -> None:
        snap = self.snapshot
        text = Text()
        for view in VIEWS:
            count = ""
            if snap is not None:
                count = f" {snap.count(view)}"
            label = f" {VIEW_TITLES[view]}{count} "
            text.append(label, style="bold reverse cyan" if view == self.view else "dim")
            text.append(" ")
        needle = self.filters.get(self.view)
        if needle:
            shown = self.table().row_count
            text.append(f" /{needle} ({shown} shown)", style="bold yellow")
        self.query_one("#crumbs", Static).update(text)

    def _show_detail_widgets(self) -> None:
        self.query_one("#thumb", Thumbnail).display = self.view == "vms"
        self.query_one("#spark", Sparkline).display = self.view == "pools"

    def _update_detail(self) -> None:
        key = self.table().cursor_key
        detail = detail_renderable(self.view, key, self.snapshot, self.clock())
        self.query_one("#detail-text", Static).update(detail)
        if self.view == "pools":
            record = self.snapshot.record("pools", key) if self.snapshot and key else None
            data = record["latencies"] if record else []
            spark = self.query_one("#spark", Sparkline)
            if list(spark.data or []) != data:
                spark.data = data
        if self.view == "vms":
            thumb = self.query_one("#thumb", Thumbnail)
            if key is None:
                thumb.show_text("no VM selected")
                self._thumb_for = None
            elif self._thumb_for is None or self._thumb_for[0] != key:
                thumb.show_text(f"screen of {key}…")
                self._thumb_for = (key, "")
                self._fetch_thumbnail(key, *self._thumb_cells())

    def _thumb_cells(self) -> tuple[int, int]:
        thumb = self.query_one("#thumb", Thumbnail)
        width = thumb.size.width or 32
        height = thumb.size.height or 8
        return max(4, width - 2), max(2, height)

    def _thumb_tick(self) -> None:
        if self.view != "vms" or self._modal_open() or self._thumb_for is None:
            return
        self._fetch_thumbnail(self._thumb_for[0], *self._thumb_cells())

    @work(thread=True, exclusive=True, group="thumbnail", exit_on_error=False)
    def _fetch_thumbnail(self, vm: str, cols: int, rows: int) -> None:
        try:
            # Straight from the host: a thumbnail every few seconds is no lifecycle event.
            data = self.engine.backend.screenshot(self.engine.ref(self.engine.get_vm(vm)))
        except HvkubeError as exc:
            self.post_message(
                Invoke(partial(self._show_thumbnail, vm, "", Text(exc.message, style="dim red")))
            )
            return
        except Exception as exc:
            message = Text(f"{type(exc).__name__}: {exc}", style="dim red")
            self.post_message(Invoke(partial(self._show_thumbnail, vm, "", message)))
            return
        digest = hashlib.blake2b(data, digest_size=8).hexdigest() + f"{cols}x{rows}"
        if self._thumb_for == (vm, digest):
            return
        image = png_to_halfblocks(data, cols, rows)
        self.post_message(Invoke(partial(self._show_thumbnail, vm, digest, image)))

    def _show_thumbnail(self, vm: str, digest: str, image: Text) -> None:
        if self.view != "vms" or self.table().cursor_key != vm:
            return
        self._thumb_for = (vm, digest)
        self.query_one("#thumb", Thumbnail).update(image)

    @on(DataTable.RowHighlighted)
    def _row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if isinstance(event.data_table, KeyedTable) and event.data_table.view == self.view:
            self._update_detail()

    # -- views, filter, jump -------------------------------------------------------------------

    def action_show_view(self, view: str) -> None:
        if view not in VIEWS:
            return
        self.view = view
        if view in self._stale:
            self._stale.discard(view)
            self._sync(view)
        if view in ("vms", "agents"):
            self._force_read = True
            self.refresh_now()
        self.query_one("#views", ContentSwitcher).current = view
        self._hide_prompt()
        self._show_detail_widgets()
        self._thumb_for = None
        self._update_crumbs()
        self._update_detail()
        self.table().focus()
        self.refresh_bindings()

    def select_row(self, view: str, key: str) -> bool:
        """Show `view` with the cursor on `key` (tests and the palette use this)."""
        if view != self.view:
            self.action_show_view(view)
        found = self.table(view).select_key(key)
        self._update_detail()
        return found

    def action_filter(self) -> None:
        self._show_prompt("filter", self.filters.get(self.view, ""))

    def action_jump(self) -> None:
        self._show_prompt("jump", "")

    def _show_prompt(self, mode: str, value: str) -> None:
        prompt = self.query_one("#prompt", Input)
        self.prompt_mode = mode
        if mode == "filter":
            prompt.placeholder = f"/ filter {VIEW_TITLES[self.view]} (Enter keeps it, Esc clears)"
            prompt.suggester = None
        else:
            prompt.placeholder = ": view name: pools, templates, vms, agents, events"
            prompt.suggester = SuggestFromList(list(VIEWS), case_sensitive=False)
        prompt.value = value
        prompt.display = True
        prompt.focus()

    def _hide_prompt(self) -> None:
        prompt = self.query_one("#prompt", Input)
        if prompt.display:
            prompt.display = False
            self.prompt_mode = None
            self.table().focus()

    @on(Input.Changed, "#prompt")
    def _prompt_changed(self, event: Input.Changed) -> None:
        if self.prompt_mode == "filter":
            self.filters[self.view] = event.value.strip()
            self._sync(self.view)
            self._update_crumbs()
            self._update_detail()

    @on(Input.Submitted, "#prompt")
    def _prompt_submitted(self, event: Input.Submitted) -> None:
        mode = self.prompt_mode
        value = event.value.strip().lstrip(":").lower()
        self._hide_prompt()
        if mode != "jump" or not value:
            return
        if value in ("q", "quit"):
            self.exit()
            return
        view = VIEW_ALIASES.get(value)
        if view is None:
            self.notify(
                f"no view {value!r}; try :pools :templates :vms :agents :events",
                severity="warning",
            )
            return
        self.action_show_view(view)

    def action_clear(self) -> None:
        prompt = self.query_one("#prompt", Input)
        if prompt.display:
            if self.prompt_mode == "filter":
                self.filters.pop(self.view, None)
                self._sync(self.view)
            self._hide_prompt()
        elif self.filters.pop(self.view, None):
            self._sync(self.view)
        self._update_crumbs()
        self._update_detail()

    def action_help(self) -> None:
        self.push_screen(HelpScreen(self.help_rows(), self.readonly))

    def help_rows(self) -> list[tuple[str, str, str]]:
        rows = []
        for spec in BY_ID.values():
            if self.readonly and spec.mutating:
                continue
            where = ", ".join(VIEW_WHERE.get(v, v) for v in sorted(spec.views))
            if len(spec.views) == len(VIEWS):
                where = "everywhere"
            rows.append((self.key_for(spec.id), spec.help, where))
        rows.append(("1-5", "Pools, Templates, VMs, Agents, Events", "everywhere"))
        rows.append(("Esc", "Clear the filter / close the prompt", "everywhere"))
        rows.append(("ctrl+p", "Command palette: every action by name", "everywhere"))
        return rows

    def key_for(self, action_id: str) -> str:
        override = self.settings.keys.get(action_id)
        return override if override else BY_ID[action_id].display

    # -- which actions exist now ---------------------------------------------------------------

    def action_allowed(self, action: str, *, ignore_modal: bool = False) -> bool:
        spec = BY_ID.get(action)
        if spec is None:
            return True
        if spec.mutating and self.readonly:
            return False
        if not ignore_modal and self._modal_open():
            return False
        return self.view in spec.views

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "show_view" and self._modal_open():
            return False
        return self.action_allowed(action)

    # -- running actions -------------------------------------------------------------------------

    def selected(self, view: str) -> str | None:
        if self.view != view:
            return None
        key = self.table(view).cursor_key
        if key is None:
            self.notify(f"no {VIEW_TITLES[view][:-1].lower()} selected", severity="warning")
        return key

    def run_engine(
        self,
        target: tuple[str, str],
        busy: str,
        what: str,
        call: Callable[[], Any],
        done: Callable[[Any], str],
    ) -> bool:
        """Run `call` in a thread worker, show `busy` in the row meanwhile, report the end."""
        if target in self.busy:
            self.notify(f"{target[1]} is busy ({self.busy[target]})", severity="warning")
            return False
        self.busy[target] = busy
        self._sync(target[0])
        self._engine_worker(target, what, call, done)
        return True

    @work(thread=True, group="actions", exit_on_error=False)
    def _engine_worker(
        self,
        target: tuple[str, str],
        what: str,
        call: Callable[[], Any],
        done: Callable[[Any], str],
    ) -> None:
        try:
            result = call()
            message, ok = done(result), True
        except HvkubeError as exc:
            message, ok = exc.message, False
        except Exception as exc:  # a bug: the dashboard stays up and says what happened
            message, ok = f"{type(exc).__name__}: {exc}", False
        self.post_message(Invoke(partial(self._engine_done, target, what, ok, message)))

    def _engine_done(self, target: tuple[str, str], what: str, ok: bool, message: str) -> None:
        self.busy.pop(target, None)
        if ok:
            self.notify(message, title=what)
        else:
            self.notify(message, title=f"{what} failed", severity="error", timeout=10)
        self._sync(target[0])
        self._thumb_for = None if target[0] == "vms" else self._thumb_for
        self.refresh_now()

    def _progress(self, target: tuple[str, str]) -> Callable[[str, str, str], None]:
        def report(vm: str, step: str, detail: str) -> None:
            text = f"{step} {vm}"
            self.post_message(Invoke(partial(self._set_busy, target, text)))

        return report

    def _set_busy(self, target: tuple[str, str], text: str) -> None:
        if target in self.busy:
            self.busy[target] = text
            self._sync(target[0])

    def confirm(self, question: str, then: Callable[[], Any], label: str = "Yes") -> None:
        def answered(yes: bool | None) -> None:
            if yes:
                then()

        self.push_screen(ConfirmScreen(question, label), answered)

    # VMs

    def action_resume(self) -> None:
        vm = self.selected("vms")
        if vm:
            self.run_engine(
                ("vms", vm),
                "resuming",
                f"resume {vm}",
                lambda: self.engine.resume_vm(vm),
                lambda r: f"{vm} is running (resumed in {ms_text(r.last_resume_ms)})",
            )

    def action_save(self) -> None:
        vm = self.selected("vms")
        if vm:
            self.run_engine(
                ("vms", vm),
                "saving",
                f"save {vm}",
                lambda: self.engine.save_vm(vm),
                lambda r: f"{vm} is saved",
            )

    def action_reset(self) -> None:
        vm = self.selected("vms")
        if vm:
            self.confirm(
                f"Reset {vm} to its clean checkpoint? Whatever happened in it since is lost.",
                lambda: self.run_engine(
                    ("vms", vm),
                    "resetting",
                    f"reset {vm}",
                    lambda: self.engine.reset_vm(vm),
                    lambda r: f"{vm} is back to clean ({r.state.value})",
                ),
                "Reset",
            )

    def action_console(self) -> None:
        vm = self.selected("vms")
        if not vm:
            return
        record = self.snapshot.record("vms", vm) if self.snapshot else None
        rdp = f"{record['ip']}:{record['rdp_port']}" if record and record["ip"] else None
        hint = f" Connect over RDP to {rdp} instead." if rdp else ""
        if self.engine.backend.name != "hyperv" or sys.platform != "win32":
            kind = (
                "a simulated host"
                if getattr(self.engine.backend, "simulated", False)
                else f"the {self.engine.backend.name} backend"
            )
            self.notify(
                f"No console for {vm}: vmconnect runs only on a Windows Hyper-V host, and this is "
                f"{kind}.{hint}",
                title="console",
                severity="warning",
                timeout=8,
            )
            return
        exe = shutil.which("vmconnect.exe") or shutil.which("vmconnect")
        if exe is None:
            self.notify(
                "vmconnect.exe was not found; install the Hyper-V management tools "
                f"(Hyper-V Manager).{hint}",
                title="console",
                severity="error",
            )
            return
        try:
            subprocess.Popen([exe, "localhost", vm], stdin=subprocess.DEVNULL, close_fds=True)
        except OSError as exc:
            self.notify(f"could not start vmconnect: {exc}", severity="error")
            return
        self.notify(f"opening the console of {vm}", title="console")

    def action_capture(self) -> None:
        vm = self.selected("vms")
        if not vm:
            return
        stamp = self.clock().strftime("%Y%m%d-%H%M%S")
        path = self.screenshot_dir / f"{vm}-{stamp}.png"

        def shoot() -> Path:
            data = self.engine.screenshot(vm)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            return path

        self.run_engine(
            ("vms", vm), "screenshot", f"screenshot {vm}", shoot, lambda p: f"saved {p}"
        )

    def action_controller(self) -> None:
        from core.controller import start_in_background

        def start() -> tuple[int, Path]:
            return start_in_background(self.engine.settings)

        self._engine_worker(
            ("pools", ""),
            "controller",
            start,
            lambda started: f"controller started (pid {started[0]}); log: {started[1]}",
        )

    # pools

    def action_acquire(self) -> None:
        pool = self.selected("pools")
        if pool:

            def done(got: Any) -> str:
                return (
                    f"{got.name} ({got.ip or 'no IP yet'}) from {got.from_state.value} in "
                    f"{ms_text(got.resume_ms)}; held as {got.holder}. "
                    f"Give it back with: hvkube release {got.name}"
                )

            self.run_engine(
                ("pools", pool),
                "acquiring",
                f"acquire from {pool}",
                lambda: self.engine.acquire(pool),
                done,
            )

    def _scale(self, delta: int) -> None:
        pool = self.selected("pools")
        if not pool or self.snapshot is None:
            return
        record = self.snapshot.pools.get(pool)
        if record is None:
            return
        count = record["desired_count"] + delta
        if count < 0:
            self.notify(f"{pool} is already at 0 VMs", severity="warning")
            return
        target = ("pools", pool)
        self.run_engine(
            target,
            f"scaling to {count}",
            f"scale {pool}",
            lambda: self.engine.scale_pool(pool, count, progress=self._progress(target)),
            lambda r: (
                f"{pool} scaled to {count}"
                + (
                    f"; {len(r.failed)} VM(s) failed: {next(iter(r.failed.values()))}"
                    if r.failed
                    else ""
                )
            ),
        )

    def action_scale_up(self) -> None:
        self._scale(+1)

    def action_scale_down(self) -> None:
        self._scale(-1)

    def action_edit(self) -> None:
        pool = self.selected("pools")
        if not pool or self.snapshot is None or pool not in self.snapshot.pools:
            return

        def edited(values: dict[str, Any] | None) -> None:
            if values:
                self.run_engine(
                    ("pools", pool),
                    "saving",
                    f"edit {pool}",
                    lambda: self.engine.update_pool(
                        pool,
                        count=values["count"],
                        warm=values["warm"],
                        hot=values["hot"],
                        release=values["release"],
                    ),
                    lambda p: (
                        f"{pool}: {p.desired_count} VMs, {p.warm_count} warm, "
                        f"{p.hot_count} hot, release {p.release_policy.value}"
                    ),
                )

        self.push_screen(EditPoolForm(dict(self.snapshot.pools[pool])), edited)

    def action_new(self) -> None:
        snap = self.snapshot
        if snap is None:
            return
        if self.view == "templates":

            def made_template(values: dict[str, Any] | None) -> None:
                if values:
                    name = values["name"]
                    self.run_engine(
                        ("templates", name),
                        "creating",
                        f"new template {name}",
                        lambda: self.engine.create_template(**values),
                        lambda t: f"template {t.name} created ({t.memory_mb} MB, {t.cpus} CPUs)",
                    )

            self.push_screen(TemplateForm(set(snap.templates)), made_template)
            return

        def made_pool(values: dict[str, Any] | None) -> None:
            if not values:
                return
            name = values["name"]
            target = ("pools", name)

            def create_and_build() -> Any:
                self.engine.create_pool(**values)
                self.post_message(Invoke(self.refresh_now))
                return self.engine.provision_pool(name, progress=self._progress(target))

            self.run_engine(
                target,
                "creating",
                f"new pool {name}",
                create_and_build,
                lambda r: (
                    f"pool {name} created with {len(r.created)} VM(s)"
                    + (f"; {len(r.failed)} failed" if r.failed else "")
                ),
            )

        templates = list(snap.templates)
        self.push_screen(PoolForm(templates, set(snap.pools)), made_pool)

    def action_delete(self) -> None:
        view = self.view
        key = self.selected(view) if view in ("pools", "templates", "vms") else None
        if not key or self.snapshot is None:
            return
        if view == "vms":
            question = f"Delete VM {key} with its disk and saved state?"
            call: Callable[[], Any] = lambda: self.engine.delete_vm(key)  # noqa: E731
        elif view == "pools":
            vms = self.snapshot.pools[key]["vm_count"] if key in self.snapshot.pools else 0
            question = f"Delete pool {key}" + (f" and its {vms} VM(s)?" if vms else "?")
            call = lambda: self.engine.delete_pool(key, with_vms=True)  # noqa: E731
        else:
            question = f"Delete template {key}? (Its disk file is kept.)"
            call = lambda: self.engine.delete_template(key)  # noqa: E731
        self.confirm(
            question,
            lambda: self.run_engine(
                (view, key), "deleting", f"delete {key}", call, lambda _: f"{key} deleted"
            ),
            "Delete",
        )

    async def action_quit(self) -> None:
        running = [w for w in self.workers if w.group == "actions" and w.is_running]
        if running:
            self.notify(f"waiting for {len(running)} action(s) to finish…", timeout=3)
        self._stop.set()
        self._wake.set()
        self.exit()


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

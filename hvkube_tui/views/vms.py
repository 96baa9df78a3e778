"""VMs: every VM with its state, holder and address; resume, save, reset, delete, open
the console, save a screenshot. The detail pane adds a live thumbnail of the VM's screen."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import RenderableType
from rich.text import Text
from textual import on, work
from textual.widget import Widget

from core.backends.base import Capability, feature
from core.errors import HvkubeError
from core.files import write_atomic
from core.output import holder_text
from core.output import ms as ms_text
from hvkube_tui.data import (
    VM_FIELDS,
    Row,
    Snapshot,
    mb_text,
    since,
    state_cell,
)
from hvkube_tui.messages import ThumbnailFailed, ThumbnailReady
from hvkube_tui.views.base import View
from hvkube_tui.widgets.detail import detail_grid, state_text, when_text
from hvkube_tui.widgets.thumbnail import Thumbnail, look

if TYPE_CHECKING:
    from hvkube_tui.app import HvkubeApp

_STATE = VM_FIELDS.index("state")
RUNNING = ("running", "paused")  # states in which a VM's uptime moves


class VmsView(View):
    NAME = "vms"
    COLUMNS = (
        ("name", "NAME"),
        ("pool", "POOL"),
        ("host", "HOST"),
        ("state", "STATE"),
        ("holder", "HELD BY"),
        ("ip", "IP"),
        ("memory", "MEM"),
        ("uptime", "UPTIME"),
        ("resume", "LAST RESUME"),
    )
    BUSY_COLUMN = 3
    CLOCK = True

    def __init__(self, dashboard: HvkubeApp) -> None:
        super().__init__(dashboard)
        self.thumb = Thumbnail(id="thumb")
        self.thumb_for: tuple[str, str] | None = None  # (vm, hash of the last image shown)

    @classmethod
    def format_row(cls, r: dict[str, Any], now: datetime) -> Row:
        running = r["state"] in RUNNING
        return (
            r["name"],
            r["pool"] or "-",
            r["host"] or "-",
            state_cell(r["state"]),
            holder_text(r["holder"], r["agent_id"]) or "-",
            r["ip"] or "-",
            mb_text(r["memory_mb"]),
            since(r["last_resumed_at"], now) if running else "-",
            ms_text(r["last_resume_ms"]),
        )

    @classmethod
    def ticking(cls, raw: tuple[Any, ...]) -> bool:
        return bool(raw[_STATE] in RUNNING)

    # -- detail pane: text and thumbnail -----------------------------------------------------

    def detail(self, vm: dict[str, Any], now: datetime) -> RenderableType:
        state = state_text(vm["state"])
        if vm["raw_state"]:
            state.append(f" (host: {vm['raw_state']})", style="dim")
        # What explains a problem comes first: at 80x24 the pane is a few lines tall.
        pairs: list[tuple[str, Any]] = []
        if vm["error"]:
            pairs.append(("error", Text(vm["error"], style="bold red")))
        pairs += [
            ("vm", vm["name"]),
            ("state", state),
            ("pool", f"{vm['pool'] or '-'} (template {vm['template']})"),
            ("host", vm["host"] or "-"),
            ("held by", holder_text(vm["holder"], vm["agent_id"]) or "-"),
            ("address", f"{vm['ip']}:{vm['rdp_port']} (RDP)" if vm["ip"] else "-"),
            ("memory", mb_text(vm["memory_mb"])),
            (
                "resumed",
                f"{when_text(vm['last_resumed_at'], now)} in {ms_text(vm['last_resume_ms'])}"
                if vm["last_resumed_at"]
                else "-",
            ),
        ]
        return detail_grid(pairs)

    def detail_widgets(self) -> list[Widget]:
        return [self.thumb]

    def on_mount(self) -> None:
        # (KeyedTable's own on_mount, which adds the columns, runs too: Textual calls each.)
        interval = self.dashboard.thumbnail_interval
        if interval > 0:
            self.set_interval(interval, self._thumb_tick)

    def view_shown(self) -> None:
        self.thumb_for = None  # fetch the thumbnail anew

    def show_detail(self, snap: Snapshot | None) -> None:
        key = self.cursor_key
        if key is None:
            self.thumb.show_text("no VM selected")
            self.thumb_for = None
        elif self.thumb_for is None or self.thumb_for[0] != key:
            self.thumb.show_text(f"screen of {key}…")
            self.thumb_for = (key, "")
            self._fetch_thumbnail(key, *self._thumb_cells())

    def _thumb_cells(self) -> tuple[int, int]:
        width = self.thumb.size.width or 32
        height = self.thumb.size.height or 8
        return max(4, width - 2), max(2, height)

    def _thumb_tick(self) -> None:
        if self.dashboard.view != self.NAME or self.dashboard.modal_open():
            return
        if self.thumb_for is not None:
            self._fetch_thumbnail(self.thumb_for[0], *self._thumb_cells())

    @work(thread=True, exclusive=True, group="thumbnail", exit_on_error=False)
    def _fetch_thumbnail(self, vm: str, cols: int, rows: int) -> None:
        shown = self.thumb_for[1] if self.thumb_for and self.thumb_for[0] == vm else None
        message = look(self.dashboard.engine, vm, cols, rows, shown)
        if not (isinstance(message, ThumbnailReady) and message.digest == shown):
            self.post_message(message)

    def _showing(self, vm: str) -> bool:
        return self.dashboard.view == self.NAME and self.cursor_key == vm

    @on(ThumbnailReady)
    def _thumbnail_ready(self, message: ThumbnailReady) -> None:
        message.stop()
        if self._showing(message.vm):
            self.thumb_for = (message.vm, message.digest)
            self.thumb.update(message.image)

    @on(ThumbnailFailed)
    def _thumbnail_failed(self, message: ThumbnailFailed) -> None:
        message.stop()
        if self._showing(message.vm):
            self.thumb_for = (message.vm, "")
            self.thumb.update(Text(message.error, style="dim red"))

    # -- actions -------------------------------------------------------------------------------

    def after_action(self) -> None:
        self.thumb_for = None  # the screen has likely changed: fetch it again

    def action_resume(self) -> None:
        vm = self.selected()
        if vm:
            engine = self.dashboard.engine
            self.run_engine(
                vm,
                "resuming",
                f"resume {vm}",
                lambda: engine.resume_vm(vm),
                lambda r: f"{vm} is running (resumed in {ms_text(r.last_resume_ms)})",
            )

    def action_save(self) -> None:
        vm = self.selected()
        if vm:
            engine = self.dashboard.engine
            self.run_engine(
                vm, "saving", f"save {vm}", lambda: engine.save_vm(vm), lambda r: f"{vm} is saved"
            )

    def action_reset(self) -> None:
        vm = self.selected()
        if vm:
            engine = self.dashboard.engine
            self.confirm(
                f"Reset {vm} to its clean checkpoint? Whatever happened in it since is lost.",
                lambda: self.run_engine(
                    vm,
                    "resetting",
                    f"reset {vm}",
                    lambda: engine.reset_vm(vm),
                    lambda r: f"{vm} is back to clean ({r.state.value})",
                ),
                "Reset",
            )

    def action_delete(self) -> None:
        vm = self.selected()
        if not vm or self.dashboard.snapshot is None:
            return
        engine = self.dashboard.engine
        self.confirm(
            f"Delete VM {vm} with its disk and saved state?",
            lambda: self.run_engine(
                vm,
                "deleting",
                f"delete {vm}",
                lambda: engine.delete_vm(vm),
                lambda _: f"{vm} deleted",
            ),
            "Delete",
        )

    def action_console(self) -> None:
        vm = self.selected()
        if not vm:
            return
        snap = self.dashboard.snapshot
        engine = self.dashboard.engine
        record = snap.record(self.NAME, vm) if snap else None
        rdp = f"{record['ip']}:{record['rdp_port']}" if record and record["ip"] else None
        hint = f" Connect over RDP to {rdp} instead." if rdp else ""
        # The same rule as `hvkube vm console`: the backend's declared console, whatever it is
        # (vmconnect on Hyper-V, a VNC viewer on QEMU).
        backend = feature(engine.backend, Capability.CONSOLE)
        if backend is None:
            kind = (
                "a simulated host"
                if engine.backend.simulated
                else f"the {engine.backend.name} backend"
            )
            self.notify(
                f"No console for {vm}: {kind} has no console viewer (vmconnect needs a Windows "
                f"Hyper-V host).{hint}",
                title="console",
                severity="warning",
                timeout=8,
            )
            return
        try:
            backend.console(engine.ref(engine.get_vm(vm)))
        except (HvkubeError, OSError) as exc:
            self.notify(f"could not open the console of {vm}: {exc}{hint}", severity="error")
            return
        self.notify(f"opening the console of {vm}", title="console")

    def action_screen(self) -> None:
        from hvkube_tui.widgets.screenview import ScreenView

        vm = self.selected()
        if vm:
            self.app.push_screen(ScreenView(self.dashboard.engine, vm))

    def action_capture(self) -> None:
        vm = self.selected()
        if not vm:
            return
        engine = self.dashboard.engine
        path = self.dashboard.screenshot_dir / f"{vm}-{self.dashboard.clock():%Y%m%d-%H%M%S}.png"

        def shoot() -> Path:
            data = engine.screenshot(vm)
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, data)
            return path

        self.run_engine(vm, "screenshot", f"screenshot {vm}", shoot, lambda p: f"saved {p}")

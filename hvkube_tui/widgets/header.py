"""The two lines at the top: the header (backend, host memory, totals, controller,
read-only) and the view tabs with their counts and the filter."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from hvkube_tui.actions import VIEW_TITLES
from hvkube_tui.data import Snapshot


class Header(Static):
    """Backend, host memory and totals; shorter wordings when the terminal is narrow."""

    def __init__(
        self,
        *,
        banner: str | None,
        backend: str,
        simulated: bool,
        readonly: bool,
        id: str | None = None,
    ) -> None:
        super().__init__(id=id)
        self.banner = banner
        self.backend = backend  # shown until the first snapshot says
        self.simulated = simulated
        self.readonly = readonly
        self.snapshot: Snapshot | None = None

    def show(self, snapshot: Snapshot | None) -> None:
        self.snapshot = snapshot
        self.update(self.text())

    def text(self) -> Text:
        width = self.app.size.width or 120
        for verbose in (2, 1, 0, -1):
            text = self._variant(verbose)
            if text.cell_len <= width:
                return text
        return text

    def _variant(self, verbose: int) -> Text:
        snap = self.snapshot
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append(f" hvkube{' ' + self.banner if self.banner else ''} ", style="bold reverse")
        backend = snap.backend if snap else self.backend
        simulated = snap.simulated if snap else self.simulated
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


class Crumbs(Static):
    """The views as tabs with their row counts, the one on screen lit; the filter, if any."""

    def show(
        self,
        snapshot: Snapshot | None,
        current: str,
        needle: str = "",
        shown: int = 0,
        matching: int = 0,
    ) -> None:
        """`shown`: the rows the table holds; `matching`: the rows that pass the filter (more
        when the view shows only the first of them)."""
        text = Text()
        for view, title in VIEW_TITLES.items():
            count = f" {snapshot.count(view)}" if snapshot is not None else ""
            text.append(
                f" {title}{count} ", style="bold reverse cyan" if view == current else "dim"
            )
            text.append(" ")
        if needle:
            of = f" of {matching}" if matching > shown else ""
            text.append(f" /{needle} ({shown}{of} shown)", style="bold yellow")
        elif matching > shown:
            text.append(f" showing {shown} of {matching}: / to filter", style="bold yellow")
        self.update(text)

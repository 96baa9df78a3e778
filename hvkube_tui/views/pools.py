"""Pools: each pool's wanted and actual tiers, errors and resume latency; acquire, scale,
edit, create and delete pools. The detail pane adds the pool's resume latencies."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from rich.console import RenderableType
from rich.text import Text
from textual.widget import Widget
from textual.widgets import Sparkline

from core.engine import ProvisionReport
from core.models import AcquiredVM
from core.output import ms as ms_text
from hvkube_tui.data import Row, Snapshot, cli_command, pool_median, sparkline_text
from hvkube_tui.views.base import View
from hvkube_tui.widgets.detail import detail_grid
from hvkube_tui.widgets.forms import EditPoolForm, PoolForm

if TYPE_CHECKING:
    from hvkube_tui.app import HvkubeApp


class PoolsView(View):
    NAME = "pools"
    COLUMNS = (
        ("name", "NAME"),
        ("template", "TEMPLATE"),
        ("desired", "WANT"),
        ("hot", "HOT"),
        ("warm", "WARM"),
        ("cold", "COLD"),
        ("running", "RUN"),
        ("error", "ERR"),
        ("p50", "P50"),
        ("trend", "RESUME TREND"),
    )
    BUSY_COLUMN = 9

    def __init__(self, dashboard: HvkubeApp) -> None:
        super().__init__(dashboard)
        self.spark = Sparkline([], id="spark")

    @classmethod
    def records(cls, snap: Snapshot) -> Mapping[str, dict[str, Any]]:
        return snap.pools

    @classmethod
    def format_row(cls, p: dict[str, Any], now: datetime) -> Row:
        c = p["counts"]
        errors = c.get("error", 0) + c.get("missing", 0)
        return (
            p["name"],
            p["template"],
            str(p["desired_count"]),
            f"{c.get('paused', 0)}/{p['hot_count']}",
            f"{c.get('saved', 0)}/{p['warm_count']}",
            str(c.get("off", 0)),
            str(c.get("running", 0)),
            (str(errors), "bold red") if errors else "0",
            ms_text(pool_median(p)),
            (sparkline_text(p["latencies"]), "cyan"),
        )

    # -- detail pane ---------------------------------------------------------------------------

    def detail(self, p: dict[str, Any], now: datetime) -> RenderableType:
        c = p["counts"]
        p50 = pool_median(p)
        lat = sorted(p["latencies"])
        p90 = lat[min(len(lat) - 1, int(len(lat) * 0.9))] if lat else None
        broken = c.get("error", 0) + c.get("missing", 0)
        # What explains a problem comes first: at 80x24 the pane is a few lines tall.
        first: list[tuple[str, Any]] = []
        if broken:
            first.append(
                ("problem", Text(f"{broken} VM(s) in error or missing: see :vms", style="bold red"))
            )
        return detail_grid(
            [
                *first,
                ("pool", p["name"]),
                ("template", p["template"]),
                (
                    "wanted",
                    f"{p['desired_count']} VMs: {p['hot_count']} hot, {p['warm_count']} warm",
                ),
                (
                    "now",
                    f"{p['vm_count']} VMs: {c.get('paused', 0)} hot, {c.get('saved', 0)} warm, "
                    f"{c.get('off', 0)} cold, {c.get('running', 0)} running, "
                    f"{c.get('error', 0) + c.get('missing', 0)} error",
                ),
                ("release", p["release_policy"]),
                ("max per host", p["max_per_host"] or "-"),
                (
                    "resume",
                    f"p50 {ms_text(p50)}, p90 {ms_text(p90)} (last {len(lat)} resumes)",
                ),
            ]
        )

    def detail_widgets(self) -> list[Widget]:
        return [self.spark]

    def show_detail(self, snap: Snapshot | None) -> None:
        key = self.cursor_key
        record = snap.record(self.NAME, key) if snap and key else None
        data = record["latencies"] if record else []
        if list(self.spark.data or []) != data:
            self.spark.data = data

    # -- actions -------------------------------------------------------------------------------

    def action_acquire(self) -> None:
        pool = self.selected()
        if pool:

            def done(got: AcquiredVM) -> str:
                return (
                    f"{got.name} ({got.ip or 'no IP yet'}) from {got.from_state.value} in "
                    f"{ms_text(got.resume_ms)}; held as {got.holder}. "
                    f"Give it back with: {cli_command(self.dashboard.settings)} release {got.name}"
                )

            engine = self.dashboard.engine
            self.run_engine(
                pool, "acquiring", f"acquire from {pool}", lambda: engine.acquire(pool), done
            )

    def _scale(self, delta: int) -> None:
        pool = self.selected()
        snap = self.dashboard.snapshot
        if not pool or snap is None:
            return
        record = snap.pools.get(pool)
        if record is None:
            return
        count = record["desired_count"] + delta
        if count < 0:
            self.notify(f"{pool} is already at 0 VMs", severity="warning")
            return
        engine = self.dashboard.engine

        def done(report: ProvisionReport) -> str:
            failed = report.failed
            return f"{pool} scaled to {count}" + (
                f"; {len(failed)} VM(s) failed: {next(iter(failed.values()))}" if failed else ""
            )

        self.run_engine(
            pool,
            f"scaling to {count}",
            f"scale {pool}",
            lambda: engine.scale_pool(pool, count, progress=self.progress(pool)),
            done,
        )

    def action_scale_up(self) -> None:
        self._scale(+1)

    def action_scale_down(self) -> None:
        """Scaling down deletes an idle VM with its disk: asked first, as `d` is."""
        pool = self.selected()
        snap = self.dashboard.snapshot
        if not pool or snap is None or pool not in snap.pools:
            return
        count = snap.pools[pool]["desired_count"] - 1
        if count < 0:
            self.notify(f"{pool} is already at 0 VMs", severity="warning")
            return
        self.confirm(
            f"Scale {pool} down to {count}? Its least ready idle VM is deleted with its disk.",
            lambda: self._scale(-1),
            "Scale down",
        )

    def action_edit(self) -> None:
        pool = self.selected()
        snap = self.dashboard.snapshot
        if not pool or snap is None or pool not in snap.pools:
            return
        engine = self.dashboard.engine

        def edited(values: dict[str, Any] | None) -> None:
            if values:
                self.run_engine(
                    pool,
                    "saving",
                    f"edit {pool}",
                    lambda: engine.update_pool(
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

        self.app.push_screen(EditPoolForm(dict(snap.pools[pool])), edited)

    def action_new(self) -> None:
        snap = self.dashboard.snapshot
        if snap is None:
            return
        dashboard = self.dashboard
        engine = dashboard.engine

        def made(values: dict[str, Any] | None) -> None:
            if not values:
                return
            name = values["name"]

            def create_and_build() -> ProvisionReport:
                engine.create_pool(**values)
                dashboard.refresh_now()  # show the new pool while its VMs are built
                return engine.provision_pool(name, progress=self.progress(name))

            self.run_engine(
                name,
                "creating",
                f"new pool {name}",
                create_and_build,
                lambda r: (
                    f"pool {name} created with {len(r.created)} VM(s)"
                    + (f"; {len(r.failed)} failed" if r.failed else "")
                ),
            )

        self.app.push_screen(PoolForm(list(snap.templates), set(snap.pools)), made)

    def action_delete(self) -> None:
        pool = self.selected()
        snap = self.dashboard.snapshot
        if not pool or snap is None:
            return
        vms = snap.pools[pool]["vm_count"] if pool in snap.pools else 0
        engine = self.dashboard.engine
        self.confirm(
            f"Delete pool {pool}" + (f" and its {vms} VM(s)?" if vms else "?"),
            lambda: self.run_engine(
                pool,
                "deleting",
                f"delete {pool}",
                lambda: engine.delete_pool(pool, with_vms=True),
                lambda _: f"{pool} deleted",
            ),
            "Delete",
        )

"""Every view's rows from a snapshot, made in the poll worker's thread so that the UI
thread only diffs them against its tables."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime

from hvkube_tui.data import Row, Snapshot, to_record
from hvkube_tui.views.base import View


class RowFormatter:
    """Formats snapshots for the views, incrementally: only rows whose data changed are
    formatted again (the snapshot says which when it follows the one formatted before),
    plus, for the views in `clock`, the rows on screen whose text depends on the time (ages,
    uptimes). Use it from one thread."""

    def __init__(self, views: Sequence[type[View]]) -> None:
        self.views = tuple(views)
        self._raw: dict[str, dict[str, tuple[object, ...]]] = {v.NAME: {} for v in self.views}
        self._rows: dict[str, dict[str, Row]] = {v.NAME: {} for v in self.views}
        self._serial: dict[str, int] = {}  # per raw view: the snapshot it was formatted for
        self.pending: set[str] = set()  # raw views left out of the last format

    def format(
        self,
        snap: Snapshot,
        now: datetime,
        clock: frozenset[str] | set[str] = frozenset(),
        on_screen: Mapping[str, Collection[str]] | None = None,
        current: str | None = None,
    ) -> dict[str, dict[str, Row]]:
        """`on_screen`: per view, the keys its table shows; a view's rows outside them keep
        their time-dependent text until they change or come on screen (None: every row).
        `current`: the view on screen. Another view of raw rows that cannot be formatted
        from the snapshot's changes alone (10,000 VMs the first time) is left out of the
        result and noted in `pending`, for `catch_up` when there is time."""
        result: dict[str, dict[str, Row]] = {}
        for view in self.views:
            name = view.NAME
            records = view.records(snap)
            if records is not None:
                result[name] = {key: view.format_row(r, now) for key, r in records.items()}
                continue
            follows = snap.serial == self._serial.get(name, -1) + 1
            if current is not None and name != current and not follows:
                if snap.serial != self._serial.get(name):
                    self.pending.add(name)
                continue
            self.pending.discard(name)
            raw = snap.raw[name]
            before_raw = self._raw[name]
            before = self._rows[name]
            delta = snap.changed.get(name) if follows else None
            if raw is before_raw:
                changed: Collection[str] = ()
            elif delta is not None:
                changed = delta
            else:
                changed = {key for key, _ in raw.items() - before_raw.items()}
                changed.update(key for key in before if key not in raw)
            ticking: Collection[str] = ()
            if name in clock and view.CLOCK:
                keys = raw.keys() if on_screen is None else on_screen.get(name, ())
                ticking = [k for k in keys if k in raw and view.ticking(raw[k])]
            if not changed and not ticking:
                rows = before
            else:
                rows = dict(before)
                for key in (*changed, *ticking):
                    row = raw.get(key)
                    if row is None:
                        rows.pop(key, None)
                    else:
                        rows[key] = view.format_row(to_record(name, row), now)
                if len(rows) != len(raw) or any(key not in before for key in changed):
                    rows = {key: rows[key] for key in raw}  # in the snapshot's order
            self._raw[name] = raw
            self._rows[name] = rows
            self._serial[name] = snap.serial
            result[name] = rows
        return result

    def catch_up(self, snap: Snapshot, now: datetime) -> dict[str, dict[str, Row]]:
        """The rows of the views left out before (and of the views of few rows)."""
        rows = self.format(snap, now)
        self.pending.clear()
        return rows

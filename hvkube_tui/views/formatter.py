"""Every view's rows from a snapshot, made in the poll worker's thread so that the UI
thread only diffs them against its tables."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from hvkube_tui.data import Row, Snapshot, to_record
from hvkube_tui.views.base import View


class RowFormatter:
    """Formats snapshots for the views, incrementally: only rows whose data changed are
    formatted again, plus, for the views in `clock`, the rows whose text depends on the
    time (ages, uptimes). Use it from one thread."""

    def __init__(self, views: Sequence[type[View]]) -> None:
        self.views = tuple(views)
        self._raw: dict[str, dict[str, tuple[object, ...]]] = {v.NAME: {} for v in self.views}
        self._rows: dict[str, dict[str, Row]] = {v.NAME: {} for v in self.views}

    def format(
        self, snap: Snapshot, now: datetime, clock: frozenset[str] | set[str] = frozenset()
    ) -> dict[str, dict[str, Row]]:
        result: dict[str, dict[str, Row]] = {}
        for view in self.views:
            name = view.NAME
            records = view.records(snap)
            if records is not None:
                result[name] = {key: view.format_row(r, now) for key, r in records.items()}
                continue
            raw = snap.raw[name]
            before_raw = self._raw[name]
            before = self._rows[name]
            if name in clock and view.CLOCK:
                rows = {
                    key: view.format_row(to_record(name, row), now)
                    if key not in before or before_raw.get(key) != row or view.ticking(row)
                    else before[key]
                    for key, row in raw.items()
                }
            elif raw is before_raw or raw == before_raw:
                rows = before
            else:
                changed = {key for key, _ in raw.items() - before_raw.items()}
                rows = {
                    key: view.format_row(to_record(name, row), now)
                    if key in changed or key not in before
                    else before[key]
                    for key, row in raw.items()
                }
            self._raw[name] = raw
            self._rows[name] = rows
            result[name] = rows
        return result

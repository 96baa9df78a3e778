"""What a command handler gets: settings, output mode, a lazily opened engine, and the
store's rows for commands that only read."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING

from core.cli.output import err_console

if TYPE_CHECKING:
    from core.engine import Engine
    from core.settings import Settings
    from core.store.reading import SqliteRows
    from core.store.views import ViewRows


class Context:
    """What a command handler gets: settings, output mode, and a lazily opened engine."""

    def __init__(self, args: argparse.Namespace) -> None:
        from core.settings import load_settings

        flags = {
            "db": getattr(args, "db", None),
            "backend": getattr(args, "backend", None),
            "readonly": True if getattr(args, "readonly", False) else None,
            "backend_switch": True if getattr(args, "backend_switch", False) else None,
            "host": getattr(args, "fleet_host", None),
        }
        loaded = load_settings(flags)
        self.settings: Settings = loaded.settings
        self.sources = loaded.sources
        self.json: bool = bool(getattr(args, "json", False))
        self.verbose: bool = bool(getattr(args, "verbose", False))
        self._engine: Engine | None = None
        self._rows: SqliteRows | None = None
        self._views: ViewRows | None = None

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            from core import open_engine
            from core.backends.base import DescribedBackend

            self._engine = open_engine(self.settings)
            if self._views is None:
                self._announce(self._engine.backend.simulated)
            backend = self._engine.backend
            if isinstance(backend, DescribedBackend) and not self.json:
                info = backend.describe()
                err_console.print(
                    f"{info['backend']} host: accelerator {info['accel']} "
                    f"({info['accel_reason']}); VMs in {info['vm_dir']}",
                    style="dim",
                )
        return self._engine

    @property
    def views(self) -> ViewRows:
        """The store's rows, for a command that only reads: read straight from an SQLite
        store that needs nothing done first (no engine, backend, peewee or models), else
        through the engine, which creates or migrates the store as every command does."""
        if self._views is None:
            from core import open_rows
            from core.store.views import ViewRows

            self._rows = open_rows(self.settings)
            if self._rows is None:
                self._views = self.engine.store.views
            else:
                # Only the simulated backend's host is simulated (Backend.simulated).
                self._announce(self.settings.backend == "sim")
                self._views = ViewRows(self._rows)
        return self._views

    def _announce(self, simulated: bool) -> None:
        if simulated and not self.json:
            err_console.print(
                f"simulated host ({self.settings.backend}); database {self.settings.db_shown()}",
                style="dim",
                soft_wrap=True,
            )

    def close(self) -> None:
        if self._rows is not None:
            self._rows.close()
        if self._engine is not None:
            self._engine.close()


# A command's handler: its parsed arguments and the context in, the exit code out.
Handler = Callable[[argparse.Namespace, Context], int]

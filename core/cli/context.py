"""What a command handler gets: settings, output mode, and a lazily opened engine."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING

from core.cli.output import err_console

if TYPE_CHECKING:
    from core.engine import Engine
    from core.settings import Settings


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

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            from core import open_engine
            from core.backends.base import DescribedBackend

            self._engine = open_engine(self.settings)
            if self._engine.backend.simulated and not self.json:
                err_console.print(
                    f"simulated host ({self._engine.backend.name}); "
                    f"database {self.settings.db_shown()}",
                    style="dim",
                    soft_wrap=True,
                )
            backend = self._engine.backend
            if isinstance(backend, DescribedBackend) and not self.json:
                info = backend.describe()
                err_console.print(
                    f"{info['backend']} host: accelerator {info['accel']} "
                    f"({info['accel_reason']}); VMs in {info['vm_dir']}",
                    style="dim",
                )
        return self._engine

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()


# A command's handler: its parsed arguments and the context in, the exit code out.
Handler = Callable[[argparse.Namespace, Context], int]

"""hvkube's engine: pools of ready Windows VMs, usable without the dashboard.

from core import open_engine

with open_engine() as engine:
    vm = engine.acquire("browser-pool", wait_s=60)
    print(vm.name, vm.ip)
    engine.release(vm.name)

The names below are loaded when first used, so that `import core.errors` (as the command
line does before it knows which command runs) does not load the engine, pydantic and peewee.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from core.engine import Engine
    from core.errors import HvkubeError
    from core.models import (
        VM,
        AcquiredVM,
        Agent,
        AgentResult,
        AgentStatus,
        Event,
        ReadinessProbe,
        ReleasePolicy,
        Task,
        Template,
        VMPool,
        VMState,
    )
    from core.settings import Settings, load_settings
    from core.store.reading import SqliteRows

# Each public name and the module that defines it.
_LAZY = {
    "Engine": "core.engine",
    "HvkubeError": "core.errors",
    "Settings": "core.settings",
    "load_settings": "core.settings",
    **dict.fromkeys(
        (
            "VM",
            "AcquiredVM",
            "Agent",
            "AgentResult",
            "AgentStatus",
            "Event",
            "ReadinessProbe",
            "ReleasePolicy",
            "Task",
            "Template",
            "VMPool",
            "VMState",
        ),
        "core.models",
    ),
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'core' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def open_engine(settings: Settings | None = None, **overrides: Any) -> Engine:
    """Open the engine on the configured store and backend (flags > env > config > defaults).

    Keyword overrides are setting names, e.g. `open_engine(db="x.db", backend="sim")`.
    """
    from core.backends import make_backend
    from core.engine import Engine
    from core.settings import load_settings
    from core.store import Store

    if settings is None:
        settings = load_settings(overrides).settings
    elif overrides:
        settings = settings.replace(**overrides)
    _check_places(settings)
    store = Store(settings.db_location(), readonly=settings.readonly)
    try:
        backend = make_backend(settings)
    except BaseException:
        store.close()
        raise
    return Engine(store, backend, settings)


def open_rows(settings: Settings) -> SqliteRows | None:
    """The SQLite store for plain reads (core.store.reading), when it needs nothing done
    before it is read; None when it must be opened whole, through `open_engine`."""
    from core.store.reading import open_rows as open_sqlite_rows

    _check_places(settings)
    if settings.db_is_url():
        return None
    return open_sqlite_rows(settings.db_path(), settings.backend, settings.readonly)


def _check_places(settings: Settings) -> None:
    """Refuse a bad host name, or a data folder others can write in, before anything is
    opened or created (a PostgreSQL store still keeps backend state and the API token in
    the data folder)."""
    from core.datadir import check_data_dir, check_own_files, sqlite_files
    from core.names import check_host_name

    check_host_name(settings.host_name())
    db_path = settings.db_path()
    if str(db_path) != ":memory:":
        check_data_dir(db_path.parent)
        if not settings.db_is_url():  # nor another user's store, or a link they planted
            check_own_files(sqlite_files(db_path))


__all__ = [
    "VM",
    "AcquiredVM",
    "Agent",
    "AgentResult",
    "AgentStatus",
    "Engine",
    "Event",
    "HvkubeError",
    "ReadinessProbe",
    "ReleasePolicy",
    "Settings",
    "Task",
    "Template",
    "VMPool",
    "VMState",
    "load_settings",
    "open_engine",
    "open_rows",
]

"""Effective settings: command-line flags, then HVKUBE_* variables, then the TOML
config file, then defaults. Each value remembers where it came from, for
`hvkube config show`.

Settings are a plain class checked here, not a pydantic model nor a dataclass: every
`hvkube` call loads them first, and importing pydantic alone costs more CPU than starting
Python does (dataclasses, through inspect, a third of it).
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
from pathlib import Path
from typing import Any, Literal, NamedTuple

from core.errors import InvalidInput

BackendName = Literal["sim", "hyperv", "qemu"]
BACKEND_NAMES: tuple[BackendName, ...] = ("sim", "hyperv", "qemu")

_YES = frozenset({"1", "true", "yes", "on"})
_NO = frozenset({"0", "false", "no", "off", ""})


def default_backend() -> BackendName:
    """Hyper-V where it can exist (Windows), the simulated host everywhere else."""
    return "hyperv" if sys.platform == "win32" else "sim"


def machine_name() -> str:
    """The machine's host name: on POSIX what gethostname() returns (the kernel's node name,
    without importing socket on every command), elsewhere gethostname() itself."""
    if hasattr(os, "uname"):
        return os.uname().nodename
    import socket

    return socket.gethostname()


def data_dir() -> Path:
    env = os.environ.get("HVKUBE_DATA_DIR")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_data_dir("hvkube"))


def config_path() -> Path:
    env = os.environ.get("HVKUBE_CONFIG")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_config_dir("hvkube")) / "config.toml"


class Settings:
    """Every setting hvkube reads, with its default. Names double as TOML keys and
    HVKUBE_<NAME>; `_RULES` says what else a value must be."""

    db: str = ""  # SQLite database file, or postgresql://user@host/dbname
    host: str = ""  # this host's name in the fleet (default: the machine's)
    backend: BackendName = default_backend()  # hypervisor
    sim_scale: float = 1.0  # simulated host time factor
    sim_memory_mb: int = 65536  # simulated host memory
    # PowerShell command line for the Hyper-V backend
    powershell: str = "powershell.exe -NoLogo -NoProfile -NonInteractive -ExecutionPolicy Bypass"
    vm_dir: str = ""  # where VM disks and saved states go
    qemu_dir: str = ""  # qemu backend: VM directories (default beside db)
    qemu_accel: Literal["auto", "kvm", "tcg"] = "auto"  # auto: probe KVM, else TCG
    qemu_binary: str = "qemu-system-x86_64"  # qemu backend: emulator
    hyperv_switch: str = "Default Switch"  # Hyper-V virtual switch
    hyperv_sessions: int = 4  # PowerShell sessions
    hyperv_dynamic_memory: bool = False  # dynamic memory for new VMs
    readonly: bool = False  # refuse every change
    backend_switch: bool = False  # open a store made with another backend, on purpose
    provision_parallelism: int = 8
    memory_ceiling: float = 0.8  # host memory cap
    op_timeout_s: float = 600.0  # per-operation timeout
    ready_timeout_s: float = 600.0  # boot readiness wait
    keys: dict[str, str] = {}  # dashboard key overrides (copied for each instance)
    api_token_file: str = ""  # HTTP API token file (beside the db)
    recording: bool = True  # record held VMs' screens
    recording_max_mb: int = 200  # size cap of one recording
    recording_retention_days: float = 14.0  # recordings older than this are deleted (0: kept)
    screenshot_dir: str = ""  # where the dashboard's p key saves (default: the data folder's)
    # controller variables an agent's --exec command also gets (comma-separated)
    exec_env: str = ""

    def __init__(self, **values: Any) -> None:
        unknown = sorted(set(values) - set(SETTING_NAMES))
        if unknown:
            raise TypeError(f"unknown setting(s) {', '.join(unknown)}")
        for name in SETTING_NAMES:
            value = values[name] if name in values else _default(name)
            try:
                setattr(self, name, _checked(name, value))
            except ValueError as exc:
                raise SettingError(name, str(exc)) from None

    def values(self) -> dict[str, Any]:
        """Every setting's value, by name, in the order `hvkube config show` lists them."""
        return {name: getattr(self, name) for name in SETTING_NAMES}

    def replace(self, **changes: Any) -> Settings:
        """A copy with `changes` (checked as any value is)."""
        return Settings(**{**self.values(), **changes})

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Settings) and self.values() == other.values()

    def __repr__(self) -> str:
        return f"Settings({', '.join(f'{k}={v!r}' for k, v in self.values().items())})"

    def db_is_url(self) -> bool:
        from core.store.target import is_url

        return is_url(self.db)

    def db_path(self) -> Path:
        """The SQLite file (for a PostgreSQL store: where a local one would be)."""
        return Path(self.db) if self.db and not self.db_is_url() else data_dir() / "hvkube.db"

    def db_location(self) -> str:
        """The store as the user names it: an SQLite file path or a PostgreSQL URL."""
        return self.db if self.db_is_url() else str(self.db_path())

    def db_shown(self) -> str:
        """The store for messages: a URL without its password."""
        from core.store.target import hide_password

        return hide_password(self.db) if self.db_is_url() else str(self.db_path())

    def host_name(self) -> str:
        """This host's name in the store: the setting, else the machine's name."""
        return self.host or machine_name()

    def screenshots_path(self) -> Path:
        """Where the dashboard saves screenshots: the setting, else the user's data folder
        (not the folder the dashboard was started in)."""
        return Path(self.screenshot_dir) if self.screenshot_dir else data_dir() / "screenshots"

    def state_dir(self) -> Path:
        """Where this host's backend state lives: beside an SQLite store, in the data
        folder with a PostgreSQL one."""
        return self.db_path().parent


# Every setting's name, in the order `hvkube config show` lists them.
SETTING_NAMES: tuple[str, ...] = tuple(Settings.__annotations__)

# What a value must be beyond its type (the type is its default's): at least (ge), more
# than (gt), at most (le), one of (choices).
_RULES: dict[str, dict[str, Any]] = {
    "backend": {"choices": BACKEND_NAMES},
    "sim_scale": {"ge": 0},
    "sim_memory_mb": {"gt": 0},
    "qemu_accel": {"choices": ("auto", "kvm", "tcg")},
    "hyperv_sessions": {"ge": 1, "le": 32},
    "provision_parallelism": {"ge": 1, "le": 64},
    "memory_ceiling": {"gt": 0, "le": 1},
    "op_timeout_s": {"gt": 0},
    "ready_timeout_s": {"gt": 0},
    "recording_max_mb": {"ge": 1},
    "recording_retention_days": {"ge": 0},
}


class SettingError(ValueError):
    """A setting's value breaks its rules (`load_settings` says where the value came from)."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"setting {name!r} is invalid: {problem}")
        self.name = name
        self.problem = problem


def _default(name: str) -> Any:
    default = getattr(Settings, name)
    return dict(default) if isinstance(default, dict) else default


def _checked(name: str, value: Any) -> Any:
    """`value` as the setting's type (text read as a number or a yes/no where one is
    wanted), or a ValueError saying what is wrong with it."""
    default = getattr(Settings, name)
    rules = _RULES.get(name, {})
    if isinstance(default, bool):
        value = _yes_no(value)
    elif isinstance(default, int):
        value = _number(value, int)
    elif isinstance(default, float):
        value = _number(value, float)
    elif isinstance(default, dict):
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            raise ValueError("must be a table of text values")
        value = dict(value)
    elif not isinstance(value, str):
        raise ValueError(f"must be text, not {type(value).__name__}")
    if "choices" in rules and value not in rules["choices"]:
        raise ValueError(f"{value!r} is not one of {', '.join(rules['choices'])}")
    for rule, holds, words in (
        ("ge", lambda limit: value >= limit, "at least"),
        ("gt", lambda limit: value > limit, "more than"),
        ("le", lambda limit: value <= limit, "at most"),
    ):
        limit = rules.get(rule)
        if limit is not None and not holds(limit):
            raise ValueError(f"must be {words} {limit:g}, not {value!r}")
    if name == "exec_env" and value:
        from core.agent_exec import env_names

        try:
            value = ",".join(env_names(value))
        except InvalidInput as exc:
            raise ValueError(exc.message) from None
    return value


def _yes_no(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _YES | _NO:
        return value.strip().lower() in _YES
    raise ValueError(f"must be yes or no (true/false, 1/0), not {value!r}")


def _number(value: Any, kind: type[int] | type[float]) -> int | float:
    """A whole number (kind int) or any finite number, from a number or its text."""
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = float(value.strip()) if kind is float else int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        what = "a whole number" if kind is int else "a number"
        raise ValueError(f"must be {what}, not {value!r}")
    if kind is int:
        if value != int(value):
            raise ValueError(f"must be a whole number, not {value!r}")
        return int(value)
    return float(value)


class LoadedSettings(NamedTuple):
    settings: Settings
    sources: dict[str, str]


def _coerce_env(name: str, raw: str) -> Any:
    if isinstance(_default(name), bool):
        lowered = raw.strip().lower()
        if lowered in _YES | _NO:
            return lowered in _YES
        raise InvalidInput(f"HVKUBE_{name.upper()}={raw!r} is not a yes/no value; use 1 or 0")
    if name == "keys":
        raise InvalidInput("key overrides come from the config file's [keys] table only")
    return raw


def load_settings(flags: dict[str, Any] | None = None) -> LoadedSettings:
    """Merge the sources; a bad value anywhere is an InvalidInput naming where it came from."""
    values: dict[str, Any] = {}
    sources: dict[str, str] = dict.fromkeys(SETTING_NAMES, "default")

    path = config_path()
    if path.exists():
        import tomllib

        try:
            file_values = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise InvalidInput(f"config file {path} is not valid TOML: {exc}") from None
        unknown = sorted(set(file_values) - set(SETTING_NAMES))
        if unknown:
            raise InvalidInput(
                f"config file {path} has unknown setting(s) {', '.join(unknown)}; "
                f"known: {', '.join(SETTING_NAMES)}"
            )
        for key, value in file_values.items():
            values[key] = value
            sources[key] = f"config {path}"

    for name in SETTING_NAMES:
        env = os.environ.get(f"HVKUBE_{name.upper()}")
        if env is not None and name != "keys":
            values[name] = _coerce_env(name, env)
            sources[name] = f"env HVKUBE_{name.upper()}"

    for key, value in (flags or {}).items():
        if value is not None:
            values[key] = value
            sources[key] = "flag"

    try:
        settings = Settings(**values)
    except SettingError as exc:
        raise InvalidInput(
            f"setting {exc.name!r} (from {sources.get(exc.name, '?')}) is invalid: {exc.problem}"
        ) from None
    return LoadedSettings(settings=settings, sources=sources)

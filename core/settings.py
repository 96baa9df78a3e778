"""Effective settings: command-line flags, then HVKUBE_* variables, then the TOML
config file, then defaults. Each value remembers where it came from, for
`hvkube config show`.
"""

from __future__ import annotations

import os
import socket
import sys
import tomllib
from pathlib import Path
from typing import Any, Literal

import platformdirs
from pydantic import BaseModel, Field, ValidationError

from core.errors import InvalidInput

BackendName = Literal["sim", "hyperv", "qemu"]


def default_backend() -> BackendName:
    """Hyper-V where it can exist (Windows), the simulated host everywhere else."""
    return "hyperv" if sys.platform == "win32" else "sim"


def machine_name() -> str:
    return socket.gethostname()


def data_dir() -> Path:
    return Path(os.environ.get("HVKUBE_DATA_DIR") or platformdirs.user_data_dir("hvkube"))


def config_path() -> Path:
    env = os.environ.get("HVKUBE_CONFIG")
    if env:
        return Path(env)
    return Path(platformdirs.user_config_dir("hvkube")) / "config.toml"


class Settings(BaseModel):
    """Every setting hvkube reads. Field names double as TOML keys and HVKUBE_<NAME>."""

    model_config = {"extra": "forbid"}

    db: str = Field(
        default="", description="SQLite database file, or postgresql://user@host/dbname"
    )
    host: str = Field(default="", description="this host's name in the fleet (default: machine)")
    backend: BackendName = Field(default_factory=default_backend, description="hypervisor")
    sim_scale: float = Field(default=1.0, ge=0, description="simulated host time factor")
    sim_memory_mb: int = Field(default=65536, gt=0, description="simulated host memory")
    powershell: str = Field(
        default="powershell.exe -NoLogo -NoProfile -NonInteractive -ExecutionPolicy Bypass",
        description="PowerShell command line for the Hyper-V backend",
    )
    vm_dir: str = Field(default="", description="where VM disks and saved states go")
    qemu_dir: str = Field(
        default="", description="qemu backend: VM directories (default beside db)"
    )
    qemu_accel: Literal["auto", "kvm", "tcg"] = Field(
        default="auto", description="qemu backend: accelerator (auto = probe KVM, else TCG)"
    )
    qemu_binary: str = Field(default="qemu-system-x86_64", description="qemu backend: emulator")
    hyperv_switch: str = Field(default="Default Switch", description="Hyper-V virtual switch")
    hyperv_sessions: int = Field(default=4, ge=1, le=32, description="PowerShell sessions")
    hyperv_dynamic_memory: bool = Field(default=False, description="dynamic memory for new VMs")
    readonly: bool = Field(default=False, description="refuse every change")
    backend_switch: bool = Field(
        default=False, description="open a store made with another backend, on purpose"
    )
    provision_parallelism: int = Field(default=8, ge=1, le=64)
    memory_ceiling: float = Field(default=0.8, gt=0, le=1, description="host memory cap")
    op_timeout_s: float = Field(default=600.0, gt=0, description="per-operation timeout")
    ready_timeout_s: float = Field(default=600.0, gt=0, description="boot readiness wait")
    keys: dict[str, str] = Field(default_factory=dict, description="dashboard key overrides")
    api_token_file: str = Field(default="", description="HTTP API token file (beside the db)")
    recording: bool = Field(default=True, description="record held VMs' screens")
    recording_max_mb: int = Field(default=200, ge=1, description="size cap of one recording")
    recording_retention_days: float = Field(
        default=14.0, ge=0, description="recordings older than this are deleted (0: kept)"
    )
    screenshot_dir: str = Field(
        default="", description="where the dashboard's p key saves (default: the data folder's)"
    )

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


class LoadedSettings(BaseModel):
    settings: Settings
    sources: dict[str, str]


def _coerce_env(name: str, raw: str) -> Any:
    field = Settings.model_fields[name]
    if field.annotation is bool:
        lowered = raw.strip().lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off", ""}:
            return False
        raise InvalidInput(f"HVKUBE_{name.upper()}={raw!r} is not a yes/no value; use 1 or 0")
    if name == "keys":
        raise InvalidInput("key overrides come from the config file's [keys] table only")
    return raw


def load_settings(flags: dict[str, Any] | None = None) -> LoadedSettings:
    """Merge the sources; a bad value anywhere is an InvalidInput naming where it came from."""
    values: dict[str, Any] = {}
    sources: dict[str, str] = {name: "default" for name in Settings.model_fields}

    path = config_path()
    if path.exists():
        try:
            file_values = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise InvalidInput(f"config file {path} is not valid TOML: {exc}") from None
        unknown = sorted(set(file_values) - set(Settings.model_fields))
        if unknown:
            raise InvalidInput(
                f"config file {path} has unknown setting(s) {', '.join(unknown)}; "
                f"known: {', '.join(Settings.model_fields)}"
            )
        for key, value in file_values.items():
            values[key] = value
            sources[key] = f"config {path}"

    for name in Settings.model_fields:
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
    except ValidationError as exc:
        first = exc.errors()[0]
        key = str(first["loc"][0]) if first["loc"] else "?"
        raise InvalidInput(
            f"setting {key!r} (from {sources.get(key, '?')}) is invalid: {first['msg']}"
        ) from None
    return LoadedSettings(settings=settings, sources=sources)

"""Backends: one module per hypervisor behind `core.backends.base.Backend`."""

from __future__ import annotations

import importlib

from core.backends.base import CLEAN_CHECKPOINT, Backend, Capability
from core.errors import InvalidInput
from core.settings import Settings

# name -> "module:factory"; each factory takes the Settings and returns a Backend.
BACKENDS = {
    "sim": "core.backends.sim:from_settings",
    "hyperv": "core.backends.hyperv:from_settings",
    "qemu": "core.backends.qemu:from_settings",
}


def make_backend(settings: Settings) -> Backend:
    target = BACKENDS.get(settings.backend)
    if target is None:
        raise InvalidInput(
            f"unknown backend {settings.backend!r}; choose one of {', '.join(BACKENDS)}"
        )
    module_name, factory = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            raise InvalidInput(
                f"backend {settings.backend!r} is not available in this build of hvkube"
            ) from None
        raise
    backend: Backend = getattr(module, factory)(settings)
    return backend


__all__ = ["BACKENDS", "CLEAN_CHECKPOINT", "Backend", "Capability", "make_backend"]

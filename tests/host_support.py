"""Looking at the host as an operator would: by name, in Hyper-V Manager."""

from __future__ import annotations

from core.backends.base import Backend, VMRef
from core.engine import Engine
from core.models import HostVM


def host_named(where: Engine | Backend, name: str) -> HostVM | None:
    """The one VM of that name on the host (ignoring case), or None; two is a test failure."""
    backend = where.backend if isinstance(where, Engine) else where
    found = backend.find_vms(name)
    assert len(found) <= 1, f"{len(found)} VMs named {name!r} on the host"
    return found[0] if found else None


def ref_named(where: Engine | Backend, name: str) -> VMRef:
    """How to address the VM of that name, for a test that acts on the host directly."""
    found = host_named(where, name)
    assert found is not None, f"no VM named {name!r} on the host"
    return VMRef(found.name, found.id)

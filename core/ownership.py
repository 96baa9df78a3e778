"""Which VMs hvkube made: the ownership mark every VM it creates carries.

The mark names the store (its `store_id`), so two hvkube databases on one host
never take each other's VMs. On Hyper-V it is a line of the VM's Notes; on
QEMU a marker file in the VM's folder; the simulated host keeps the Notes
text as Hyper-V does. Backends hand the raw text back and this module alone
reads it: the decision stays in Python, where tests run it.
"""

from __future__ import annotations

import re

MARK_PREFIX = "hvkube-owner: store="
_MARK_RE = re.compile(r"^hvkube-owner: store=([0-9a-f]{32})\s*$", re.M)


def owner_mark(store_id: str) -> str:
    """The text written into a new VM's Notes (or marker file)."""
    if not re.fullmatch(r"[0-9a-f]{32}", store_id):
        raise ValueError(f"store id {store_id!r} is not 32 lowercase hex digits")
    return f"{MARK_PREFIX}{store_id}"


def owner_of(notes: str | None) -> str | None:
    """The store id a VM's Notes name, or None for a VM hvkube did not make.

    Two different marks (someone copied Notes between VMs by hand) name nobody."""
    if not notes:
        return None
    found = set(_MARK_RE.findall(notes))
    return found.pop() if len(found) == 1 else None


def same_name(a: str, b: str) -> bool:
    """Hyper-V and NTFS compare names ignoring case: 'web-001' and 'WEB-001' are one."""
    return a.casefold() == b.casefold()

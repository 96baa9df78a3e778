"""Which VM a QEMU VM folder holds: its id and its ownership mark.

hvkube writes `marker.txt` into the folder of every VM it creates, before `vm.json`:

    hvkube-vm-id: 0b9f6d0e6f7a4c1e9d3b2a8c7e5f4a1d
    hvkube-owner: store=<the store id, 32 hex digits>

The id is a fresh uuid4 (hex) and never changes; the second line is
`core.ownership.owner_mark`, read back with `core.ownership.owner_of` (a marker whose
mark was removed or doubled by hand keeps its id and has owner None). A marker that
cannot be read or names no single id makes the VM unreadable: it is left out of
listings and no ref reaches it.

A VM folder without a marker (made by hand, or by an hvkube older than the marker)
still is a VM: its owner is None and its id is derived from the folder's name and the
bytes of its `vm.json` (which the backend writes once, at creation), prefixed
`derived-` so it never looks like a made id. Such an id stays the same while the
folder does, and a VM made again under the same name (a new `vm.json`: another QEMU
port, another creation time) gets another one.
"""

from __future__ import annotations

import hashlib
import re
import uuid

from core.ownership import owner_mark, owner_of

MARKER_FILE = "marker.txt"
ID_PREFIX = "hvkube-vm-id: "
DERIVED_PREFIX = "derived-"
_ID_RE = re.compile(r"^hvkube-vm-id: ([0-9a-f]{32})\s*$", re.M)


def new_id() -> str:
    """A fresh id for a VM hvkube creates."""
    return uuid.uuid4().hex


def marker_text(vm_id: str, owner: str) -> str:
    """The content of a new VM's marker file (ValueError for a malformed store id)."""
    if not re.fullmatch(r"[0-9a-f]{32}", vm_id):
        raise ValueError(f"VM id {vm_id!r} is not 32 lowercase hex digits")
    return f"{ID_PREFIX}{vm_id}\n{owner_mark(owner)}\n"


def read_marker(text: str) -> tuple[str, str | None] | None:
    """(id, owner) from a marker's text; None when it names no id, or two different ones."""
    ids = set(_ID_RE.findall(text))
    if len(ids) != 1:
        return None
    return ids.pop(), owner_of(text)


def derived_id(folder_name: str, config: bytes) -> str:
    """The id of a VM folder that has no marker (see the module docstring)."""
    digest = hashlib.sha256(folder_name.encode() + b"\0" + config).hexdigest()
    return f"{DERIVED_PREFIX}{digest[:32]}"

"""What a guest or the hypervisor reports is hostile input: checked here before it is used.

A guest controls its own network configuration, screen size and the text it hands the
host (KVP items, agent replies), so an address is parsed as ASCII then by `ipaddress`
(never `int()` of text `str.isdigit()` accepted: that takes '²' and Arabic-Indic digits),
a screen is asked for at a bounded size, and names and text are cut to a bounded length.
A report that fails a check is treated as no report, never as an error that could leave a
VM half-way through a step.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from core.backends.base import Backend, VMRef

log = logging.getLogger("hvkube.reported")

MAX_ADDRESS_CHARS = 64  # longer than any textual IPv4 or IPv6 address
MAX_NAME_CHARS = 256
MAX_TEXT_CHARS = 4096
# The largest screenshot asked of a host; a bigger screen is scaled down by the host.
MAX_SCREEN = (1920, 1200)


def bounded(value: Any, limit: int = MAX_TEXT_CHARS) -> str:
    """`value` as text of at most `limit` characters (cut, with '...' at the end)."""
    text = value if isinstance(value, str) else str(value)
    return text if len(text) <= limit else text[: max(0, limit - 3)] + "..."


def ipv4(raw: Any) -> str | None:
    """`raw` as a dotted IPv4 address, or None when it is not exactly one (ASCII only)."""
    if not isinstance(raw, str):
        return None
    text = raw.strip()
    if not text or len(text) > MAX_ADDRESS_CHARS or not text.isascii():
        return None
    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError:
        return None


def usable_ipv4(raw: Any) -> str | None:
    """An IPv4 address an agent on another machine can reach: not APIPA, unset, loopback,
    multicast or broadcast."""
    text = ipv4(raw)
    if text is None:
        return None
    address = ipaddress.IPv4Address(text)
    if (
        address.is_link_local
        or address.is_unspecified
        or address.is_loopback
        or address.is_multicast
        or address == ipaddress.IPv4Address("255.255.255.255")
        or text.startswith("0.")
    ):
        return None
    return text


def guest_ip(backend: Backend, ref: VMRef) -> str | None:
    """The VM's address as its backend reports it, or None when the report is not one
    IPv4 address. Every caller outside the backends asks through here."""
    raw = backend.ip_address(ref)
    if raw is None:
        return None
    found = ipv4(raw)
    if found is None:
        log.warning(
            "%s: ignoring a reported address that is not IPv4: %r", ref.name, bounded(raw, 80)
        )
    return found


def screen_request(width: int, height: int) -> tuple[int, int]:
    """The thumbnail size to ask the host for a screen of `width` x `height`: the same
    shape, at most `MAX_SCREEN`, at least 1x1; a screen that reports no size gets 640x480."""
    if width <= 0 or height <= 0:
        return 640, 480
    scale = min(1.0, MAX_SCREEN[0] / width, MAX_SCREEN[1] / height)
    return max(1, min(MAX_SCREEN[0], int(width * scale))), max(
        1, min(MAX_SCREEN[1], int(height * scale))
    )


__all__ = [
    "MAX_NAME_CHARS",
    "MAX_SCREEN",
    "MAX_TEXT_CHARS",
    "bounded",
    "guest_ip",
    "ipv4",
    "screen_request",
    "usable_ipv4",
]

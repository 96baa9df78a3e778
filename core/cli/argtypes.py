"""Argument types: they turn an argument's text into a value or refuse it (exit code 2)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.models import ReadinessProbe


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    return value


def host_list(text: str) -> list[str]:
    """'a,b' -> ['a', 'b']; each name is checked where it is used."""
    return [part.strip() for part in text.split(",")]


def seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if value != value or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be zero or more seconds")
    return value


def probe(text: str) -> ReadinessProbe:
    from core.models import ReadinessProbe

    if text == "heartbeat":
        return ReadinessProbe(kind="heartbeat")
    if text.startswith("tcp:") and text[4:].isdigit() and 0 < int(text[4:]) < 65536:
        return ReadinessProbe(kind="tcp", port=int(text[4:]))
    if text.startswith("http:") and text[5:].startswith(("http://", "https://")):
        return ReadinessProbe(kind="http", url=text[5:])
    raise argparse.ArgumentTypeError(
        f"{text!r} is not a probe; use heartbeat, tcp:PORT or http:URL (URL may hold {{ip}})"
    )

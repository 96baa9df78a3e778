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
    from core.errors import InvalidInput
    from core.probes import probe_from_text

    try:
        return probe_from_text(text)
    except InvalidInput as exc:
        raise argparse.ArgumentTypeError(exc.message) from None

"""The global options: on `hvkube` itself and again on every command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

# Global options that take a value (the word after them is not the command).
VALUE_OPTIONS = frozenset({"--db", "--backend"})


class _Version(argparse.Action):
    """--version: the version this code carries (importlib.metadata would cost more CPU
    than starting Python)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kw: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kw)

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> None:
        from core.version import VERSION

        python = sys.version.split()[0]  # what platform.python_version() reads
        sys.stdout.write(f"hvkube {VERSION} (Python {python})\n")
        parser.exit()


def top_options(parser: argparse.ArgumentParser) -> None:
    """Options of `hvkube` itself only."""
    parser.add_argument("--version", action=_Version, help="print hvkube's version and exit")


def global_options(parser: argparse.ArgumentParser, top: bool) -> None:
    """Add the global options; below the top, an option left out keeps the top's value."""
    default = None if top else argparse.SUPPRESS
    group = parser.add_argument_group("global options")
    group.add_argument(
        "--db",
        metavar="PATH|URL",
        default=default,
        help="SQLite database file, or postgresql://user@host/dbname (env HVKUBE_DB)",
    )
    group.add_argument(
        "--backend",
        choices=["sim", "hyperv", "qemu"],
        default=default,
        help="hypervisor: sim (simulated host), hyperv, qemu (env HVKUBE_BACKEND)",
    )
    group.add_argument(
        "--json",
        action="store_true",
        default=False if top else argparse.SUPPRESS,
        help='print JSON for scripts (errors too: {"error": {"code", "message"}} on stderr)',
    )
    group.add_argument(
        "--verbose",
        "-v",
        action="store_true",
        default=False if top else argparse.SUPPRESS,
        help="show tracebacks on internal errors",
    )
    group.add_argument(
        "--readonly",
        action="store_true",
        default=False if top else argparse.SUPPRESS,
        help="refuse every change (env HVKUBE_READONLY=1)",
    )
    group.add_argument(
        "--backend-switch",
        action="store_true",
        default=False if top else argparse.SUPPRESS,
        help="open a store made with another backend and record this one as its backend "
        "(its VMs are then checked against the new backend's host)",
    )

"""The command plugins: the `hvkube.commands` entry points of the installed distributions.

Read from the distributions' `entry_points.txt` files on sys.path directly, as
importlib.metadata finds them (first distribution of a name wins), because importing
importlib.metadata alone costs about as much CPU as starting Python, on every `hvkube` run.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from collections.abc import Callable
from typing import Any

GROUP = "hvkube.commands"
_DIST = re.compile(r"(?P<name>.+?)(-[^-]*)?\.(dist-info|egg-info)$")


def _entry_points_files() -> list[str]:
    """Each distribution's entry_points.txt, the first of each name on sys.path."""
    seen: set[str] = set()
    files = []
    for folder in sys.path:
        try:
            names = sorted(os.listdir(folder or "."))
        except OSError:
            continue
        for entry in names:
            match = _DIST.match(entry)
            if match is None:
                continue
            name = re.sub(r"[-_.]+", "-", match.group("name")).lower()
            path = os.path.join(folder or ".", entry, "entry_points.txt")
            if name in seen or not os.path.isfile(path):
                continue
            seen.add(name)
            files.append(path)
    return files


def _targets(text: str, group: str) -> list[str]:
    """The `module:attribute` targets of `group` in an entry_points.txt."""
    targets = []
    section = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip()
        elif section == group and "=" in line:
            targets.append(line.split("=", 1)[1].split("[", 1)[0].strip())
    return targets


def command_plugins() -> list[Callable[..., Any]]:
    """The register functions the installed distributions declare in `hvkube.commands`."""
    found = []
    for path in _entry_points_files():
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
        for target in _targets(text, GROUP):
            module, _, attribute = target.partition(":")
            value: Any = importlib.import_module(module.strip())
            for part in attribute.strip().split(".") if attribute else []:
                value = getattr(value, part)
            found.append(value)
    return found

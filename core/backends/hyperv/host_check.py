"""The oldest Hyper-V host hvkube supports, checked when a session starts.

Every cmdlet parameter the dispatcher uses exists on Windows 10 1809 / Windows
Server 2019 (build 17763) and later: `Set-VM -EnhancedSessionTransportType`
came with 1803 / 2019, `-AutomaticCheckpointsEnabled` and `-CheckpointType`
with 2016. On an older host a call would fail half-way with a parameter error,
so the session refuses to start instead, saying why.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

MIN_VERSION = (10, 0, 17763)
MIN_HOST = "Windows 10 1809 / Windows Server 2019 (build 17763)"

_VERSION = re.compile(r"(\d+)\.(\d+)\.(\d+)(?:\.\d+)?")


def parse_os_version(value: Any) -> tuple[int, int, int] | None:
    """`"10.0.17763"` (a fourth part is ignored), or a serialised System.Version object."""
    if isinstance(value, str):
        match = _VERSION.fullmatch(value.strip())
        return (int(match[1]), int(match[2]), int(match[3])) if match else None
    if isinstance(value, Mapping):
        try:
            return (int(value["Major"]), int(value["Minor"]), int(value["Build"]))
        except (KeyError, TypeError, ValueError):
            return None
    return None


def host_problem(info: Mapping[str, Any]) -> str | None:
    """None when the READY frame's `osVersion` is supported or not given; else one line
    naming the host's version, the minimum and what to do."""
    raw = info.get("osVersion")
    version = parse_os_version(raw)
    if version is None or version >= MIN_VERSION:
        return None
    shown = raw.strip() if isinstance(raw, str) else ".".join(str(part) for part in version)
    return (
        f"the Hyper-V host runs Windows {shown} (build {version[2]}), older than the oldest "
        f"host hvkube supports, {MIN_HOST}: some Hyper-V parameters hvkube uses do not exist "
        "there; upgrade the host's Windows or point hvkube at a newer host"
    )

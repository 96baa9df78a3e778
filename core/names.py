"""The one rule for names of templates, pools and VMs, and checks of other input.

A name must be accepted by Hyper-V, by NTFS and ext4 as a file name, and by
PowerShell as data without ever needing quoting: ASCII letters and digits,
then letters, digits, `-`, `_` or `.`, at most 48 characters (a VM name is
the pool name plus `-NNN`, and Hyper-V caps names at 100), not ending in `.`.
Nothing here is ever used to build PowerShell source; the pattern only keeps
names readable and safe as file names.
"""

from __future__ import annotations

import json
import re
from typing import Any

from core.errors import InvalidInput

NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,47}"
NAME_RULE = (
    "1-48 characters: letters, digits, '-', '_' or '.', starting with a letter or digit "
    "and not ending with '.'"
)
_NAME_RE = re.compile(NAME_PATTERN)
_RESERVED = (
    {"con", "prn", "aux", "nul"} | {f"com{i}" for i in range(10)} | {f"lpt{i}" for i in range(10)}
)


def name_problem(name: object) -> str | None:
    """Why `name` is not acceptable, or None when it is."""
    if not isinstance(name, str):
        return "must be a string"
    if name == "":
        return "is empty"
    if len(name) > 48:
        return f"is {len(name)} characters long; the limit is 48"
    if not _NAME_RE.fullmatch(name):
        bad = next((c for c in name if not (c.isascii() and (c.isalnum() or c in "._-"))), None)
        if bad is not None:
            return f"contains {bad!r}, which is not allowed ({NAME_RULE})"
        return f"must start with a letter or digit ({NAME_RULE})"
    if name.endswith("."):
        return f"must not end with '.' ({NAME_RULE})"
    if name.split(".")[0].lower() in _RESERVED:
        return "is a name Windows reserves for devices"
    return None


def check_name(name: object, what: str = "name") -> str:
    problem = name_problem(name)
    if problem is not None:
        shown = name if isinstance(name, str) and len(name) <= 60 else "(value)"
        raise InvalidInput(f"{what} {shown!r} {problem}")
    assert isinstance(name, str)
    return name


HOST_RULE = (
    "1-63 characters: letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
)
_HOST_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,61}[A-Za-z0-9])?")


def check_host_name(name: object) -> str:
    """A host's name (a machine name, as Windows and DNS allow them)."""
    if not isinstance(name, str) or not _HOST_RE.fullmatch(name):
        shown = name if isinstance(name, str) and len(name) <= 70 else "(value)"
        raise InvalidInput(f"host name {shown!r} is not valid ({HOST_RULE})")
    return name


# A pool's VMs are named '<pool>-NNN', so a pool name leaves room for four characters.
POOL_NAME_MAX = 44


def tier_problem(count: int, warm: int, hot: int) -> str | None:
    """Why a pool's hot and warm counts do not fit its total, or None."""
    if warm + hot > count:
        return (
            f"warm {warm} plus hot {hot} is more than count {count}; lower them or raise the count"
        )
    return None


def check_positive(
    value: int, what: str, *, allow_zero: bool = False, maximum: int = 10_000
) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{what} must be a whole number, got {value!r}")
    low = 0 if allow_zero else 1
    if value < low:
        raise InvalidInput(f"{what} must be at least {low}, got {value}")
    if value > maximum:
        raise InvalidInput(f"{what} must be at most {maximum}, got {value}")
    return value


# The largest screen coordinate input backends accept (Hyper-V's and QEMU's pointers).
MAX_PIXEL = 16384


def check_pixel(x: object, y: object) -> None:
    """InvalidInput unless x and y are whole pixels from 0 to MAX_PIXEL."""
    for value, what in ((x, "X"), (y, "Y")):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_PIXEL:
            raise InvalidInput(f"{what} must be a pixel from 0 to {MAX_PIXEL}, got {value!r}")


def check_path_text(path: object, what: str = "path") -> str:
    """A host path given by the user: non-empty, no control characters, no `..` parts."""
    if not isinstance(path, str) or not path.strip():
        raise InvalidInput(f"{what} is empty; give the full path of the file")
    if len(path) > 1024:
        raise InvalidInput(f"{what} is {len(path)} characters long; the limit is 1024")
    if any(ord(c) < 32 or ord(c) == 127 for c in path):
        raise InvalidInput(f"{what} contains a control character")
    if not is_utf8(path):
        raise InvalidInput(f"{what} is not valid UTF-8 text")
    parts = re.split(r"[\\/]+", path)
    if ".." in parts:
        raise InvalidInput(f"{what} {path!r} contains '..'; give the path without it")
    if any(c in path for c in '*?"<>|'):
        raise InvalidInput(f"{what} {path!r} contains a wildcard or a character Windows forbids")
    return path


MAX_JSON_DEPTH = 64
MAX_JSON_BYTES = 1_000_000  # agent input and output, from the CLI or the API


def is_utf8(text: str) -> bool:
    """False for text holding lone surrogates: how Python shows invalid UTF-8 bytes of a
    command line or file name. Such text cannot be stored or printed as UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _json_depth(value: Any) -> int:
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return deepest


def parse_json_object(text: str, what: str = "--input") -> dict[str, Any]:
    """Parse user JSON, which must be an object, before anything is written."""
    if len(text) > MAX_JSON_BYTES:
        raise InvalidInput(f"{what} is larger than 1 MB")
    if not is_utf8(text):
        raise InvalidInput(f"{what} is not valid UTF-8 text")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(
            f"{what} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:  # deeper than Python's parser goes
        raise InvalidInput(f"{what} is nested more than {MAX_JSON_DEPTH} levels deep") from None
    if not isinstance(value, dict):
        raise InvalidInput(f'{what} must be a JSON object like \'{{"key": "value"}}\'')
    if _json_depth(value) > MAX_JSON_DEPTH:
        raise InvalidInput(f"{what} is nested more than {MAX_JSON_DEPTH} levels deep")
    if not is_utf8(json.dumps(value, ensure_ascii=False)):  # "\udcff" escapes decode to these
        raise InvalidInput(f"{what} holds text that is not valid UTF-8 (a lone surrogate)")
    return value

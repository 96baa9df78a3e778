"""Writing files where other users may also write: never through a planted link.

A file is written to a fresh temporary name created exclusively in the target's folder
(`O_CREAT | O_EXCL` cannot follow or reuse a link an attacker planted), flushed, then
renamed over the target. A rename replaces a link at the target itself, never the file
it points to, and readers see the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

__all__ = ["write_atomic", "write_text_atomic"]


def write_atomic(path: Path | str, data: bytes, mode: int = 0o644) -> Path:
    """Write `data` to `path` atomically, with permissions `mode`; return the path."""
    import tempfile  # only when writing: the command line imports this module at start

    target = Path(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            if hasattr(os, "fchmod"):  # POSIX; Windows keeps the folder's ACL
                os.fchmod(f.fileno(), mode)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
    return target


def write_text_atomic(path: Path | str, text: str, mode: int = 0o644) -> Path:
    """`write_atomic` for UTF-8 text."""
    return write_atomic(path, text.encode("utf-8"), mode)

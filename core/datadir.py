"""The data folder (the store's folder) must be the user's own and closed to others.

hvkube keeps its store, the simulated host, SQLite's `-wal`/`-shm` files, the API token and
the controller's log there. Another user who can write in that folder can plant a link or a
file under one of those names before hvkube creates it, so such a folder is refused before
anything is opened in it, with the one command that fixes it.

On Windows the folder's ACL decides, not POSIX modes; the default folder is under the
user's own profile, and this check does not apply.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from core.errors import InvalidInput


def _user(uid: int) -> str:
    try:
        import pwd

        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except (ImportError, KeyError):
        return f"uid {uid}"


def check_data_dir(folder: Path) -> None:
    """Refuse `folder` when it exists and is not owned by the user running hvkube, or
    can be written by its group or others. A folder not made yet passes: hvkube makes it
    0700."""
    if os.name != "posix":
        return
    try:
        info = os.stat(folder)  # a link to a folder is judged by the folder it points to
    except (FileNotFoundError, NotADirectoryError):
        return
    except OSError as exc:
        raise InvalidInput(f"data folder {folder} cannot be read: {exc.strerror}") from None
    if not stat.S_ISDIR(info.st_mode):
        return  # the store refuses a path whose folder is a file, with its own message
    me = os.geteuid()
    writable = info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    if info.st_uid == me and not writable:
        return
    import shlex

    quoted = shlex.quote(str(folder))
    if info.st_uid != me:
        raise InvalidInput(
            f"data folder {folder} belongs to {_user(info.st_uid)}, not to you ({_user(me)}); "
            f"use a folder of your own (--db or HVKUBE_DATA_DIR), or run: "
            f"sudo chown {me} {quoted}"
        )
    if writable:
        raise InvalidInput(
            f"data folder {folder} can be written by other users "
            f"(mode {stat.S_IMODE(info.st_mode):o}); run: chmod go-w {quoted}"
        )


# SQLite's files beside a database: what it opens and writes along with it.
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


def sqlite_files(path: Path) -> list[Path]:
    return [path, *(Path(f"{path}{side}") for side in SQLITE_SIDE_FILES)]


def check_own_file(path: Path) -> None:
    """Refuse a file hvkube is about to open in its folders when another user made it (or
    a link to it), or others can write it: a folder closed now may not always have been,
    and what another user left there could be forged data or a link to a file of yours.
    A file that does not exist passes: hvkube makes it 0600."""
    if os.name != "posix":
        return
    try:
        found = os.lstat(path)
    except OSError:
        return  # absent, or unreadable: opening it says why
    import shlex

    me = os.geteuid()
    quoted = shlex.quote(str(path))
    if stat.S_ISLNK(found.st_mode):
        if found.st_uid != me:
            raise InvalidInput(
                f"{path} is a link made by {_user(found.st_uid)}, not by you ({_user(me)}); "
                f"hvkube does not follow it: check it, then run: rm {quoted}"
            )
        try:
            found = os.stat(path)
        except OSError:
            return
    if stat.S_ISDIR(found.st_mode):
        return  # not a file: the store refuses a folder with its own message
    if found.st_uid != me:
        raise InvalidInput(
            f"{path} belongs to {_user(found.st_uid)}, not to you ({_user(me)}); hvkube does "
            f"not use another user's file: check it, then move it away or run: "
            f"sudo chown {me} {quoted}"
        )
    if found.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise InvalidInput(
            f"{path} can be written by other users (mode {stat.S_IMODE(found.st_mode):o}); "
            f"run: chmod go-w {quoted}"
        )


def check_own_files(paths: list[Path]) -> None:
    for path in paths:
        check_own_file(path)


__all__ = ["check_data_dir", "check_own_file", "check_own_files", "sqlite_files"]

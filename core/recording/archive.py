"""Recordings on disk: one folder per holder (an agent or a lease) under the data folder.

Every entry is two files created exclusively (`O_CREAT | O_EXCL`, so a link planted in
the folder is never followed or reused): `NNNNNN.json` with its time, VM, action and frame,
and `NNNNNN.png` when its screen differs from the one before. An entry whose screen did not
change names the earlier frame. Several processes (the controller, an MCP server, the CLI)
may add to one recording: each takes the next free number.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.errors import InvalidInput, NotFound

FOLDER_NAME = "recordings"
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")
_ENTRY = re.compile(r"^(\d{6,})\.json$")
ID_HELP = "a recording id is an agent id (a number) or a lease id such as api-... or mcp-..."


def recording_id(holder: str) -> str:
    """The recording of a VM holder: `agent:7` -> `agent-7`; lease ids stay as they are."""
    text = holder.replace(":", "-")
    return text if _ID.match(text) else re.sub(r"[^A-Za-z0-9._-]", "_", text)[:80] or "_"


def check_recording_id(text: str) -> str:
    """`7` means agent 7; anything else must be a recording's folder name."""
    if text.isdigit():
        return f"agent-{int(text)}"
    if not _ID.match(text) or ".." in text:
        raise InvalidInput(f"recording id {text[:60]!r} is not valid; {ID_HELP}")
    return text


@dataclass
class Entry:
    seq: int
    at: str  # ISO 8601, UTC
    vm: str
    frame: str | None  # the PNG's file name, None when the recording reached its size cap
    width: int
    height: int
    action: dict[str, Any] | None = None
    new_frame: bool = True

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "at": self.at,
            "vm": self.vm,
            "frame": self.frame,
            "width": self.width,
            "height": self.height,
            "action": self.action,
            "new_frame": self.new_frame,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Entry:
        return cls(
            seq=int(data["seq"]),
            at=str(data["at"]),
            vm=str(data["vm"]),
            frame=data.get("frame"),
            width=int(data.get("width", 0)),
            height=int(data.get("height", 0)),
            action=data.get("action"),
            new_frame=bool(data.get("new_frame", True)),
        )


@dataclass
class RecordingInfo:
    id: str
    entries: int
    frames: int
    bytes: int
    first_at: str | None
    last_at: str | None
    vms: list[str] = field(default_factory=list)


def _create_exclusive(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's header, without decoding it."""
    if len(data) < 24 or data[:8] != b"\x89PNG\r\n\x1a\n":
        return 0, 0
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


class Archive:
    """The recordings folder (made 0700 on first write)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def folder(self, rec_id: str) -> Path:
        return self.root / check_recording_id(rec_id)

    def _entry_files(self, folder: Path) -> list[tuple[int, str]]:
        try:
            names = os.listdir(folder)
        except FileNotFoundError:
            return []
        found = [(int(m.group(1)), name) for name in names if (m := _ENTRY.match(name))]
        return sorted(found)

    def usage(self, rec_id: str) -> int:
        """Bytes the recording's files take."""
        folder = self.folder(rec_id)
        try:
            return sum(e.stat(follow_symlinks=False).st_size for e in os.scandir(folder))
        except FileNotFoundError:
            return 0

    def last_seq(self, rec_id: str) -> int:
        files = self._entry_files(self.folder(rec_id))
        return files[-1][0] if files else 0

    def add(
        self,
        rec_id: str,
        vm: str,
        png: bytes | None,
        previous_frame: str | None,
        size: tuple[int, int],
        action: dict[str, Any] | None,
        after_seq: int,
    ) -> Entry:
        """Write one entry (and its frame when `png` is given) at the first free number
        after `after_seq`."""
        folder = self.folder(rec_id)
        seq = after_seq + 1
        made = False
        while True:
            frame = f"{seq:06d}.png" if png is not None else previous_frame
            entry = Entry(
                seq=seq,
                at=datetime.now(UTC).isoformat(timespec="milliseconds"),
                vm=vm,
                frame=frame,
                width=size[0],
                height=size[1],
                action=action,
                new_frame=png is not None,
            )
            try:
                # The entry first: its number is the claim; the frame cannot clash after it.
                _create_exclusive(folder / f"{seq:06d}.json", json.dumps(entry.to_json()).encode())
            except FileExistsError:
                seq += 1
                continue
            except FileNotFoundError:  # the first entry (or retention removed the folder)
                if made:
                    raise
                self._make_folder(folder)
                made = True
                continue
            if png is not None:
                _create_exclusive(folder / f"{seq:06d}.png", png)
            return entry

    def _make_folder(self, folder: Path) -> None:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        folder.mkdir(exist_ok=True, mode=0o700)
        if folder.is_symlink():
            raise InvalidInput(f"recording folder {folder} is a link; remove it")

    def entries(self, rec_id: str) -> list[Entry]:
        folder = self.folder(rec_id)
        files = self._entry_files(folder)
        if not files and not folder.is_dir():
            raise NotFound(f"no recording {rec_id!r}; see 'hvkube agent recording --list'")
        out = []
        for _, name in files:
            try:
                data = json.loads((folder / name).read_text(encoding="utf-8"))
                out.append(Entry.from_json(data))
            except (OSError, ValueError, KeyError, TypeError):
                continue  # being written, or damaged: skipped
        return out

    def frame(self, rec_id: str, frame: str) -> bytes:
        if not re.fullmatch(r"\d{6,}\.png", frame):
            raise InvalidInput(f"frame {frame[:40]!r} is not a frame name such as 000001.png")
        path = self.folder(rec_id) / frame
        if path.is_symlink() or not path.is_file():
            raise NotFound(f"recording {rec_id!r} has no frame {frame}")
        return path.read_bytes()

    def recordings(self) -> list[RecordingInfo]:
        try:
            folders = [e for e in os.scandir(self.root) if e.is_dir(follow_symlinks=False)]
        except FileNotFoundError:
            return []
        out = []
        for folder in sorted(folders, key=lambda e: e.name):
            if not _ID.match(folder.name):
                continue
            entries = self.entries(folder.name)
            out.append(
                RecordingInfo(
                    id=folder.name,
                    entries=len(entries),
                    frames=sum(1 for e in entries if e.new_frame),
                    bytes=self.usage(folder.name),
                    first_at=entries[0].at if entries else None,
                    last_at=entries[-1].at if entries else None,
                    vms=sorted({e.vm for e in entries}),
                )
            )
        return out

    def prune(self, retention_days: float, now: float | None = None) -> list[str]:
        """Delete recordings whose newest file is older than `retention_days`; their ids."""
        if retention_days <= 0:
            return []
        cutoff = (now if now is not None else time.time()) - retention_days * 86400
        removed = []
        try:
            folders = [e for e in os.scandir(self.root) if e.is_dir(follow_symlinks=False)]
        except FileNotFoundError:
            return []
        for folder in folders:
            newest = max(
                (f.stat(follow_symlinks=False).st_mtime for f in os.scandir(folder.path)),
                default=folder.stat(follow_symlinks=False).st_mtime,
            )
            if newest < cutoff and _ID.match(folder.name):
                shutil.rmtree(folder.path, ignore_errors=True)
                removed.append(folder.name)
        return removed

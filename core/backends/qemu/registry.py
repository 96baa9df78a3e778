"""Finding a VM's directory by ref, and the per-VM lock every operation holds.

A directory holding `vm.json` is a VM. Its id is in `marker.txt` (see `marker`): every
operation takes a `VMRef` and acts only on the directory whose id is the ref's, so a VM
made again under the same name, or someone else's, is never touched. A directory
without a marker (made by hand or by an older hvkube) is listed with owner None and an
id derived from its `vm.json`; one whose marker cannot be read, or whose `vm.json` is
not a definition, is left out of listings and cannot be addressed.

Names compare ignoring case, as on Hyper-V: `WEB-001` is not created beside `web-001`,
and a VM's lock is keyed by its case-folded name.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from core.backends.base import VMRef
from core.backends.qemu.layout import VMFiles, now_iso, write_json
from core.backends.qemu.marker import derived_id, read_marker
from core.errors import InvalidInput, VMNotFoundInHost


class VMRegistry:
    """The VM directories under `root` and their locks (in `root/.locks`)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.lock_dir = self.root / ".locks"
        self.lock_dir.mkdir(exist_ok=True)

    def files(self, name: str) -> VMFiles:
        if not name or "/" in name or name in {".", ".."} or name.startswith("."):
            raise InvalidInput(f"VM name {name!r} cannot be a directory name")
        return VMFiles(self.root, name)

    def lock_file(self, name: str) -> Path:
        """The lock file of VM name `name`, ignoring case."""
        return self.lock_dir / f"{name.casefold()}.lock"

    @contextlib.contextmanager
    def locked(self, name: str, wait_s: float | None = None) -> Iterator[bool]:
        """Hold the lock of VM name `name`, ignoring case (threads and processes).
        Yields False when `wait_s` ran out."""
        fd = os.open(self.lock_file(name), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            if wait_s is None:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield True
                return
            deadline = time.monotonic() + wait_s
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        yield False
                        return
                    time.sleep(0.02)
            yield True
        finally:
            os.close(fd)

    def candidates(self, name: str) -> list[VMFiles]:
        """The directories named `name` ignoring case, the exact spelling first."""
        try:
            self.files(name)
        except InvalidInput:
            return []  # a name that cannot be a directory name names no VM here
        folded = name.casefold()
        found = [
            self.files(entry.name)
            for entry in self.root.iterdir()
            if not entry.name.startswith(".") and entry.name.casefold() == folded and entry.is_dir()
        ]
        return sorted(found, key=lambda files: (files.name != name, files.name))

    def identity(self, files: VMFiles) -> tuple[str, str | None, dict[str, Any]] | None:
        """(id, owner, definition) of the VM in `files.dir`; None when there is no VM
        there or it cannot be read (see the module docstring)."""
        try:
            raw = files.config.read_bytes()
            config = json.loads(raw)
        except (OSError, ValueError):
            return None
        if not isinstance(config, dict):
            return None
        try:
            text = files.marker.read_text()
        except FileNotFoundError:
            return derived_id(files.name, raw), None, config
        except (OSError, ValueError):
            return None
        marked = read_marker(text)
        if marked is None:
            return None
        return marked[0], marked[1], config

    def find(self, vm: VMRef) -> tuple[VMFiles, dict[str, Any]] | None:
        """The directory and definition of the VM with the ref's id, under its name."""
        for files in self.candidates(vm.name):
            identity = self.identity(files)
            if identity is not None and identity[0] == vm.id:
                return files, identity[2]
        return None

    def resolve(self, vm: VMRef, op: str) -> tuple[VMFiles, dict[str, Any]]:
        """Like `find`, but VMNotFoundInHost when the host has no VM with that id."""
        found = self.find(vm)
        if found is not None:
            return found
        others = [
            f"{files.name} ({identity[0]})"
            for files in self.candidates(vm.name)
            if (identity := self.identity(files)) is not None
        ]
        also = f"; the VM there now is another one: {', '.join(others)}" if others else ""
        raise VMNotFoundInHost(
            f"no QEMU VM '{vm.name}' with id {vm.id} in {self.root}{also}",
            vm=vm.name,
            operation=op,
        )

    @contextlib.contextmanager
    def operating(
        self, vm: VMRef, op: str, record: bool = True
    ) -> Iterator[tuple[VMFiles, dict[str, Any]]]:
        """Hold the VM's lock and yield its files and definition, once its id is checked.
        With `record`, op.json tells readers what is going on meanwhile."""
        with self.locked(vm.name):
            files, config = self.resolve(vm, op)
            if record:
                write_json(files.op, {"op": op, "pid": os.getpid(), "at": now_iso()})
            try:
                yield files, config
            finally:
                if record:
                    with contextlib.suppress(FileNotFoundError):
                        files.op.unlink()

    @contextlib.contextmanager
    def trying(
        self, vm: VMRef, op: str, wait_s: float
    ) -> Iterator[tuple[VMFiles, dict[str, Any]] | None]:
        """Like `operating` without op.json, waiting at most `wait_s` for the lock: yields
        None when another operation holds it (a missing VM is reported all the same)."""
        self.resolve(vm, op)
        with self.locked(vm.name, wait_s=wait_s) as got:
            yield self.resolve(vm, op) if got else None

"""Taking a held VM's frames: after every input action, and about once a second from a loop
(the controller's, or an MCP server's for its own VMs)."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from core.backends.base import VMRef
from core.engine import Engine
from core.errors import HvkubeError
from core.models import VM
from core.recording.archive import FOLDER_NAME, Archive, Entry, png_size, recording_id

log = logging.getLogger("hvkube.recording")


@dataclass(frozen=True)
class HeldVM:
    name: str
    holder: str
    host_id: str | None


def held_vms(engine: Engine) -> list[HeldVM]:
    """The held VMs of this engine's host: only its hypervisor can show their screens."""
    return [HeldVM(*row) for row in engine.store.records.held_vms(engine.host)]


@dataclass
class _Last:
    digest: bytes
    frame: str | None
    size: tuple[int, int]


class Recorder:
    """Adds frames to the recordings of held VMs. Thread-safe."""

    def __init__(self, engine: Engine, archive: Archive, max_bytes: int) -> None:
        self.engine = engine
        self.archive = archive
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._last: dict[tuple[str, str], _Last] = {}
        self._seq: dict[str, int] = {}
        self._usage: dict[str, int] = {}

    @classmethod
    def for_engine(cls, engine: Engine) -> Recorder | None:
        """The recorder the settings ask for; None when recording is off or read-only."""
        settings = engine.settings
        if not settings.recording or engine.readonly:
            return None
        archive = Archive(settings.state_dir() / FOLDER_NAME)
        return cls(engine, archive, settings.recording_max_mb * 1024 * 1024)

    def _last_of(self, rec: str, vm: str) -> _Last | None:
        key = (rec, vm)
        if key not in self._last and rec not in self._seq:
            # First frame of this recording in this process: continue where others left it.
            self._seq[rec] = self.archive.last_seq(rec)
            self._usage[rec] = self.archive.usage(rec)
            if self._seq[rec]:
                for entry in reversed(self.archive.entries(rec)):
                    if entry.vm == vm and entry.frame is not None:
                        data = self.archive.frame(rec, entry.frame)
                        self._last[key] = _Last(
                            hashlib.blake2b(data).digest(), entry.frame, png_size(data)
                        )
                        break
        return self._last.get(key)

    def capture(
        self, vm: VM | str, action: dict[str, Any] | None = None, png: bytes | None = None
    ) -> Entry | None:
        """Record `vm`'s screen (`png`, or a screenshot taken now) with the action that came
        before it. Nothing when the VM is not held, or when the screen is unchanged and no
        action is to be noted."""
        row = self.engine.get_vm(vm) if isinstance(vm, str) else vm
        if row.holder is None:
            return None
        if png is None:
            png = self.engine.backend.screenshot(self.engine.ref(row))
        return self.capture_held(HeldVM(row.name, row.holder, row.host_id), action, png)

    def capture_held(
        self, held: HeldVM, action: dict[str, Any] | None = None, png: bytes | None = None
    ) -> Entry | None:
        """`capture` of a VM known to be held (as the store's `held_vms` lists them)."""
        if png is None:
            if not held.host_id:
                return None
            png = self.engine.backend.screenshot(VMRef(held.name, held.host_id))
        rec = recording_id(held.holder)
        digest = hashlib.blake2b(png).digest()
        with self._lock:
            last = self._last_of(rec, held.name)
            unchanged = last is not None and last.digest == digest
            if unchanged and action is None:
                return None
            size = png_size(png)
            keep: bytes | None = None if unchanged else png
            if keep is not None and self._usage.get(rec, 0) + len(keep) > self.max_bytes:
                if action is None:
                    return None  # over the cap: only actions are still noted
                keep, last = None, None
            entry = self.archive.add(
                rec,
                held.name,
                keep,
                last.frame if last else None,
                size,
                action,
                self._seq.get(rec, 0),
            )
            self._seq[rec] = entry.seq
            self._usage[rec] = self._usage.get(rec, 0) + len(keep or b"") + 200
            if keep is not None:
                self._last[(rec, held.name)] = _Last(digest, entry.frame, size)
            elif entry.frame is None:
                self._last.pop((rec, held.name), None)
            return entry

    def capture_quietly(self, vm: VM | str, action: dict[str, Any] | None = None) -> Entry | None:
        """`capture`, logging instead of raising: a recording never fails the action."""
        try:
            return self.capture(vm, action)
        except (HvkubeError, OSError) as exc:
            log.warning("recording %s failed: %s", vm if isinstance(vm, str) else vm.name, exc)
            return None

    def forget(self, holder: str) -> None:
        rec = recording_id(holder)
        with self._lock:
            for key in [k for k in self._last if k[0] == rec]:
                del self._last[key]
            self._seq.pop(rec, None)
            self._usage.pop(rec, None)


class RecordingLoop:
    """A thread that records every held VM chosen by `which` about every `every_s`."""

    def __init__(
        self,
        recorder: Recorder,
        which: Callable[[], list[HeldVM]],
        every_s: float = 1.0,
        retention_days: float = 0.0,
    ) -> None:
        self.recorder = recorder
        self.which = which
        self.every_s = every_s
        self.retention_days = retention_days
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="recording", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def once(self) -> int:
        """One pass; the number of frames added."""
        added = 0
        try:
            held = self.which()
        except HvkubeError as exc:
            log.warning("recording: listing held VMs failed: %s", exc)
            return 0
        for vm in held:
            if self._stop.is_set():
                break
            try:
                added += self.recorder.capture_held(vm) is not None
            except (HvkubeError, OSError) as exc:
                log.debug("recording %s skipped: %s", vm.name, exc)
        return added

    def _run(self) -> None:
        next_prune = 0.0
        while not self._stop.is_set():
            started = time.monotonic()
            if self.retention_days > 0 and started >= next_prune:
                next_prune = started + 3600
                try:
                    self.recorder.archive.prune(self.retention_days)
                except OSError as exc:
                    log.warning("pruning recordings failed: %s", exc)
            self.once()
            self._stop.wait(max(0.05, self.every_s - (time.monotonic() - started)))

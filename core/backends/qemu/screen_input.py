"""The guest's screen and input over QMP: screendumps, keys, text and clicks.

Keys and text go to the emulated PS/2 keyboard as QKeyCodes (see `keys`); clicks go to
a USB tablet, an absolute pointer, so they land where they are aimed.
"""

from __future__ import annotations

import contextlib
import io
import os
import time
from typing import Any

from core.backends.base import VMRef
from core.backends.qemu.keys import chord_for, qcode_for
from core.backends.qemu.process import QemuProcesses, require_state
from core.backends.qemu.registry import VMRegistry
from core.errors import InvalidInput
from core.imaging import text_card
from core.models import HostState
from core.names import check_pixel

SCREEN_SIZE = (720, 400)  # VGA text mode, used for cards of VMs that have no screen


def key_event(qcode: str, down: bool) -> dict[str, Any]:
    """An `input-send-event` event pressing (or releasing) the key `qcode`."""
    return {"type": "key", "data": {"down": down, "key": {"type": "qcode", "data": qcode}}}


def check_typeable(text: str) -> list[tuple[str, bool]]:
    """The qcode and Shift of each character; InvalidInput names the first one the emulated
    keyboard cannot type."""
    if not isinstance(text, str) or text == "":
        raise InvalidInput("text to type is empty")
    return [qcode_for(char) for char in text]


class ScreenInput:
    """The screens and input devices of the VMs in a registry."""

    def __init__(self, registry: VMRegistry, processes: QemuProcesses) -> None:
        self.registry = registry
        self.processes = processes

    def screenshot(self, vm: VMRef) -> bytes:
        """A PNG of the VM's screen; a card with its name and state when it has none."""
        with self.registry.trying(vm, "screenshot", wait_s=10.0) as held:
            state, raw = (
                (HostState.OTHER, "Busy") if held is None else self.processes.run_state(held[0])
            )
            if held is not None and state in {HostState.RUNNING, HostState.PAUSED}:
                files = held[0]
                tmp = files.screen.with_name(f".screen.{os.getpid()}.png")
                try:
                    with self.processes.qmp(files) as qmp:
                        qmp.execute("screendump", {"filename": str(tmp), "format": "png"})
                    return tmp.read_bytes()
                finally:
                    with contextlib.suppress(FileNotFoundError):
                        tmp.unlink()
        return text_card([vm.name, raw], size=SCREEN_SIZE, background=(0, 0, 0))

    def send_events(
        self, vm: VMRef, groups: list[list[dict[str, Any]]], pace_s: float = 0.02
    ) -> None:
        """Send each group of input events in one `input-send-event`, `pace_s` apart."""
        with self.registry.operating(vm, "input", record=False) as (files, _):
            state, _ = self.processes.run_state(files)
            require_state(vm.name, "send input", state, {HostState.RUNNING})
            with self.processes.qmp(files) as qmp:
                for group in groups:
                    qmp.execute("input-send-event", {"events": group})
                    # The PS/2 controller queues only a few scancodes: let the guest drain it.
                    time.sleep(pace_s)

    def send_key(self, vm: VMRef, key: str) -> None:
        """Press and release a key or a chord: a name (enter, f5, win), a character, or
        names joined by '+' (ctrl+alt+del)."""
        chord = chord_for(key)
        events = [key_event(k, True) for k in chord] + [
            key_event(k, False) for k in reversed(chord)
        ]
        self.send_events(vm, [events])

    def send_text(self, vm: VMRef, text: str) -> None:
        """Type `text` on the emulated keyboard (US layout)."""
        groups: list[list[dict[str, Any]]] = []
        for qcode, shift in check_typeable(text):
            events = [key_event(qcode, True), key_event(qcode, False)]
            if shift:
                events = [key_event("shift", True), *events, key_event("shift", False)]
            groups.append(events)
        self.send_events(vm, groups)

    def _pointer_to(self, vm: VMRef, x: int, y: int) -> list[dict[str, Any]]:
        """The tablet's absolute events for screen pixel (x, y) of the screen as it is now."""
        check_pixel(x, y)
        width, height = self.screen_size(vm)
        ax = max(0, min(0x7FFF, x * 0x7FFF // max(1, width - 1)))
        ay = max(0, min(0x7FFF, y * 0x7FFF // max(1, height - 1)))
        return [
            {"type": "abs", "data": {"axis": "x", "value": ax}},
            {"type": "abs", "data": {"axis": "y", "value": ay}},
        ]

    def move_mouse(self, vm: VMRef, x: int, y: int) -> None:
        """Move the tablet's pointer to screen pixel (x, y)."""
        self.send_events(vm, [self._pointer_to(vm, x, y)])

    def screen_size(self, vm: VMRef) -> tuple[int, int]:
        """The size in pixels of the VM's screen now."""
        from PIL import Image

        with Image.open(io.BytesIO(self.screenshot(vm))) as image:
            return image.size

    def click(self, vm: VMRef, x: int, y: int, button: str = "left") -> None:
        """Move the (absolute, USB tablet) pointer to screen pixel (x, y) and click."""
        if button not in {"left", "right", "middle"}:
            raise InvalidInput(f"--button {button!r} is not one of left, right, middle")
        events = [
            *self._pointer_to(vm, x, y),
            {"type": "btn", "data": {"down": True, "button": button}},
            {"type": "btn", "data": {"down": False, "button": button}},
        ]
        self.send_events(vm, [events])

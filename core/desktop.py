"""Driving a VM's desktop from the host: screenshots, clicks, pointer moves, text and keys,
each checked before anything is sent and recorded after it is done.

The CLI, the MCP server and the API all go through here, so each refuses the same bad input
with the same message. A caller given `holders` may drive only the VMs one of them holds.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from core.backends.base import Capability, InputBackend, VMRef, feature
from core.engine import Engine
from core.errors import InvalidInput, NotHeld, ReadOnlyMode, Unsupported
from core.models import VM
from core.names import check_pixel
from core.recording.archive import png_size
from core.recording.recorder import Recorder

BUTTONS = ("left", "right", "middle")
MAX_TEXT = 4096
MAX_KEYS = 32
KEYS_HELP = (
    "keys separated by spaces, each a letter, digit or symbol, a name (enter, tab, esc, "
    "backspace, delete, home, end, pageup, pagedown, up, down, left, right, space, f1-f12, "
    "win, ctrl, alt, shift) or names joined by '+' (ctrl+l, ctrl+alt+del)"
)


@dataclass
class Screen:
    png: bytes
    width: int
    height: int

    @property
    def size(self) -> tuple[int, int]:
        return self.width, self.height


class Desktop:
    """The desktops of one engine's VMs, for one kind of caller (`source`: cli, mcp, api)."""

    def __init__(self, engine: Engine, source: str, recorder: Recorder | None = None) -> None:
        self.engine = engine
        self.source = source
        self.recorder = recorder
        self._sizes: dict[str, tuple[int, int]] = {}

    @property
    def can_see(self) -> bool:
        return Capability.SCREENSHOT in self.engine.backend.capabilities

    @property
    def can_drive(self) -> bool:
        return feature(self.engine.backend, Capability.INPUT) is not None

    # -- checks, before anything is sent ------------------------------------------------------

    def vm(self, name: str, holders: Collection[str] | None) -> VM:
        """The VM, when the caller may drive it: any of ours without `holders`, else only one
        held by one of them."""
        vm = self.engine.get_vm(name)
        if holders is not None and (vm.holder is None or vm.holder not in holders):
            raise NotHeld(
                f"VM {name!r} is not held by this session; drive only the VMs you acquired "
                "(acquire_desktop)"
            )
        return vm

    def _input(self, what: str) -> InputBackend:
        backend = feature(self.engine.backend, Capability.INPUT)
        if backend is None:
            raise Unsupported(
                f"the {self.engine.backend.name} backend cannot {what}; it needs a backend "
                "with keyboard and mouse input (hyperv or qemu)",
                operation="input",
            )
        if self.engine.readonly:
            raise ReadOnlyMode(f"read-only mode: refusing to {what}; run without --readonly")
        return backend

    def _inside(self, vm: VM, x: int, y: int) -> None:
        check_pixel(x, y)
        width, height = self._sizes.get(vm.name) or self.screenshot_of(vm).size
        if not (x < width and y < height):
            raise InvalidInput(
                f"({x}, {y}) is outside the screen of {vm.name}, which is {width}x{height}; "
                f"give x below {width} and y below {height}"
            )

    # -- the operations -------------------------------------------------------------------------

    def screenshot_of(self, vm: VM) -> Screen:
        png = self.engine.backend.screenshot(self.engine.ref(vm))
        width, height = self._sizes[vm.name] = png_size(png)
        return Screen(png, width, height)

    def screenshot(self, name: str, holders: Collection[str] | None = None) -> Screen:
        vm = self.vm(name, holders)
        shot = self.screenshot_of(vm)
        if self.recorder is not None:
            self.recorder.capture(vm, None, png=shot.png)
        return shot

    def click(
        self,
        name: str,
        x: int,
        y: int,
        button: str = "left",
        double: bool = False,
        holders: Collection[str] | None = None,
    ) -> None:
        vm = self.vm(name, holders)
        backend = self._input("click in a VM")
        if button not in BUTTONS:
            raise InvalidInput(f"button {button!r} is not one of {', '.join(BUTTONS)}")
        self._inside(vm, x, y)
        ref = self.engine.ref(vm)
        for _ in range(2 if double else 1):
            backend.click(ref, x, y, button=button)
        self._note(vm, {"kind": "click", "x": x, "y": y, "button": button, "double": double})

    def move_mouse(self, name: str, x: int, y: int, holders: Collection[str] | None = None) -> None:
        vm = self.vm(name, holders)
        backend = self._input("move the pointer in a VM")
        self._inside(vm, x, y)
        backend.move_mouse(self.engine.ref(vm), x, y)
        self._note(vm, {"kind": "move", "x": x, "y": y})

    def type_text(self, name: str, text: str, holders: Collection[str] | None = None) -> int:
        vm = self.vm(name, holders)
        backend = self._input("type into a VM")
        if not isinstance(text, str) or len(text) > MAX_TEXT:
            raise InvalidInput(f"text to type is longer than {MAX_TEXT} characters; split it")
        backend.check_text(text)
        backend.send_text(self.engine.ref(vm), text)
        self._note(vm, {"kind": "type", "text": text})
        return len(text)

    def press_keys(self, name: str, keys: str, holders: Collection[str] | None = None) -> list[str]:
        """Press each key or combination in turn; every one is checked before the first."""
        vm = self.vm(name, holders)
        backend = self._input("press keys in a VM")
        parts = keys.split() if isinstance(keys, str) else []
        if not parts:
            raise InvalidInput(f"no key given; give {KEYS_HELP}")
        if len(parts) > MAX_KEYS:
            raise InvalidInput(f"{len(parts)} keys at once; give at most {MAX_KEYS}")
        for key in parts:
            backend.check_key(key)
        ref: VMRef = self.engine.ref(vm)
        for key in parts:
            backend.send_key(ref, key)
        self._note(vm, {"kind": "key", "keys": " ".join(parts)})
        return parts

    def wait_for_change(
        self,
        name: str,
        timeout_s: float,
        holders: Collection[str] | None = None,
        every_s: float = 0.25,
    ) -> tuple[bool, Screen]:
        """Poll the screen until it differs from the first look, or `timeout_s` passes."""
        if not isinstance(timeout_s, int | float) or not 0 <= timeout_s <= 300:
            raise InvalidInput(f"timeout must be between 0 and 300 seconds, got {timeout_s!r}")
        vm = self.vm(name, holders)
        first = self.screenshot_of(vm)
        deadline = time.monotonic() + timeout_s
        shot = first
        while time.monotonic() < deadline:
            time.sleep(min(every_s, max(0.0, deadline - time.monotonic())))
            shot = self.screenshot_of(vm)
            if shot.png != first.png:
                if self.recorder is not None:
                    self.recorder.capture(vm, None, png=shot.png)
                return True, shot
        return False, shot

    def _note(self, vm: VM, action: dict[str, Any]) -> None:
        if self.recorder is None:
            return
        entry = self.recorder.capture_quietly(vm, {**action, "source": self.source})
        if entry is not None and entry.width:
            self._sizes[vm.name] = (entry.width, entry.height)  # the screen after the action

"""Keys and text for Msvm_Keyboard: Win32 virtual-key codes and TypeText chunks."""

from __future__ import annotations

from core.errors import InvalidInput

# TypeText accepts at most 512 ASCII characters a call.
TYPE_TEXT_CHUNK = 512

_NAMED: dict[str, int] = {
    "backspace": 0x08,
    "tab": 0x09,
    "enter": 0x0D,
    "return": 0x0D,
    "shift": 0x10,
    "ctrl": 0x11,
    "alt": 0x12,
    "pause": 0x13,
    "capslock": 0x14,
    "esc": 0x1B,
    "escape": 0x1B,
    "space": 0x20,
    "pageup": 0x21,
    "pagedown": 0x22,
    "end": 0x23,
    "home": 0x24,
    "left": 0x25,
    "up": 0x26,
    "right": 0x27,
    "down": 0x28,
    "printscreen": 0x2C,
    "insert": 0x2D,
    "delete": 0x2E,
    "del": 0x2E,
    "win": 0x5B,
    "lwin": 0x5B,
    "rwin": 0x5C,
    "apps": 0x5D,
    "menu": 0x5D,
}
_NAMED.update({f"f{i}": 0x6F + i for i in range(1, 25)})

CTRL_ALT_DEL = "ctrl+alt+del"
KEY_HELP = (
    "a single letter or digit, a name such as enter, tab, esc, backspace, delete, up, f5, win, "
    "'ctrl+alt+del', or a virtual-key code such as 0x0D"
)


def key_code(key: str) -> int:
    """The Win32 virtual-key code for a key given by name, character or number."""
    if not isinstance(key, str) or not key.strip():
        raise InvalidInput(f"key is empty; give {KEY_HELP}")
    text = key.strip()
    lowered = text.lower()
    if lowered in _NAMED:
        return _NAMED[lowered]
    if len(text) == 1 and text.isascii() and text.isalnum():
        return ord(text.upper())
    if lowered.startswith("0x"):
        try:
            code = int(lowered, 16)
        except ValueError:
            code = -1
        if 1 <= code <= 0xFE:
            return code
    raise InvalidInput(f"unknown key {text[:40]!r}; give {KEY_HELP}")


def text_chunks(text: str) -> list[str]:
    """Split text for TypeText: ASCII only (tab and newline allowed), at most 512 a chunk."""
    if not isinstance(text, str) or text == "":
        raise InvalidInput("text to type is empty")
    for index, char in enumerate(text):
        if not (char in "\t\n" or 32 <= ord(char) < 127):
            raise InvalidInput(
                f"text to type has {char!r} at position {index}; Msvm_Keyboard.TypeText "
                "types printable ASCII, tab and newline only"
            )
    return [text[i : i + TYPE_TEXT_CHUNK] for i in range(0, len(text), TYPE_TEXT_CHUNK)]


MOUSE_BUTTONS = {"left": 1, "right": 2, "middle": 3}

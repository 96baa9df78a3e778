"""Keys for QEMU's `input-send-event`: characters and key names to QKeyCode names."""

from __future__ import annotations

from core.errors import InvalidInput

# The qcode and whether Shift is held, for each character `send_text` can type.
_SHIFTED = dict(zip('!@#$%^&*()_+{}|:"<>?~', "1234567890-=[]\\;',./`", strict=True))
_PLAIN = {
    " ": "spc",
    "\n": "ret",
    "\t": "tab",
    "-": "minus",
    "=": "equal",
    "[": "bracket_left",
    "]": "bracket_right",
    "\\": "backslash",
    ";": "semicolon",
    "'": "apostrophe",
    ",": "comma",
    ".": "dot",
    "/": "slash",
    "`": "grave_accent",
}


_KEY_NAMES = {
    "enter": "ret",
    "return": "ret",
    "tab": "tab",
    "esc": "esc",
    "escape": "esc",
    "backspace": "backspace",
    "space": "spc",
    "delete": "delete",
    "del": "delete",
    "insert": "insert",
    "home": "home",
    "end": "end",
    "pageup": "pgup",
    "pagedown": "pgdn",
    "left": "left",
    "right": "right",
    "up": "up",
    "down": "down",
    "win": "meta_l",
    "lwin": "meta_l",
    "rwin": "meta_r",
    "apps": "menu",
    "menu": "menu",
    "shift": "shift",
    "ctrl": "ctrl",
    "alt": "alt",
    "capslock": "caps_lock",
    "printscreen": "print",
    "pause": "pause",
    **{f"f{i}": f"f{i}" for i in range(1, 13)},
}
KEY_HELP = (
    "a letter, digit or symbol, a name such as enter, tab, esc, backspace, delete, up, f5, "
    "win, or names joined by '+' such as ctrl+alt+del"
)


def chord_for(key: str) -> list[str]:
    """The qcodes pressed together for a key name, a character or a '+' chord."""
    if not isinstance(key, str) or not key.strip():
        raise InvalidInput(f"key is empty; give {KEY_HELP}")
    text = key.strip()
    if len(text) == 1:
        qcode, shift = qcode_for(text)
        return ["shift", qcode] if shift else [qcode]
    chord: list[str] = []
    for part in text.lower().replace("-", "+").split("+"):
        part = part.strip()
        if part in _KEY_NAMES:
            chord.append(_KEY_NAMES[part])
        elif len(part) == 1 and part.isascii() and part.isalnum():
            chord.append(part)
        else:
            raise InvalidInput(f"unknown key {text[:40]!r}; give {KEY_HELP}")
    return chord


def qcode_for(char: str) -> tuple[str, bool]:
    if char.isascii() and char.isalnum():
        return char.lower(), char.isupper()
    if char in _PLAIN:
        return _PLAIN[char], False
    if char in _SHIFTED:
        base = _SHIFTED[char]
        return _PLAIN.get(base, base), True
    raise InvalidInput(f"cannot type {char!r} with the emulated keyboard")

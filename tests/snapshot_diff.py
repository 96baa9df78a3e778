"""A failing dashboard snapshot explained in text: the screen's lines that differ, so a
failure in CI (where the HTML report is out of reach) says what changed."""

from __future__ import annotations

import difflib
import html
import pickle
import re
from pathlib import Path

_TEXT = re.compile(r'<text[^>]*\bx="([\d.]+)"[^>]*\by="([\d.]+)"[^>]*>(.*?)</text>', re.S)
_STYLE_LIMIT = 40


def screen_lines(svg: str) -> list[str]:
    """The terminal's text, one string per row (SVG text runs ordered by position)."""
    rows: dict[float, list[tuple[float, str]]] = {}
    for x, y, text in _TEXT.findall(svg):
        rows.setdefault(float(y), []).append((float(x), html.unescape(text)))
    lines = ["".join(t for _, t in sorted(runs)) for _, runs in sorted(rows.items())]
    return [line.replace("\xa0", " ").rstrip() for line in lines if line.strip()]


def explain(report_data: Path) -> str:
    """The text diff between the stored snapshot and the picture taken, from the data
    pytest-textual-snapshot saved for its report; '' when there is nothing to show."""
    try:
        data = pickle.loads(report_data.read_bytes())
    except (OSError, pickle.UnpicklingError, EOFError):
        return ""
    expected, actual = str(data[1] or ""), str(data[2] or "")
    diff = list(
        difflib.unified_diff(
            screen_lines(expected), screen_lines(actual), "snapshot", "actual", lineterm="", n=1
        )
    )
    if diff:
        return "\n".join(diff)
    raw = list(
        difflib.unified_diff(
            expected.splitlines(), actual.splitlines(), "snapshot", "actual", lineterm="", n=0
        )
    )
    return "same text, different styles:\n" + "\n".join(raw[:_STYLE_LIMIT])

"""Text that comes from users, agents, guests or hosts, on its way to rich or Textual.

Such text is data: a `[/oops]` in an agent's input or a `[link=...]` in an error a guest
produced must be shown as typed, never read as markup (which fails, or colours and links
the operator's terminal). So data is never put inside a markup string: it goes to rich
and Textual as a `Text` made here, and the command line's consoles read no markup at all.
rich is imported only when one of these is called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text


def literal(value: object, style: str = "") -> Text:
    """`value` shown exactly as it is (control characters dropped), in `style`; a Text is
    kept as it is."""
    from rich.text import Text

    if isinstance(value, Text):
        return value
    return Text(str(value), style=style)


def assemble(*pieces: Any) -> Text:
    """One line of pieces, each a str shown as it is, a (text, style) pair or a Text."""
    from rich.text import Text

    return Text.assemble(*pieces)


def plain_console(**options: Any) -> Console:
    """A rich console that reads no markup and no emoji codes in what it prints: strings
    (in tables too) are shown as they are; colours come only from Text styles."""
    from rich.console import Console

    return Console(markup=False, emoji=False, highlight=False, **options)

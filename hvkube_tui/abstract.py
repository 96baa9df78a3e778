"""Abstract hooks on Textual classes: screens and widgets have Textual's own metaclass, so
ABCMeta alone cannot be theirs. With this one, a form or view that lacks a hook it must
supply cannot be built."""

from __future__ import annotations

from abc import ABCMeta

from textual.message_pump import MessagePump


class AbstractPumpMeta(type(MessagePump), ABCMeta):  # type: ignore[misc]
    pass

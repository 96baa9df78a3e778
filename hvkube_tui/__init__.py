"""hvkube's Textual dashboard. Build it with `make_app(settings, engine=None, clock=None)`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hvkube_tui.app import HvkubeApp


def make_app(*args: Any, **kwargs: Any) -> HvkubeApp:
    from hvkube_tui.app import make_app as _make_app

    return _make_app(*args, **kwargs)


__all__ = ["make_app"]

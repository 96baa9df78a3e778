"""The command palette (ctrl+p): every action of the current view, and the views, by name."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider

from hvkube_tui.actions import ACTIONS, VIEW_TITLES


class HvkubeCommands(Provider):
    def _commands(self) -> list[tuple[str, str, Callable[[], object]]]:
        from hvkube_tui.app import HvkubeApp  # the app module imports this one

        app = self.app
        assert isinstance(app, HvkubeApp), "the palette of hvkube's dashboard"
        found: list[tuple[str, str, Callable[[], object]]] = []
        for spec in ACTIONS:
            if spec.id in ("help", "quit") or app.action_allowed(spec.id, ignore_modal=True):
                callback = getattr(app, f"action_{spec.id}")
                found.append((spec.help, f"key {app.key_for(spec.id)}", callback))
        for view, title in VIEW_TITLES.items():
            found.append((f"Go to {title}", f":{view}", partial(app.action_show_view, view)))
        return found

    async def discover(self) -> Hits:
        for title, help_text, callback in self._commands():
            yield DiscoveryHit(title, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, help_text, callback in self._commands():
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), callback, help=help_text)

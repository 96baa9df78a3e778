"""The dashboard's views against the ActionSpec table: each view does exactly the actions
the table gives it, and the app hands every one of them to the view on screen."""

from __future__ import annotations

from textual.widgets import DataTable

from hvkube_tui.actions import ACTIONS, ALL_VIEWS
from hvkube_tui.app import HvkubeApp
from hvkube_tui.views import VIEW_CLASSES

VIEW_ACTIONS = [spec for spec in ACTIONS if spec.views != ALL_VIEWS]


def test_each_view_does_the_actions_the_table_gives_it() -> None:
    for view in VIEW_CLASSES:
        own = {
            name.removeprefix("action_")
            for name in dir(view)
            if name.startswith("action_") and not hasattr(DataTable, name)
        }
        listed = {spec.id for spec in VIEW_ACTIONS if view.NAME in spec.views}
        assert own == listed, view.NAME


def test_the_app_hands_every_view_action_to_the_view() -> None:
    for spec in VIEW_ACTIONS:
        assert callable(getattr(HvkubeApp, f"action_{spec.id}", None)), spec.id


def test_every_view_has_its_columns_and_a_busy_cell_that_is_not_the_key() -> None:
    names = [view.NAME for view in VIEW_CLASSES]
    assert names == ["pools", "templates", "vms", "agents", "events", "hosts"]
    for view in VIEW_CLASSES:
        assert view.COLUMNS and 0 < view.BUSY_COLUMN < len(view.COLUMNS), view.NAME

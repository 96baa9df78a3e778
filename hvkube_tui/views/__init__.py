"""The dashboard's views, one module each: columns, row format, detail pane, actions."""

from __future__ import annotations

from hvkube_tui.views.agents import AgentsView
from hvkube_tui.views.base import View
from hvkube_tui.views.events import EventsView
from hvkube_tui.views.hosts import HostsView
from hvkube_tui.views.pools import PoolsView
from hvkube_tui.views.templates import TemplatesView
from hvkube_tui.views.vms import VmsView

# In the order of the tabs and of the keys 1-6.
VIEW_CLASSES: tuple[type[View], ...] = (
    PoolsView,
    TemplatesView,
    VmsView,
    AgentsView,
    EventsView,
    HostsView,
)
VIEW_NAMES = tuple(view.NAME for view in VIEW_CLASSES)

__all__ = [
    "VIEW_CLASSES",
    "VIEW_NAMES",
    "AgentsView",
    "EventsView",
    "HostsView",
    "PoolsView",
    "TemplatesView",
    "View",
    "VmsView",
]

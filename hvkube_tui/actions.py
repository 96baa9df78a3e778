"""The dashboard's actions: one table drives the key bindings, the footer, `?` help,
the command palette and read-only mode. Each view (hvkube_tui/views) does the actions
the table gives it; `start_action()` runs one off the UI thread."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from textual.binding import Binding
from textual.dom import DOMNode

from core.errors import HvkubeError
from hvkube_tui.messages import ActionDone, ActionFailed

T = TypeVar("T")

ALL_VIEWS = frozenset({"pools", "templates", "vms", "agents", "events", "hosts"})


@dataclass(frozen=True)
class ActionSpec:
    id: str  # binding id (the name used in the config file's [keys] table) and action name
    key: str  # Textual key name
    display: str  # how the key is shown
    label: str  # short footer label
    help: str  # one line for `?` help and the command palette
    mutating: bool  # removed in read-only mode
    views: frozenset[str] = ALL_VIEWS
    show: bool = True


ACTIONS: tuple[ActionSpec, ...] = (
    ActionSpec("resume", "r", "r", "resume", "Resume the selected VM", True, frozenset({"vms"})),
    ActionSpec("save", "s", "s", "save", "Save the selected VM (warm)", True, frozenset({"vms"})),
    ActionSpec(
        "reset",
        "x",
        "x",
        "reset",
        "Reset the selected VM to clean (confirm)",
        True,
        frozenset({"vms"}),
    ),
    ActionSpec(
        "console",
        "c",
        "c",
        "console",
        "Open the VM's console (vmconnect)",
        False,
        frozenset({"vms"}),
    ),
    ActionSpec(
        "screen",
        "v",
        "v",
        "screen",
        "View the VM's screen full size, live (Esc closes)",
        False,
        frozenset({"vms"}),
    ),
    ActionSpec(
        "capture",
        "p",
        "p",
        "shot",
        "Save the VM's screen to a PNG file (in the data folder)",
        False,
        frozenset({"vms"}),
    ),
    ActionSpec(
        "acquire",
        "a",
        "a",
        "acquire",
        "Acquire a VM from the selected pool",
        True,
        frozenset({"pools"}),
    ),
    ActionSpec(
        "scale_up",
        "plus",
        "+",
        "scale+",
        "Scale the selected pool up by one",
        True,
        frozenset({"pools"}),
    ),
    ActionSpec(
        "scale_down",
        "minus",
        "-",
        "scale-",
        "Scale the selected pool down by one (confirm)",
        True,
        frozenset({"pools"}),
    ),
    ActionSpec(
        "edit",
        "e",
        "e",
        "edit",
        "Edit the selected pool's counts and release policy",
        True,
        frozenset({"pools"}),
    ),
    ActionSpec(
        "new",
        "n",
        "n",
        "new",
        "New pool (in Templates: new template)",
        True,
        frozenset({"pools", "templates"}),
    ),
    ActionSpec(
        "delete",
        "d",
        "d",
        "delete",
        "Delete the selected pool, template or VM (confirm)",
        True,
        frozenset({"pools", "templates", "vms"}),
    ),
    ActionSpec(
        "recording",
        "o",
        "o",
        "recording",
        "Open the selected agent's recorded session (arrows step through it)",
        False,
        frozenset({"agents"}),
    ),
    ActionSpec("filter", "slash", "/", "filter", "Filter rows of this view", False),
    ActionSpec("jump", "colon", ":", "view", "Jump to a view (:pools :templates :vms ...)", False),
    ActionSpec(
        "controller",
        "R",
        "R",
        "run ctl",
        "Start the controller (hvkube run); it stops with the dashboard unless kept",
        True,
        show=False,
    ),
    ActionSpec("help", "question_mark", "?", "help", "Show keys and views", False),
    ActionSpec("quit", "q", "q", "quit", "Quit", False),
)
BY_ID = {spec.id: spec for spec in ACTIONS}
MUTATING = frozenset(spec.id for spec in ACTIONS if spec.mutating)

VIEW_KEYS = (
    ("1", "pools"),
    ("2", "templates"),
    ("3", "vms"),
    ("4", "agents"),
    ("5", "events"),
    ("6", "hosts"),
)
VIEW_ALIASES = {
    "pools": "pools",
    "pool": "pools",
    "po": "pools",
    "templates": "templates",
    "template": "templates",
    "tpl": "templates",
    "vms": "vms",
    "vm": "vms",
    "agents": "agents",
    "agent": "agents",
    "ag": "agents",
    "events": "events",
    "event": "events",
    "ev": "events",
    "hosts": "hosts",
    "host": "hosts",
}
VIEW_TITLES = {
    "pools": "Pools",
    "templates": "Templates",
    "vms": "VMs",
    "agents": "Agents",
    "events": "Events",
    "hosts": "Hosts",
}


def bindings() -> list[Binding | tuple[str, str] | tuple[str, str, str]]:
    result: list[Binding | tuple[str, str] | tuple[str, str, str]] = [
        Binding(
            spec.key,
            spec.id,
            spec.label,
            id=spec.id,
            key_display=spec.display,
            show=spec.show,
            tooltip=spec.help,
        )
        for spec in ACTIONS
    ]
    result += [
        Binding(key, f"show_view('{view}')", VIEW_TITLES[view], id=f"view_{view}", show=False)
        for key, view in VIEW_KEYS
    ]
    result.append(Binding("escape", "clear", "clear filter", id="clear", show=False))
    return result


def help_rows(key_for: Callable[[str], str], readonly: bool) -> list[tuple[str, str, str]]:
    """`?` help: (key, what it does, where) for every action there is in this mode."""
    rows = []
    for spec in ACTIONS:
        if readonly and spec.mutating:
            continue
        where = ", ".join(VIEW_TITLES[v] for v in sorted(spec.views))
        if spec.views == ALL_VIEWS:
            where = "everywhere"
        rows.append((key_for(spec.id), spec.help, where))
    rows.append(("1-6", "Pools, Templates, VMs, Agents, Events, Hosts", "everywhere"))
    rows.append(("Esc", "Clear the filter / close the prompt", "everywhere"))
    rows.append(("ctrl+p", "Command palette: every action by name", "everywhere"))
    return rows


def start_action(
    node: DOMNode,
    view: str,
    key: str,
    what: str,
    call: Callable[[], T],
    done: Callable[[T], str],
) -> None:
    """Run `call` in a thread worker of `node`, which then gets `ActionDone` with what
    `done` makes of the result, or `ActionFailed` with the reason."""

    def work() -> None:
        try:
            result = done(call())
        except HvkubeError as exc:
            node.post_message(ActionFailed(view, key, what, exc.message))
        except Exception as exc:  # a bug: the dashboard stays up and says what happened
            node.post_message(ActionFailed(view, key, what, f"{type(exc).__name__}: {exc}"))
        else:
            node.post_message(ActionDone(view, key, what, result))

    node.run_worker(work, name=what, group="actions", thread=True, exit_on_error=False)

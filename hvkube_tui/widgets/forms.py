"""Forms for a new pool, a new template and a pool's counts, with inline validation.

Each field is checked as it is typed with the engine's own rules (core.names);
the engine checks everything again when the form is submitted.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widget import Widget
from textual.widgets import Button, Checkbox, Input, Label, Select

from core.errors import InvalidInput
from core.markup import literal
from core.names import (
    NAME_RULE,
    POOL_NAME_MAX,
    check_path_text,
    check_positive,
    name_problem,
    tier_problem,
)
from hvkube_tui.abstract import AbstractPumpMeta

RELEASE_CHOICES = [
    ("reset (back to clean)", "reset"),
    ("save (keep as is)", "save"),
    ("destroy", "destroy"),
]


def _whole(
    text: str, what: str, *, allow_zero: bool, maximum: int
) -> tuple[int | None, str | None]:
    text = text.strip()
    if not text:
        return None, f"{what} is empty"
    try:
        value = int(text)
    except ValueError:
        return None, f"{what} {text!r} is not a whole number"
    try:
        check_positive(value, what, allow_zero=allow_zero, maximum=maximum)
    except InvalidInput as exc:
        return None, exc.message
    return value, None


def name_error(name: str, what: str, taken: set[str], max_len: int = 48) -> str | None:
    problem = name_problem(name)
    if problem is not None:
        return f"{what} {problem}"
    if len(name) > max_len:
        return f"{what} is over {max_len} characters (VM names add '-NNN')"
    if name in taken:
        return f"{what} {name!r} already exists"
    return None


def tier_errors(values: dict[str, str]) -> tuple[dict[str, str], dict[str, int]]:
    errors: dict[str, str] = {}
    numbers: dict[str, int] = {}
    for field in ("count", "warm", "hot"):
        value, problem = _whole(values.get(field, ""), field, allow_zero=True, maximum=1024)
        if problem:
            errors[field] = problem
        elif value is not None:
            numbers[field] = value
    if len(numbers) == 3:
        problem = tier_problem(numbers["count"], numbers["warm"], numbers["hot"])
        if problem is not None:
            errors["hot"] = problem
    return errors, numbers


class FormScreen(ModalScreen[dict[str, Any] | None], metaclass=AbstractPumpMeta):  # type: ignore[metaclass]
    """Fields laid out one per line with an error line under each. Each form supplies
    its fields, its validation (the engine's own rules) and the result it returns."""

    BINDINGS = [Binding("escape", "cancel", "cancel", show=False)]
    TITLE_TEXT = ""
    SUBMIT_LABEL = "Create"

    def __init__(self) -> None:
        super().__init__(classes="dialog-screen")

    @abstractmethod
    def fields(self) -> list[tuple[str, str, Widget]]:
        """Supplied by each form."""

    def values(self) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for widget in self.query(".field-input"):
            key = str(widget.id).removeprefix("f-")
            if isinstance(widget, Input):
                result[key] = widget.value
            elif isinstance(widget, Select):
                result[key] = None if widget.value is Select.NULL else widget.value
            elif isinstance(widget, Checkbox):
                result[key] = widget.value
        return result

    @abstractmethod
    def validate_values(self, values: dict[str, Any]) -> dict[str, str]:
        """Supplied by each form."""

    @abstractmethod
    def result(self, values: dict[str, Any]) -> dict[str, Any]:
        """Supplied by each form."""

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog form"):
            yield Label(self.TITLE_TEXT, classes="form-title")
            for key, label, widget in self.fields():
                widget.id = f"f-{key}"
                widget.add_class("field-input")
                with Horizontal(classes="field"):
                    yield Label(label, classes="field-label")
                    yield widget
                yield Label("", id=f"e-{key}", classes="field-error")
            with Horizontal(classes="buttons"):
                yield Button(self.SUBMIT_LABEL, id="submit", variant="success", compact=True)
                yield Button("Cancel", id="cancel", compact=True)

    def on_mount(self) -> None:
        self.check()
        first = self.query(".field-input").first()
        first.focus()

    def check(self) -> dict[str, str]:
        errors = self.validate_values(self.values())
        for label in self.query(".field-error").results(Label):
            key = str(label.id).removeprefix("e-")
            message = errors.get(key, "")
            label.update(literal(message))
            label.display = bool(message)
        self.query_one("#submit", Button).disabled = bool(errors)
        return errors

    @on(Input.Changed)
    @on(Select.Changed)
    @on(Checkbox.Changed)
    def _changed(self) -> None:
        self.check()

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "submit":
            self.submit()
        else:
            self.dismiss(None)

    def submit(self) -> None:
        if self.check():
            return
        self.dismiss(self.result(self.values()))

    def action_cancel(self) -> None:
        self.dismiss(None)


class PoolForm(FormScreen):
    TITLE_TEXT = "New pool"

    def __init__(self, templates: list[str], taken: set[str], template: str | None = None) -> None:
        super().__init__()
        self.templates = templates
        self.taken = taken
        self.template = template if template in templates else (templates[0] if templates else None)

    def fields(self) -> list[tuple[str, str, Widget]]:
        return [
            ("name", "name", Input(placeholder="e.g. browser", compact=True)),
            (
                "template",
                "template",
                Select(
                    [(t, t) for t in self.templates],
                    value=self.template if self.template else Select.NULL,
                    prompt="(no templates: create one first)",
                    compact=True,
                ),
            ),
            ("count", "count", Input("2", compact=True)),
            ("warm", "warm (saved)", Input("1", compact=True)),
            ("hot", "hot (paused)", Input("0", compact=True)),
            (
                "release",
                "release",
                Select(RELEASE_CHOICES, value="reset", allow_blank=False, compact=True),
            ),
        ]

    def validate_values(self, values: dict[str, Any]) -> dict[str, str]:
        errors, _ = tier_errors(values)
        problem = name_error(values.get("name", ""), "pool name", self.taken, POOL_NAME_MAX)
        if problem:
            errors["name"] = problem
        if not values.get("template"):
            errors["template"] = "choose a template (press n in the Templates view to add one)"
        return errors

    def result(self, values: dict[str, Any]) -> dict[str, Any]:
        _, numbers = tier_errors(values)
        return {
            "name": values["name"],
            "template": values["template"],
            "count": numbers["count"],
            "warm": numbers["warm"],
            "hot": numbers["hot"],
            "release": values["release"],
        }


class EditPoolForm(FormScreen):
    SUBMIT_LABEL = "Save"

    def __init__(self, pool: dict[str, Any]) -> None:
        super().__init__()
        self.pool = pool
        self.TITLE_TEXT = f"Edit pool {pool['name']}"

    def fields(self) -> list[tuple[str, str, Widget]]:
        p = self.pool
        return [
            ("count", "count", Input(str(p["desired_count"]), compact=True)),
            ("warm", "warm (saved)", Input(str(p["warm_count"]), compact=True)),
            ("hot", "hot (paused)", Input(str(p["hot_count"]), compact=True)),
            (
                "release",
                "release",
                Select(RELEASE_CHOICES, value=p["release_policy"], allow_blank=False, compact=True),
            ),
        ]

    def validate_values(self, values: dict[str, Any]) -> dict[str, str]:
        errors, _ = tier_errors(values)
        return errors

    def result(self, values: dict[str, Any]) -> dict[str, Any]:
        _, numbers = tier_errors(values)
        return {"name": self.pool["name"], **numbers, "release": values["release"]}


class TemplateForm(FormScreen):
    TITLE_TEXT = "New template"

    def __init__(self, taken: set[str]) -> None:
        super().__init__()
        self.taken = taken

    def fields(self) -> list[tuple[str, str, Widget]]:
        return [
            ("name", "name", Input(placeholder="e.g. win11-base", compact=True)),
            ("disk", "disk (vhdx)", Input(placeholder="D:\\templates\\win11.vhdx", compact=True)),
            ("memory", "memory MB", Input("4096", compact=True)),
            ("cpus", "CPUs", Input("2", compact=True)),
            ("gpu", "GPU", Checkbox("GPU partition", compact=True)),
        ]

    def validate_values(self, values: dict[str, Any]) -> dict[str, str]:
        errors: dict[str, str] = {}
        problem = name_error(values.get("name", ""), "template name", self.taken)
        if problem:
            errors["name"] = problem
        try:
            check_path_text(values.get("disk", ""), "disk path")
        except InvalidInput as exc:
            errors["disk"] = exc.message
        memory, problem = _whole(
            values.get("memory", ""), "memory", allow_zero=False, maximum=24 * 1024 * 1024
        )
        if problem:
            errors["memory"] = problem
        elif memory is not None and memory < 512:
            errors["memory"] = f"memory must be at least 512 MB for Windows, got {memory}"
        _, problem = _whole(values.get("cpus", ""), "CPUs", allow_zero=False, maximum=240)
        if problem:
            errors["cpus"] = problem
        return errors

    def result(self, values: dict[str, Any]) -> dict[str, Any]:
        return {
            "name": values["name"],
            "disk_path": values["disk"],
            "memory_mb": int(values["memory"]),
            "cpus": int(values["cpus"]),
            "gpu": bool(values["gpu"]),
        }


__all__ = ["NAME_RULE", "EditPoolForm", "PoolForm", "TemplateForm"]

"""Text from users, agents and guests is shown as typed: never read as rich or Textual
markup, which would crash the command line and the dashboard (`[/oops]`) or colour and link
the operator's terminal (`[link=...]`).

Hypothesis makes markup-like strings and puts them where data can carry them (an agent's
workflow input and its failure, a VM's error, a filter). Every view of the dashboard draws
every record it has, and every `show`-like command of the command line prints them: a view
or command added later is covered without changing this test, as long as it draws its
records through the view classes and its objects come from the engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.console import Console

from core import Engine, open_engine
from core.cli import main
from core.errors import BackendError
from core.models import AgentResult, AgentStatus
from core.readmodel import SnapshotReader, to_record
from hvkube_tui.views import VIEW_CLASSES

# Pieces of rich's and Textual's markup, with text between them: brackets, closing tags,
# links, styles, variables, emoji codes and backslashes that escape (or not).
PIECES = [
    "[",
    "]",
    "[/]",
    "[/oops]",
    "[b]",
    "[bold red]",
    "[link=https://evil.example]",
    "[@click=app.quit]",
    "[$accent]",
    "[on red]",
    "\\",
    "\\[",
    ":smile:",
    "=",
    "/",
]
MARKUPISH = st.lists(
    st.one_of(st.sampled_from(PIECES), st.text("abcXYZ019-_.", min_size=1, max_size=4)),
    min_size=1,
    max_size=8,
).map("".join)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Engine, str]]:
    """A template, a provisioned pool of two VMs, one agent: made once."""
    data = tmp_path_factory.mktemp("markup") / "data"
    db = str(data / "hvkube.db")
    with open_engine(db=db, backend="sim", sim_scale=0) as engine:
        engine.create_template("win11", r"C:\T\win11.vhdx", memory_mb=2048)
        engine.create_pool("bp", "win11", count=2, warm=2)
        engine.provision_pool("bp")
        yield engine, db


def _plant(engine: Engine, text: str) -> int:
    """Put `text` everywhere data can carry it: an agent's input and failure, a VM's error."""
    agent = engine.submit_agent("bp", "wf", input={"note": text})
    engine.finish_agent(
        agent.id, AgentStatus.FAILED, AgentResult(success=False, error=text, output={"o": text})
    )
    engine.ledger.fail("bp-001", BackendError(text, vm="bp-001"))
    return agent.id


def _render(renderable: Any) -> str:
    console = Console(width=400, color_system=None, file=io.StringIO())
    console.print(renderable)
    return console.file.getvalue()  # type: ignore[attr-defined]


def _records(view: Any, snap: Any) -> dict[str, dict[str, Any]]:
    records = view.records(snap)
    if records is not None:
        return dict(records)
    return {key: to_record(view.NAME, row) for key, row in snap.raw[view.NAME].items()}


def _cli(db: str, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["--db", db, "--backend", "sim", *argv])
    return code, out.getvalue(), err.getvalue()


# Each object kind of the command line, and the argument that names it in the store here.
def _show_commands(agent_id: int, host: str = "h") -> list[list[str]]:
    return [
        ["host", "show", host],
        ["host", "list"],
        ["agent", "show", str(agent_id)],
        ["agent", "list"],
        ["vm", "info", "bp-001"],
        ["vm", "list"],
        ["pool", "status", "bp"],
        ["pool", "list"],
        ["template", "show", "win11"],
        ["template", "list"],
        ["events", "--vm", "bp-001"],
        ["config", "show"],
    ]


SETTINGS = settings(
    max_examples=12,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@SETTINGS
@given(text=MARKUPISH)
def test_every_view_draws_markup_like_data_as_it_is(world: tuple[Engine, str], text: str) -> None:
    engine, _ = world
    _plant(engine, text)
    snap = SnapshotReader(engine).poll(force=True)
    assert snap is not None
    shown = 0
    for cls in VIEW_CLASSES:
        view = cls(None)  # type: ignore[arg-type]  # drawn here, not mounted in an app
        for record in _records(cls, snap).values():
            row = cls.format_row(record, _now())
            _render(" ".join(c if isinstance(c, str) else c[0] for c in row))
            shown += text in _render(view.detail(record, _now()))
    # The failed agent's error and the VM's error are drawn as typed, with their brackets.
    assert shown >= 2, text


def _now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)


@SETTINGS
@given(text=MARKUPISH)
def test_every_show_command_prints_markup_like_data_as_it_is(
    world: tuple[Engine, str], text: str
) -> None:
    engine, db = world
    agent_id = _plant(engine, text)
    for argv in _show_commands(agent_id, engine.settings.host_name()):
        code, out, err = _cli(db, *argv)
        assert code == 0, (argv, err)
        assert "internal error" not in err, (argv, err)
    code, out, _ = _cli(db, "agent", "show", str(agent_id))
    assert text in out
    code, out, _ = _cli(db, "vm", "info", "bp-001")
    assert text in out


def test_show_commands_cover_each_group_that_shows_one_object(
    world: tuple[Engine, str],
) -> None:
    """A group that gains a `show`, `info` or `status` command must be added above."""
    from core.cli import build_parser

    covered = {tuple(argv[:2]) for argv in _show_commands(1)}
    parser = build_parser()
    found = set()
    for group in parser.command_names:
        sub = parser._subparsers._group_actions[0].choices[group]  # type: ignore[union-attr]
        for action in sub._actions:
            for name in getattr(action, "choices", None) or ():
                if name in {"show", "info", "status"}:
                    found.add((group, name))
    assert found <= covered, f"not covered by the markup test: {sorted(found - covered)}"


def test_the_dashboard_opens_every_view_on_markup_like_data(tmp_path: Path) -> None:
    from tests.tui_support import build_app, settle

    app = build_app(tmp_path)
    nasty = "[/oops] [link=https://evil.example]x[/link] [bold red]red"
    _plant_dashboard(app.engine, nasty)

    async def visit() -> None:
        async with app.run_test(size=(120, 36)) as pilot:
            await settle(pilot)
            for index, cls in enumerate(VIEW_CLASSES, start=1):
                await pilot.press(str(index))
                await settle(pilot)
                table = app.table(cls.NAME)
                for row in range(table.row_count):
                    table.move_cursor(row=row)
                    await pilot.pause()
            await pilot.press("slash", *"[/x]")
            await settle(pilot)
            app.notify(nasty)  # notifications carry errors: shown as typed too
            await pilot.pause()

    asyncio.run(visit())
    assert app.return_code in (None, 0)


def _plant_dashboard(engine: Engine, text: str) -> None:
    pool = engine.list_pools()[0].name
    agent = engine.submit_agent(pool, "wf", input={"note": text})
    engine.finish_agent(agent.id, AgentStatus.FAILED, AgentResult(success=False, error=text))
    vm = engine.list_vms(pool=pool)[0].name
    engine.ledger.fail(vm, BackendError(text, vm=vm))

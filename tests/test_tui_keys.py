"""Every key of the dashboard, driven with Textual's pilot against a real SQLite file and
the simulated host: the store changes as the key says, cancelling changes nothing,
read-only removes every changing key, and a failing host call leaves the app usable."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import psutil
import pytest
from textual.command import CommandList
from textual.pilot import Pilot
from textual.widgets import Input

from core.errors import ReadOnlyMode
from core.models import VMState
from hvkube_tui.actions import ACTIONS, MUTATING
from hvkube_tui.app import HvkubeApp
from hvkube_tui.views import VmsView
from hvkube_tui.widgets.dialogs import ConfirmScreen, HelpScreen
from hvkube_tui.widgets.forms import EditPoolForm, PoolForm, TemplateForm
from tests.tui_support import build_app, settle, until

Scenario = Callable[[HvkubeApp, Pilot[Any]], Awaitable[None]]


def drive(
    tmp_path: Path, scenario: Scenario, size: tuple[int, int] = (120, 36), **kw: Any
) -> HvkubeApp:
    app = build_app(tmp_path, **kw)
    shown: list[str] = []
    notify = app.notify

    def recorded(message: str, *args: Any, **kwargs: Any) -> None:
        shown.append(str(message))
        notify(message, *args, **kwargs)

    # Every message the app showed, kept: Textual drops a toast after its timeout, which a
    # slow machine can pass before the test looks.
    app.notify = recorded  # type: ignore[method-assign]
    app.shown_messages = shown  # type: ignore[attr-defined]

    async def main() -> None:
        async with app.run_test(size=size) as pilot:
            await settle(pilot)
            await scenario(app, pilot)

    asyncio.run(main())
    return app


def state(app: HvkubeApp, vm: str) -> VMState:
    return app.engine.get_vm(vm).state


def notes(app: HvkubeApp) -> list[str]:
    return list(app.shown_messages)  # type: ignore[attr-defined]


def store_dump(app: HvkubeApp) -> dict[str, Any]:
    e = app.engine
    return {
        "vms": [vm.model_dump() for vm in e.list_vms()],
        "pools": [p.model_dump() for p in e.list_pools()],
        "templates": [t.name for t in e.list_templates()],
        "agents": [(a.id, a.status, a.vm) for a in e.list_agents()],
    }


async def at(app: HvkubeApp, pilot: Pilot[Any], view: str, key: str | None = None) -> None:
    if key is None:
        app.action_show_view(view)
    else:
        assert app.select_row(view, key), f"{key} not in {view}"
    await settle(pilot)


# -- VM keys -------------------------------------------------------------------------------------


def test_s_saves_a_running_vm(tmp_path: Path) -> None:
    async def scenario(app: HvkubeApp, pilot: Pilot[Any]) -> None:
        assert state(app, "browser-001") is VMState.RUNNING
        await at(app, pilot, "vms", "browser-001")
        await pilot.press("s")
        await settle(pilot)
        assert state(app, "browser-001") is VMState.SAVED
        assert app.table("vms").shown["browser-001"][3] == ("saved", "cyan")

    drive(tmp_path, scenario)


def test_r_resumes_a_saved_vm(tmp_path: Path) -> None:
    async def scenario(app: HvkubeApp, pilot: Pilot[Any]) -> None:
        await at(app, pilot, "vms", "browser-003")
        assert state(app, "browser-003") is VMState.SAVED
        await pilot.press("r")
        await settle(pilot)
        assert state(app, "browser-003") is VMState.RUNNING
        assert any("browser-003 is running" in n for n in notes(app))

    drive(tmp_path, scenario)


def test_busy_row_shows_progress(tmp_path: Path) -> None:
    async def scenario(app: HvkubeApp, pilot: Pilot[Any]) -> None:
        await at(app, pilot, "vms", "browser-003")
        gate = asyncio.Event()
        original = app.engine.resume_vm
        loop = asyncio.get_running_loop()

        def slow_resume(name: str) -> Any:
            asyncio.run_coroutine_threadsafe(gate.wait(), loop).result()
            return original(name)

        app.engine.resume_vm = slow_resume  # type: ignore[method-assign]
        await pilot.press("r")
        await until(
            pilot,
            lambda: app.table("vms").shown["browser-003"][3] == ("⟳ resuming", "bold yellow"),
            "the row shows the resume in progress",
        )
        await pilot.press("r")  # a second press while busy is refused, not queued
        await until(pilot, lambda: any("busy" in n for n in notes(app)), "'busy' is said")
        gate.set()
        await settle(pilot)
        assert app.table("vms").shown["browser-003"][3] == ("running", "bold green")

    drive(tmp_path, scenario)


@pytest.mark.parametrize("answer", ["y", "escape"])
def test_x_resets_only_when_confirmed(tmp_path: Path, answer: str) -> None:
    async def scenario(app: HvkubeApp, pilot: Pilot[Any]) -> None:
        await at(app, pilot, "vms", "browser-001")
        before = store_dump(app)
        await pilot.press("x")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "a confirmation")
        await pilot.press(answer)
        await settle(pilot)
        assert not isinstance(app.screen, ConfirmScreen)
        vm = app.engine.get_vm("browser-001")
        if answer == "y":
            assert vm.state is VMState.SAVED and vm.holder is None
        else:
            assert store_dump(app) == before

    drive(tmp_path, scenario)


def test_d_deletes_a_vm_only_when_confirmed(tmp_path: Path) -> None:
    async def scenario(app: HvkubeApp, pilot: Pilot[Any]) -> None:
        await at(app, pilot, "vms", "browser-005")
        for answer, kept in (("n", True), ("y", False)):
            await pilot.press("d", answer)
            await settle(pilot)
            names = {vm.name for vm in app.engine.list_vms()}
            assert ("browser-005" in names) == kept
            assert ("browser-005" in app.table("vms").shown) == kept

    drive(tmp_path, scenario)


def test_p_writes_a_screenshot_and_says_where(tmp_path: Path) -> None:
    async def scenario(app: HvkubeApp, pilot: Pilot[Any]) -> None:
        await at(app, pilot, "vms", "browser-001")
        await pilot.press("p")
        await settle(pilot)
        shots = list((tmp_path / "shots").glob("browser-001-*.png"))
        assert len(shots) == 1 and shots[0].read_bytes().startswith(b"\x89PNG")
        assert any(str(shots[0]) in n for n in notes(app))

    drive(tmp_path, scenario)


def test_c_explains_why_there_is_no_console(tmp_path: Path) -> None:
    async def scenario(app: HvkubeApp, pilot: Pilot[Any]) -> None:
        await at(app, pilot, "vms", "browser-001")
        await pilot.press("c")
        await pilot.pause()
        message = notes(app)[-1]
        assert "vmconnect" in message and "172.20.0.12:3389" in message

    drive(tmp_path, scenario)


def test_v_shows_the_vm_screen_full_size_live_and_esc_closes_it(tmp_path: Path) -> None:
    from hvkube_tui.widgets.screenview import ScreenView

    async def scenario(app: HvkubeApp, pilot: Pilot[Any]) -> None:
        await at(app, pilot, "vms", "browser-001")
        await pilot.press("v")
        await until(pilot, lambda: isinstance(app.screen, ScreenView), "the screen view")
        view = app.screen
        assert isinstance(view, ScreenView) and view.vm == "browser-001"
        await until(pilot, lambda: view.frames >= 2, "two looks, a second apart", 20)
        image = view.image.render()
        # Larger than the thumbnail: nearly the whole 120x36 terminal.
        assert "▀" in str(image) and view.image.size.width > 60 and view.image.size.height > 20
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, ScreenView), "closed")
        assert app.view == "vms"

    drive(tmp_path, scenario)


def test_thumbnail_of_the_selected_vm(tmp_path: Path) -> None:
    async def scenario(app: HvkubeApp, pilot: Pilot[Any]) -> None:
        await at(app, pilot, "vms", "browser-001")
        vms = app.table("vms")
        assert isinstance(vms, VmsView)
        shown = vms.thumb_for
        assert shown is not None and shown[0] == "browser-001" and shown[1]
        await at(app, pilot, "vms", "browser-005")
        assert vms.thumb_for is not None and vms.thumb_for[0] == "browser-005"

    drive(tmp_path, scenario)


def test_o_opens_an_agents_recording_and_arrows_step_through_it(tmp_path: Path) -> None:
    from core.imaging import text_card
    from core.recording.archive import FOLDER_NAME, Archive
    from hvkube_tui.widgets.recording import RecordingScreen

    async def scenario(app: HvkubeApp, pilot: Pilot[Any]) -> None:
        agent = app.engine.list_agents()[0]
        archive = Archive(app.engine.settings.state_dir() / FOLDER_NAME)
        rec = f"agent-{agent.id}"
        archive.add(rec, "vm-1", text_card(["one"]), None, (640, 400), None, 0)
        typed = {"kind": "type", "text": "[bold]not markup", "source": "mcp"}
        archive.add(rec, "vm-1", text_card(["two"]), None, (640, 400), typed, 1)
        await at(app, pilot, "agents", str(agent.id))
        await pilot.press("o")
        await until(pilot, lambda: isinstance(app.screen, RecordingScreen), "the recording")
        screen = app.screen
        assert isinstance(screen, RecordingScreen)
        await until(pilot, lambda: bool(screen.entries), "its frames")
        assert screen.index == 1  # opens at the newest frame
        action = str(screen.query_one("#recording-action").render())
        assert "typed '[bold]not markup'" in action
        await pilot.press("left")
        assert screen.index == 0
        assert "no action" in str(screen.query_one("#recording-action").render())
        await pilot.press("left")
        assert screen.index == 0
        await pilot.press("end")
        assert screen.index == 1
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, RecordingScreen)

    drive(tmp_path, scenario)


def test_o_on_an_agent_without_a_recording_says_so(tmp_path: Path) -> None:
    from hvkube_tui.widgets.recording import RecordingScreen

    async def scenario(app: HvkubeApp, pilot: Pilot[Any]) -> None:
        agent = app.engine.list_agents()[-1]
        await at(app, pilot, "agents", str(agent.id))
        await pilot.press("o")
        await until(pilot, lambda: isinstance(app.screen, RecordingScreen), "the recording")
        where = app.screen.query_one("#recording-where")
        await until(pilot, lambda: "no recording" in str(where.render()), "why not")

    drive(tmp_path, scenario)


# -- pool keys -----------------------------------------------------------------------------------


def test_a_acquires_from_the_selected_pool(tmp_path: Path) -> None:
    async def scenario(app: HvkubeApp, pilot: Pilot[Any]) -> None:
        held = {vm.name for vm in app.engine.list_vms(pool="browser") if vm.held}
        await at(app, pilot, "pools", "browser")
        await pilot.press("a")
        await settle(pilot)
        now = {vm.name for vm in app.engine.list_vms(pool="browser") if vm.held}
        (new,) = now - held
        assert state(app, new) is VMState.RUNNING
        # The command to give it back points at this dashboard's store (not the default).
        db = str(app.settings.db_path())
        assert any(f"release {new}" in n and f"--db {db}" in n for n in notes(app))

    drive(tmp_path, scenario)


def test_plus_and_minus_scale_the_pool(tmp_path: Path) -> None:
    async def scenario(app: HvkubeApp, pilot: Pilot[Any]) -> None:
        await at(app, pilot, "pools", "office")
        await pilot.press("plus")
        await settle(pilot)
        assert app.engine.get_pool("office").desired_count == 5
        assert app.table("pools").shown["office"][2] == "5"
        await pilot.press("minus")  # deletes a VM: asked first, and a no keeps it
        await settle(pilot)
        await pilot.press("n")
        await settle(pilot)
        assert app.engine.get_pool("office").desired_count == 5
        for _ in range(2):
            await pilot.press("minus")
            await settle(pilot)
            await pilot.press("y")
            await settle(pilot)
        assert app.engine.get_pool("office").desired_count == 3
        assert len(app.engine.list_vms(pool="office")) == 3
        assert app.table("pools").cursor_key == "office"

    drive(tmp_path, scenario)


def test_e_edits_counts_and_release_policy(tmp_path: Path) -> None:
    async def scenario(app: HvkubeApp, pilot: Pilot[Any]) -> None:
        await at(app, pilot, "pools", "browser")
        await pilot.press("e")
        await pilot.pause()
        form = app.screen
        assert isinstance(form, EditPoolForm)
        warm = form.query_one("#f-warm")
        warm.value = "9"  # type: ignore[attr-defined]
        await pilot.pause()
        assert "more than count" in str(form.query_one("#e-hot").render())
        assert form.query_one("#submit").disabled
        warm.value = "2"  # type: ignore[attr-defined]
        form.query_one("#f-release").value = "save"  # type: ignore[attr-defined]
        await pilot.pause()
        await pilot.click("#submit")
        await settle(pilot)
        pool = app.engine.get_pool("browser")
        assert (pool.warm_count, pool.release_policy.value) == (2, "save")

    drive(tmp_path, scenario)


def test_n_new_pool_form_validates_inline_and_creates(tmp_path: Path) -> None:
    async def scenario(app: HvkubeApp, pilot: Pilot[Any]) -> None:
        await at(app, pilot, "pools")
        await pilot.press("n")
        await until(pilot, lambda: isinstance(app.screen, PoolForm), "the new pool form")
        await pilot.press("w", "e", "b", "space", "p")
        await until(
            pilot,
            lambda: "not allowed" in str(app.screen.query_one("#e-name").render()),
            "the inline error under the name",
        )
        error = str(app.screen.query_one("#e-name").render())
        assert "' '" in error and "not allowed" in error
        assert app.screen.query_one("#submit").disabled
        app.screen.query_one("#f-name", Input).value = "web"
        await pilot.press("enter")
        await settle(pilot)
        assert app.engine.get_pool("web").desired_count == 2
        assert len(app.engine.list_vms(pool="web")) == 2
        assert "web" in app.table("pools").shown

    drive(tmp_path, scenario)


def test_n_in_templates_makes_a_template(tmp_path: Path) -> None:
    async def scenario(app: HvkubeApp, pilot: Pilot[Any]) -> None:
        await at(app, pilot, "templates")
        await pilot.press("n")
        await pilot.pause()
        assert isinstance(app.screen, TemplateForm)
        form = app.screen
        await pilot.press("w", "i", "n")
        form.query_one("#f-name", Input).value = "win11-base"
        await pilot.pause()
        assert "already exists" in str(form.query_one("#e-name").render())
        form.query_one("#f-name", Input).value = "server22"
        form.query_one("#f-disk", Input).value = "D:\\t\\server22.vhdx"
        form.query_one("#f-disk", Input).focus()
        await pilot.press("enter")
        await settle(pilot)
        tpl = app.engine.get_template("server22")
        assert (tpl.disk_path, tpl.memory_mb) == ("D:\\t\\server22.vhdx", 4096)

    drive(tmp_path, scenario)


def test_forms_cancel_with_escape(tmp_path: Path) -> None:
    async def scenario(app: HvkubeApp, pilot: Pilot[Any]) -> None:
        before = store_dump(app)
        await at(app, pilot, "pools", "browser")
        for key in ("n", "e"):
            await pilot.press(key)
            await pilot.pause()
            assert app.modal_open()
            await pilot.press("escape")
            await settle(pilot)
            assert not app.modal_open()
        assert store_dump(app) == before

    drive(tmp_path, scenario)


def test_d_on_a_used_template_reports_the_engines_refusal(tmp_path: Path) -> None:
    async def scenario(app: HvkubeApp, pilot: Pilot[Any]) -> None:
        await at(app, pilot, "templates", "win11-base")
        await pilot.press("d", "y")
        await settle(pilot)
        assert "is used by pool(s) browser" in notes(app)[-1]
        assert app.engine.get_template("win11-base")

    drive(tmp_path, scenario)


# -- failures, read-only, navigation -----------------------------------------------------------


def test_a_failing_host_call_shows_the_error_and_the_app_goes_on(tmp_path: Path) -> None:
    async def scenario(app: HvkubeApp, pilot: Pilot[Any]) -> None:
        app.engine.backend.inject_fault("fail", vm="browser-001", op="save")  # type: ignore[attr-defined]
        await at(app, pilot, "vms", "browser-001")
        await pilot.press("s")
        await settle(pilot)
        assert any("failed (injected fault)" in n for n in notes(app))
        assert app.is_running
        await at(app, pilot, "vms", "browser-003")
        await pilot.press("r")
        await settle(pilot)
        assert state(app, "browser-003") is VMState.RUNNING

    drive(tmp_path, scenario)


def test_readonly_removes_every_changing_key(tmp_path: Path) -> None:
    async def scenario(app: HvkubeApp, pilot: Pilot[Any]) -> None:
        before = store_dump(app)
        for view, row in (
            ("vms", "browser-001"),
            ("pools", "browser"),
            ("templates", "win11-base"),
        ):
            await at(app, pilot, view, row)
            active = {b.binding.action for b in app.active_bindings.values()}
            assert not active & MUTATING
            for spec in ACTIONS:
                if spec.mutating:
                    await pilot.press(spec.key)
                    await pilot.pause()
                    assert not app.modal_open()
            await settle(pilot)
        assert store_dump(app) == before
        with pytest.raises(ReadOnlyMode):
            app.engine.save_vm("browser-001")
        help_keys = {text for _, text, _ in app.help_rows()}
        assert not any(spec.help in help_keys for spec in ACTIONS if spec.mutating)

    drive(tmp_path, scenario, readonly=True)


def test_key_overrides_from_the_config(tmp_path: Path) -> None:
    async def scenario(app: HvkubeApp, pilot: Pilot[Any]) -> None:
        await at(app, pilot, "vms", "browser-001")
        await pilot.press("s")
        await settle(pilot)
        assert state(app, "browser-001") is VMState.RUNNING
        await pilot.press("w")
        await settle(pilot)
        assert state(app, "browser-001") is VMState.SAVED
        assert ("w", "Save the selected VM (warm)", "VMs") in app.help_rows()
        assert any("nonsense" in n for n in notes(app))

    drive(tmp_path, scenario, keys={"save": "w", "nonsense": "z"})


def test_views_by_number_and_by_colon(tmp_path: Path) -> None:
    async def scenario(app: HvkubeApp, pilot: Pilot[Any]) -> None:
        for key, view in (("3", "vms"), ("4", "agents"), ("5", "events"), ("2", "templates")):
            await pilot.press(key)
            assert app.view == view
        await pilot.press("colon", "v", "m", "enter")
        assert app.view == "vms"
        for typed, view in (("pools", "pools"), ("ag", "agents"), ("nowhere", "agents")):
            await pilot.press("colon")
            app.query_one("#prompt", Input).value = typed
            await pilot.press("enter")
            assert app.view == view
        assert "no view 'nowhere'" in notes(app)[-1]
        await pilot.press("colon")
        app.query_one("#prompt", Input).value = "quit"
        await pilot.press("enter")
        await pilot.pause()
        assert not app.is_running

    drive(tmp_path, scenario)


def test_slash_filters_and_escape_clears(tmp_path: Path) -> None:
    async def scenario(app: HvkubeApp, pilot: Pilot[Any]) -> None:
        await at(app, pilot, "vms", "office-002")
        await pilot.press("slash", "o", "f", "f")
        assert "browser-005" in app.table().shown  # "off" is a state too
        await pilot.press("i", "enter")
        assert set(app.table().shown) == {"office-001", "office-002", "office-003", "office-004"}
        assert app.table().cursor_key == "office-002"
        await pilot.press("slash")
        app.query_one("#prompt", Input).value = "ERROR"
        await pilot.press("enter")
        assert set(app.table().shown) == {"office-004"}
        await pilot.press("escape")
        assert len(app.table().shown) == 10

    drive(tmp_path, scenario)


def test_a_view_holds_its_first_rows_says_how_many_more_and_the_filter_finds_any(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At fleet scale a view's table holds only its first rows (here 4 of the 10 VMs); the
    crumbs say so, `/` finds a VM beyond them, and the cursor moved past the last row held
    brings the next ones."""
    monkeypatch.setattr(VmsView, "WINDOW", 4)

    def crumbs(app: HvkubeApp) -> str:
        return str(app.main.crumbs.content)

    async def scenario(app: HvkubeApp, pilot: Pilot[Any]) -> None:
        await at(app, pilot, "vms")
        assert app.snapshot is not None
        names = sorted(app.snapshot.raw["vms"])
        table = app.table()
        assert list(table.shown) == names[:4]
        assert "VMs 10" in crumbs(app)  # the tab counts every VM
        assert "showing 4 of 10: / to filter" in crumbs(app)
        running = [n for n in names[4:] if app.snapshot.raw["vms"][n][4] == "running"]
        target = running[0]  # beyond the window
        await pilot.press("slash")
        app.query_one("#prompt", Input).value = target
        await pilot.press("enter")
        assert list(table.shown) == [target]
        assert "showing" not in crumbs(app)
        await pilot.press("escape")
        assert list(table.shown) == names[:4]
        # A change to a VM beyond the window is followed all the same.
        app.engine.save_vm(target)
        await settle(pilot)
        await pilot.press("slash")
        app.query_one("#prompt", Input).value = target
        await pilot.press("enter")
        assert table.shown[target][3] == ("saved", "cyan")
        await pilot.press("escape")
        # Down past the last row held: the next 4 come, and the cursor goes on into them.
        assert list(table.shown) == names[:4]
        for _ in range(4):
            await pilot.press("down")
        assert list(table.shown) == names[:8]
        assert table.cursor_key == names[4]
        assert "showing 8 of 10" in crumbs(app)
        for _ in range(4):
            await pilot.press("down")
        assert list(table.shown) == names
        assert table.cursor_key == names[8]
        assert "showing" not in crumbs(app)
        # A new filter starts from the first rows again, wherever the cursor was.
        await pilot.press("slash")
        app.query_one("#prompt", Input).value = "-0"  # every VM's name
        await pilot.pause()
        assert list(table.shown) == names[:4] and "(4 of 10 shown)" in crumbs(app)
        # Even in one change with the cursor far down: the rows that go move the cursor up
        # onto the last row left, which is not the operator moving to it.
        await pilot.press("escape")
        for _ in range(9):
            await pilot.press("down")
        assert len(table.shown) == 10 and table.cursor_key == names[9]
        table.filter_rows("-0")
        await pilot.pause()
        assert list(table.shown) == names[:4]

    drive(tmp_path, scenario)


def test_question_mark_shows_help_and_q_quits(tmp_path: Path) -> None:
    async def scenario(app: HvkubeApp, pilot: Pilot[Any]) -> None:
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        await pilot.pause()
        assert not app.modal_open()
        await pilot.press("q")
        await pilot.pause()
        assert not app.is_running

    drive(tmp_path, scenario)


def test_command_palette_runs_actions(tmp_path: Path) -> None:
    async def scenario(app: HvkubeApp, pilot: Pilot[Any]) -> None:
        await at(app, pilot, "vms", "browser-001")
        await pilot.press("ctrl+p")
        palette = app.screen
        palette.query_one(Input).value = "Save the selected VM"
        # The palette searches in a worker and shows hits in batches: wait until our
        # command is the highlighted first hit, however slow the machine.
        commands = palette.query_one(CommandList)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if commands.option_count and commands.highlighted == 0:
                first = str(commands.get_option_at_index(0).prompt)
                if "Save the selected VM" in first:
                    break
            await pilot.pause(0.05)
        await pilot.press("enter")
        await settle(pilot)
        assert state(app, "browser-001") is VMState.SAVED

    drive(tmp_path, scenario)


# -- live updates ------------------------------------------------------------------------------


def test_outside_changes_appear_by_keyed_diff_keeping_the_cursor(tmp_path: Path) -> None:
    async def scenario(app: HvkubeApp, pilot: Pilot[Any]) -> None:
        await at(app, pilot, "vms", "browser-004")
        table = app.table()
        index = table.cursor_row
        # Another process (here: another connection of this one) changes the store.
        app.engine.save_vm("browser-001")
        app.engine.delete_vm("browser-005")
        await settle(pilot)
        assert table.shown["browser-001"][3] == ("saved", "cyan")
        assert "browser-005" not in table.shown
        assert table.cursor_key == "browser-004" and table.cursor_row == index

    drive(tmp_path, scenario)


def test_a_change_to_one_vm_touches_only_its_row(tmp_path: Path) -> None:
    async def scenario(app: HvkubeApp, pilot: Pilot[Any]) -> None:
        await at(app, pilot, "vms")
        ticks = len(app.ticks)
        app.engine.save_vm("browser-001")
        await settle(pilot)
        new = [t for t in app.ticks[ticks:] if t.changed]
        assert new, "the change was not shown"
        assert 0 < sum(t.cells for t in new) <= len(VmsView.COLUMNS)
        assert app.table().shown["browser-001"][3] == ("saved", "cyan")

    drive(tmp_path, scenario)


def test_polling_pauses_while_a_dialog_is_open(tmp_path: Path) -> None:
    async def scenario(app: HvkubeApp, pilot: Pilot[Any]) -> None:
        await at(app, pilot, "vms", "browser-003")
        await pilot.press("x")
        await pilot.pause()
        assert app.modal_open()
        ticks = len(app.ticks)
        app.engine.save_vm("browser-001")
        for _ in range(5):
            start = app.polls
            app.refresh_now()
            while app.polls < start + 1:
                await pilot.pause(0.01)
        assert len(app.ticks) == ticks
        assert app.table().shown["browser-001"][3] == ("running", "bold green")
        await pilot.press("n")
        await settle(pilot)
        assert app.table().shown["browser-001"][3] == ("saved", "cyan")

    drive(tmp_path, scenario)


def test_an_idle_dashboard_reads_nothing(tmp_path: Path) -> None:
    async def scenario(app: HvkubeApp, pilot: Pilot[Any]) -> None:
        changed = sum(1 for t in app.ticks if t.changed)
        for _ in range(10):
            start = app.polls
            app.refresh_now()
            while app.polls < start + 1:
                await pilot.pause(0.01)
        assert sum(1 for t in app.ticks if t.changed) == changed

    drive(tmp_path, scenario)


# -- controller ----------------------------------------------------------------------------------


def test_shift_r_starts_the_controller_and_the_header_shows_it(tmp_path: Path) -> None:
    import os
    import signal

    from core.controller import controller_status

    started: list[int] = []
    apps: list[HvkubeApp] = []

    async def scenario(app: HvkubeApp, pilot: Pilot[Any]) -> None:
        apps.append(app)
        assert "controller off" in str(app.main.header.text())
        await pilot.press("R")
        await settle(pilot)
        deadline = time.monotonic() + 120
        status = controller_status(app.engine)
        while not status.running and time.monotonic() < deadline:
            await asyncio.sleep(0.25)
            status = controller_status(app.engine)
        assert status.running, notes(app)
        assert status.pid is not None
        started.append(status.pid)
        assert any("controller started" in n for n in notes(app))
        app.refresh_now()
        while "controller on" not in str(app.main.header.text()) and time.monotonic() < deadline:
            await asyncio.sleep(0.25)
            await settle(pilot)
        assert "controller on" in str(app.main.header.text())
        await pilot.press("R")  # a second one is refused with the reason
        await settle(pilot)
        assert any("already running" in n for n in notes(app))

    try:
        drive(tmp_path, scenario)
    finally:
        # Also a controller that came up after a check had already failed.
        for app in apps:
            late = controller_status(app.engine)
            if late.running and late.pid is not None and late.pid not in started:
                started.append(late.pid)
        alive = [pid for pid in started if psutil.pid_exists(pid) and _not_zombie(pid)]
        for pid in alive:
            os.kill(pid, signal.SIGTERM)
    # The controller R started ended with the dashboard.
    assert started and not alive


def _not_zombie(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_quitting_asks_whether_to_keep_the_controller_r_started(tmp_path: Path) -> None:
    import os
    import signal

    from core.controller import controller_status
    from hvkube_tui.widgets.dialogs import QuitScreen

    pids: list[int] = []

    async def scenario(app: HvkubeApp, pilot: Pilot[Any]) -> None:
        await pilot.press("R")
        await settle(pilot)
        await until(pilot, lambda: app.controller_pid is not None, "the controller started")
        assert app.controller_pid is not None
        pids.append(app.controller_pid)
        await pilot.press("q")
        await until(pilot, lambda: isinstance(app.screen, QuitScreen), "the question")
        await pilot.press("escape")  # stay
        await until(pilot, lambda: not app.modal_open(), "the question closed")
        await pilot.press("q")
        await until(pilot, lambda: isinstance(app.screen, QuitScreen), "the question again")
        await pilot.press("k")  # keep it running

    try:
        app = drive(tmp_path, scenario)
        assert app.keep_controller
        assert _not_zombie(pids[0]), "kept: it outlives the dashboard"
        assert controller_status(app.engine).pid in (None, pids[0])
    finally:
        for pid in pids:
            if _not_zombie(pid):
                os.kill(pid, signal.SIGTERM)

"""The persistent session survives deaths, hangs and garbage; 5.1 output shapes are read."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import pytest
from hyperv_helpers import fake_backend, fake_command, make_running_vm, sim_host

from core.backends.base import VMRef
from core.backends.hyperv import HyperVBackend
from core.backends.hyperv.errors import SessionRights
from core.backends.hyperv.host_check import host_problem
from core.backends.hyperv.transport import (
    MalformedResponse,
    PowerShellSession,
    RemoteError,
    SessionLost,
    SessionPool,
    clean_stderr,
    dispatcher_argv,
    session_rights,
)
from core.errors import (
    InvalidVMState,
    OperationTimeout,
    PermissionDenied,
    Unsupported,
    VMNotFoundInHost,
)
from core.models import HostState
from tests.fakes import fakeps


@pytest.fixture
def backend(tmp_path: Path) -> HyperVBackend:
    b = fake_backend(tmp_path, op_timeout_s=2.0, sessions=1)
    yield b
    b.close()


def _pid(backend: HyperVBackend) -> int | None:
    idle = backend.pool._idle
    return idle[0].pid if idle else None


def test_one_process_serves_many_calls(backend: HyperVBackend) -> None:
    backend.list_vms()
    first = _pid(backend)
    nope = VMRef("nope", str(uuid.uuid4()))
    for _ in range(20):
        assert backend.get_vm(nope) is None
    assert first is not None and _pid(backend) == first
    assert backend.pool.restarts == 0


def test_killed_mid_call_reports_clearly_and_the_next_call_works(
    backend: HyperVBackend, tmp_path: Path
) -> None:
    ref = make_running_vm(backend)
    before = _pid(backend)
    fakeps.inject(tmp_path, "die", op="vm_save")
    with pytest.raises(SessionLost) as info:
        backend.save(ref)
    assert "session ended during 'vm_save'" in info.value.message
    # The CLIXML the process wrote on stderr is shown as plain text.
    assert "The pipeline has been stopped." in info.value.message
    assert backend.get_vm(ref) is not None
    assert _pid(backend) != before
    backend.save(ref)
    assert backend.get_vm(ref).state is HostState.SAVED  # type: ignore[union-attr]


def test_read_only_calls_are_retried_on_a_fresh_session(
    backend: HyperVBackend, tmp_path: Path
) -> None:
    ref = make_running_vm(backend)
    fakeps.inject(tmp_path, "die", op="vm_get")
    vm = backend.get_vm(ref)
    assert vm is not None and vm.state is HostState.RUNNING
    assert backend.pool.restarts == 1


def test_hung_past_the_timeout_is_killed_and_replaced(
    backend: HyperVBackend, tmp_path: Path
) -> None:
    ref = make_running_vm(backend)
    fakeps.inject(tmp_path, "hang", op="vm_pause")
    with pytest.raises(OperationTimeout) as info:
        backend.pause(ref)
    assert "did not answer 'vm_pause'" in info.value.message
    assert info.value.vm == "p-001"
    backend.pause(ref)
    assert backend.get_vm(ref).state is HostState.PAUSED  # type: ignore[union-attr]


def test_garbage_is_an_error_and_the_next_call_works(
    backend: HyperVBackend, tmp_path: Path
) -> None:
    ref = make_running_vm(backend)
    fakeps.inject(tmp_path, "garbage", op="checkpoint_new")
    with pytest.raises(MalformedResponse) as info:
        backend.checkpoint(ref, "clean")
    assert "malformed response" in info.value.message
    assert info.value.raw is not None and "this is not JSON" in info.value.raw
    backend.checkpoint(ref, "clean")
    # VM records no longer carry checkpoints: they are listed by checkpoint_list.
    assert backend.checkpoint_names(ref) == ["clean"]


def test_stray_output_and_forged_frames_are_ignored(backend: HyperVBackend, tmp_path: Path) -> None:
    ref = make_running_vm(backend)
    fakeps.inject(tmp_path, "noise", op="vm_ip")
    assert backend.ip_address(ref) is not None  # not "forged"
    session = backend.pool._idle[0]
    assert any("forged" in line for line in session.noise)


def test_windows_powershell_51_shapes(tmp_path: Path) -> None:
    backend = fake_backend(tmp_path, "--ps51", "--localized")
    try:
        ref = make_running_vm(backend)
        backend.checkpoint(ref, "clean")
        vms = backend.list_vms(prefix="p-")  # one VM: a bare object, not a list
        assert [(v.name, v.id, v.state) for v in vms] == [("p-001", ref.id, HostState.RUNNING)]
        # One checkpoint: checkpoint_list's Items is a bare object, not a list.
        assert backend.checkpoint_names(ref) == ["clean"]
        assert backend.ip_address(ref).startswith("172.")  # type: ignore[union-attr]
        assert backend.heartbeat_ok(ref)
        backend.save(ref)
        vm = backend.get_vm(ref)
        assert vm is not None and (vm.state, vm.raw_state) == (HostState.SAVED, "Saved")
        # A localised message still maps to the right error.
        with pytest.raises(InvalidVMState) as info:
            backend.save(ref)
        assert "Échec" in info.value.message
        assert backend.list_vms(prefix="none-") == []
        session = backend.pool._idle[0]
        assert session.info["ps"].startswith("5.1")
    finally:
        backend.close()


def test_errors_come_back_typed(backend: HyperVBackend) -> None:
    with pytest.raises(VMNotFoundInHost) as info:
        backend.start(VMRef("ghost-001", str(uuid.uuid4())))
    assert info.value.vm == "ghost-001"
    assert backend.pool.restarts == 0  # an error record is not a broken session


def test_many_threads_share_a_small_pool(tmp_path: Path) -> None:
    backend = fake_backend(tmp_path, sessions=3)
    try:
        ref = make_running_vm(backend)
        errors: list[BaseException] = []

        def work() -> None:
            try:
                for _ in range(10):
                    assert backend.get_vm(ref) is not None
                    backend.capacity()
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert backend.pool._count <= 3
        assert backend.pool.restarts == 0
    finally:
        backend.close()


def test_same_key_operations_are_serialised() -> None:
    pool = SessionPool(["unused"], size=1)
    inside = threading.Event()
    release = threading.Event()
    order: list[str] = []

    def first() -> None:
        with pool.locked(["disk:c:\\a.vhdx", "vm:a"]):
            order.append("first in")
            inside.set()
            release.wait()
            order.append("first out")

    def second() -> None:
        inside.wait()
        with pool.locked(["vm:a"]):
            order.append("second in")

    t1, t2 = threading.Thread(target=first), threading.Thread(target=second)
    t1.start()
    t2.start()
    inside.wait()
    # Another key is free meanwhile.
    with pool.locked(["vm:b"]):
        order.append("other key")
    release.set()
    t1.join()
    t2.join()
    assert order.index("first out") < order.index("second in")
    assert order.index("other key") < order.index("first out")


def test_missing_powershell_is_a_clear_error(tmp_path: Path) -> None:
    backend = HyperVBackend("no-such-powershell-here.exe -NoProfile", op_timeout_s=2)
    with pytest.raises(Unsupported) as info:
        backend.list_vms()
    assert "HVKUBE_POWERSHELL" in info.value.message
    backend.close()


def test_session_start_and_close(tmp_path: Path) -> None:
    session = PowerShellSession(dispatcher_argv(fake_command(tmp_path)))
    session.start()
    assert session.info["protocol"] == 2 and "vm_start" in session.info["ops"]
    assert session.call("ping", {}, 5.0)["pong"] is True
    session.close()
    assert not session.alive


def test_clixml_on_stderr_is_reduced_to_text() -> None:
    lines = [
        "#< CLIXML",
        '<Objs Version="1.1.0.1"><S S="Error">Access is denied._x000D__x000A_</S>'
        '<S S="Error">Second line</S></Objs>',
        "plain text",
    ]
    assert clean_stderr(lines) == "Access is denied. | Second line | plain text"


def test_clixml_spread_over_several_lines_is_reduced_to_text() -> None:
    lines = [
        "#< CLIXML",
        '<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04">',
        '<Obj S="progress" RefId="0"><TN RefId="0"><T>System.Management.Automation.PSCustomObject'
        '</T></TN><MS><PR N="Record"><AV>Preparing modules for first use.</AV></PR></MS></Obj>',
        '<S S="Error">New-VHD : Failed to create the virtual hard disk._x000D__x000A_</S>',
        '<S S="Error">The system failed to create &apos;D:\\vms\\web-001.vhdx&apos;:',
        "The file exists. (0x80070050)._x000D__x000A_</S>",
        '<S S="Error">At line:1 char:1_x000D__x000A_</S>',
        "</Objs>",
        "plain text after",
    ]
    assert clean_stderr(lines) == (
        "New-VHD : Failed to create the virtual hard disk. | "
        "The system failed to create 'D:\\vms\\web-001.vhdx': The file exists. (0x80070050). | "
        "At line:1 char:1 | plain text after"
    )


def test_clixml_cut_short_still_gives_its_text() -> None:
    # stderr keeps only its last lines: the start of a document may be gone, or its end.
    assert clean_stderr(['<S S="Error">Access is denied._x000D__x000A_</S></Objs>']) == (
        "Access is denied."
    )
    assert clean_stderr(["#< CLIXML", '<Objs Version="1.1.0.1">', '<S S="Error">Gone']) == "Gone"


def test_ready_rights_are_read_and_missing_ones_are_unknown() -> None:
    assert session_rights({"elevated": True, "hyperVAdmin": False}) == SessionRights(True, False)
    assert session_rights({"elevated": "False", "hyperVAdmin": "false"}).lacking
    assert session_rights({}) == SessionRights(None, None)
    assert session_rights({"elevated": 0, "hyperVAdmin": None}) == SessionRights(None, None)
    assert not session_rights({"elevated": False}).lacking


def test_error_records_carry_the_rights_of_their_session(tmp_path: Path) -> None:
    session = PowerShellSession(dispatcher_argv(fake_command(tmp_path)))
    session.start()
    try:
        session.rights = SessionRights(elevated=False, hyperv_admin=False)
        with pytest.raises(RemoteError) as info:
            session.call("vm_start", {"Name": "ghost-001"}, 5.0)
        assert info.value.record.rights == session.rights
    finally:
        session.close()


# -- the oldest host hvkube supports -----------------------------------------------------------


@pytest.mark.parametrize(
    "version", ["10.0.17763", "10.0.17763.5329", "10.0.20348", "10.0.26100", "11.0.1"]
)
def test_supported_hosts_pass(version: str) -> None:
    assert host_problem({"osVersion": version}) is None


@pytest.mark.parametrize(
    "version",
    ["10.0.14393", "10.0.17134.1", "6.3.9600", {"Major": 10, "Minor": 0, "Build": 14393}],
)
def test_older_hosts_are_named_with_the_minimum_and_what_to_do(version: object) -> None:
    problem = host_problem({"osVersion": version})
    assert problem is not None and "\n" not in problem
    shown = version if isinstance(version, str) else "10.0.14393"
    assert shown in problem
    assert "17763" in problem and "Windows Server 2019" in problem and "1809" in problem
    assert "upgrade" in problem


@pytest.mark.parametrize("info", [{}, {"osVersion": None}, {"osVersion": "unknown"}])
def test_no_version_no_check(info: dict[str, object]) -> None:
    assert host_problem(info) is None


def _ready_only(ready: dict[str, object]) -> list[str]:
    """A process that only says READY with these fields, then waits for stdin to close."""
    import json
    import sys

    frame = "HVKUBE-READY " + json.dumps({"protocol": 2, **ready})
    return [sys.executable, "-c", f"import sys; print({frame!r}, flush=True); sys.stdin.read()"]


def test_a_session_on_a_too_old_host_does_not_start() -> None:
    session = PowerShellSession(_ready_only({"osVersion": "10.0.14393"}))
    with pytest.raises(Unsupported) as info:
        session.start()
    assert "10.0.14393" in info.value.message and "17763" in info.value.message
    assert info.value.operation == "session_start"
    assert not session.alive


def test_a_session_on_a_supported_or_unknown_host_starts() -> None:
    for ready in ({"osVersion": "10.0.17763"}, {}):
        session = PowerShellSession(_ready_only(ready))
        session.start()
        assert session.alive
        session.close()


# -- what the fake host says of its rights and version ------------------------------------------


def test_the_fake_host_says_its_rights_and_version(tmp_path: Path) -> None:
    session = PowerShellSession(dispatcher_argv(fake_command(tmp_path)))
    session.start()
    try:
        assert session.info["osVersion"] == "10.0.20348"
        assert session.info["elevated"] is True and session.info["hyperVAdmin"] is False
        assert not session.rights.lacking
    finally:
        session.close()


def test_without_rights_a_record_that_says_nothing_is_a_permission_error(tmp_path: Path) -> None:
    backend = fake_backend(tmp_path, "--no-rights", "--localized")
    try:
        ref = make_running_vm(backend)
        sim_host(tmp_path).inject_fault("permission-denied", op="save")
        with pytest.raises(PermissionDenied) as info:
            backend.save(ref)
        assert info.value.raw is not None and "Unspecified,Microsoft.HyperV" in info.value.raw
        assert info.value.message.startswith("Vous ne disposez pas")
        assert (
            "not elevated" in info.value.message and "Hyper-V Administrators" in info.value.message
        )
    finally:
        backend.close()


def test_a_fake_host_older_than_the_minimum_is_refused(tmp_path: Path) -> None:
    backend = fake_backend(tmp_path, "--os-version", "10.0.14393")
    try:
        with pytest.raises(Unsupported) as info:
            backend.list_vms()
        assert "10.0.14393" in info.value.message and "Windows Server 2019" in info.value.message
    finally:
        backend.close()

"""Error records map to distinct core errors by id, category, type and HRESULT, not by text."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hyperv_helpers import fake_backend, make_running_vm, sim_host
from hyperv_records import LANGUAGES, RECORDS, RealRecord, with_message

from core.backends.hyperv.errors import ErrorRecord, SessionRights, classify, to_error
from core.backends.hyperv.transport import session_rights
from core.errors import (
    BackendError,
    CheckpointNotFound,
    FileInUse,
    HostObjectExists,
    InvalidVMState,
    OperationTimeout,
    OutOfMemory,
    PermissionDenied,
    SavedStateCorrupt,
    Unsupported,
    VMBroken,
    VMNotFoundInHost,
)
from tests.fakes.fakeps_errors import build_record

VEX = "Microsoft.HyperV.PowerShell.VirtualizationException"

CASES: list[tuple[str, dict[str, Any], type[BackendError]]] = [
    (
        "vm_get",
        {
            "message": 'Hyper-V was unable to find a virtual machine with name "N1".',
            "fqid": "InvalidParameter,Microsoft.HyperV.PowerShell.Commands.GetVM",
            "category": "InvalidArgument",
            "type": VEX,
        },
        VMNotFoundInHost,
    ),
    (
        "vm_remove",
        {
            "message": "Hyper-V was unable to find a virtual machine with name 'x'.",
            "fqid": "ObjectNotFound,Microsoft.HyperV.PowerShell.Commands.RemoveVM",
            "category": "ObjectNotFound",
            "type": VEX,
        },
        VMNotFoundInHost,
    ),
    (
        "vm_start",
        {"message": "no VM", "fqid": "HvkubeVMNotFound,Stop-Hv", "category": "ObjectNotFound"},
        VMNotFoundInHost,
    ),
    (
        "vm_save",
        {
            "message": "The operation cannot be performed while the object is in its state.",
            "fqid": "InvalidState,Microsoft.HyperV.PowerShell.Commands.SaveVM",
            "category": "InvalidOperation",
            "type": VEX,
        },
        InvalidVMState,
    ),
    (
        "vm_start",
        {
            "message": "You do not have the required permission to complete this task.",
            "fqid": "AccessDenied,Microsoft.HyperV.PowerShell.Commands.StartVM",
            "category": "PermissionDenied",
            "type": VEX,
        },
        PermissionDenied,
    ),
    (
        "vm_start",
        {
            "message": "'a' could not initialize memory: Ran out of memory (0x8007000E).",
            "fqid": "OperationFailed,Microsoft.HyperV.PowerShell.Commands.StartVM",
            "category": "NotSpecified",
            "type": VEX,
        },
        OutOfMemory,
    ),
    (
        "disk_new_diff",
        {
            "message": "The process cannot access the file because it is being used.",
            "fqid": "OperationFailed,Microsoft.Vhd.PowerShell.Cmdlets.NewVhd",
            "category": "ResourceBusy",
            "type": "System.IO.IOException",
            "hresults": ["0x80070020"],
        },
        FileInUse,
    ),
    (
        "vm_start",
        {
            "message": "'a' could not restore its saved state (0x80070570).",
            "fqid": "OperationFailed,Microsoft.HyperV.PowerShell.Commands.StartVM",
            "category": "NotSpecified",
            "type": VEX,
        },
        SavedStateCorrupt,
    ),
    (
        "vm_type_key",
        {"message": "TypeKey failed", "fqid": "HvkubeWmi32775,Wait-HvJob", "wmiCode": 32775},
        InvalidVMState,
    ),
    (
        "vm_type_key",
        {"message": "TypeKey failed", "fqid": "HvkubeWmi32769,Wait-HvJob"},
        PermissionDenied,
    ),
    (
        "vm_screenshot",
        {"message": "took too long", "fqid": "HvkubeTimeout,Wait-HvJob"},
        OperationTimeout,
    ),
    (
        "vm_list",
        {
            "message": "The term 'Get-VM' is not recognized as the name of a cmdlet",
            "fqid": "CommandNotFoundException",
            "category": "ObjectNotFound",
            "type": "System.Management.Automation.CommandNotFoundException",
        },
        Unsupported,
    ),
    # A resource shortage on a localised host with no specific id: the HRESULT decides.
    (
        "vm_start",
        {
            "message": "Échec de l'opération. Ressources système insuffisantes (0x800705AA).",
            "fqid": "OperationFailed,Microsoft.HyperV.PowerShell.Commands.StartVM",
            "category": "NotSpecified",
            "type": VEX,
        },
        OutOfMemory,
    ),
    (
        "vm_new",
        {
            "message": "Sequence contains more than one element",
            "fqid": "InvalidOperation,Microsoft.HyperV.PowerShell.Commands.NewVM",
            "category": "InvalidOperation",
        },
        BackendError,
    ),
]


@pytest.mark.parametrize(("op", "data", "expected"), CASES)
def test_classification(op: str, data: dict[str, Any], expected: type[BackendError]) -> None:
    assert classify(ErrorRecord.from_json(data), op) is expected


def test_a_corrupt_file_outside_a_resume_is_not_a_corrupt_saved_state() -> None:
    record = ErrorRecord.from_json({"message": "x (0x80070570)", "fqid": "OperationFailed,X"})
    assert classify(record, "disk_new_diff") is BackendError


def test_classification_ignores_the_language_of_the_message() -> None:
    for message in ("Access denied.", "Accès refusé.", "Odmowa dostępu.", "拒绝访问。"):
        record = ErrorRecord.from_json(
            {"message": message, "fqid": "AccessDenied,X", "category": "PermissionDenied"}
        )
        assert classify(record, "vm_start") is PermissionDenied


def test_permission_error_keeps_the_message_and_says_what_to_do() -> None:
    record = ErrorRecord.from_json(
        {"message": "Accès refusé.", "fqid": "AccessDenied,X", "category": "PermissionDenied"}
    )
    exc = to_error(record, "vm_start", "p-001")
    assert isinstance(exc, PermissionDenied)
    assert "Accès refusé." in exc.message
    assert "Hyper-V Administrators" in exc.message and "elevated" in exc.message
    assert exc.vm == "p-001" and exc.operation == "vm_start"
    assert exc.raw is not None and "AccessDenied" in exc.raw


def test_missing_module_says_how_to_install_it() -> None:
    record = ErrorRecord.from_json(
        {"message": "The term 'Get-VM' is not recognized", "fqid": "CommandNotFoundException"}
    )
    exc = to_error(record, "vm_list", None)
    assert isinstance(exc, Unsupported)
    assert "Microsoft-Hyper-V-Management-PowerShell" in exc.message


def test_unknown_records_keep_everything_raw() -> None:
    record = ErrorRecord.from_json({"message": "boom", "fqid": "Weird,Thing"})
    exc = to_error(record, "vm_save", "a")
    assert type(exc) is BackendError
    assert exc.message == "boom"
    assert exc.raw is not None and "Weird,Thing" in exc.raw


def test_malformed_error_payloads_still_give_an_error() -> None:
    assert ErrorRecord.from_json("text only").message == "text only"
    assert ErrorRecord.from_json({}).message
    record = ErrorRecord.from_json({"message": "m", "hresults": ["zz", True, -2147024891]})
    assert record.hresults == [0x80070005]


# -- records as real hosts send them (tests/hyperv_records.py) ---------------------------------

CLASSES: list[type[BackendError]] = [
    VMNotFoundInHost,
    CheckpointNotFound,
    HostObjectExists,
    VMBroken,
    SavedStateCorrupt,
    OutOfMemory,
    PermissionDenied,
    FileInUse,
    InvalidVMState,
    OperationTimeout,
    Unsupported,
    BackendError,
]


def _classify(case: RealRecord, data: dict[str, Any] | None = None) -> type[BackendError]:
    record = ErrorRecord.from_json(case.record if data is None else data)
    if case.ready is None:
        return classify(record, case.op)
    return classify(record, case.op, session_rights(case.ready))


def test_the_real_records_cover_every_class_and_language() -> None:
    assert len(RECORDS) >= 22
    assert len({case.name for case in RECORDS}) == len(RECORDS)
    assert {case.language for case in RECORDS} >= set(LANGUAGES)
    assert {case.expected for case in RECORDS} >= set(CLASSES)
    for case in RECORDS:
        assert {"message", "fqid", "category", "type", "hresults", "target"} <= set(case.record)


@pytest.mark.parametrize("case", RECORDS, ids=lambda c: c.name)
def test_every_real_record_maps_to_its_class(case: RealRecord) -> None:
    assert _classify(case) is case.expected


@pytest.mark.parametrize("case", RECORDS, ids=lambda c: c.name)
def test_the_language_of_the_message_never_changes_the_class(case: RealRecord) -> None:
    """The same record with the text of every other record, in every language."""
    for other in RECORDS:
        data = with_message(case, other.record["message"])
        assert _classify(case, data) is case.expected, (other.name, data["message"])


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_each_class_from_its_real_records(cls: type[BackendError]) -> None:
    cases = [case for case in RECORDS if case.expected is cls]
    assert cases
    for case in cases:
        rights = None if case.ready is None else session_rights(case.ready)
        exc = to_error(ErrorRecord.from_json(case.record), case.op, "web-001", rights)
        assert type(exc) is cls, case.name
        assert exc.message.startswith(case.record["message"].strip())
        assert exc.raw is not None and case.record["fqid"] in exc.raw


def test_a_missing_checkpoint_never_marks_the_vm_missing() -> None:
    for case in RECORDS:
        if case.op.startswith("checkpoint_") and case.expected is CheckpointNotFound:
            exc = to_error(ErrorRecord.from_json(case.record), case.op, "web-001")
            assert not isinstance(exc, VMNotFoundInHost)


def test_a_resource_shortage_says_the_host_lacks_memory() -> None:
    case = next(c for c in RECORDS if c.name == "start_vm_no_system_resources_pl")
    exc = to_error(ErrorRecord.from_json(case.record), case.op, "web-004")
    assert isinstance(exc, OutOfMemory)
    assert "Brak wystarczających zasobów" in exc.message
    assert "host" in exc.message and "memory" in exc.message


def test_wmi_file_not_found_is_not_a_file_in_use() -> None:
    record = ErrorRecord.from_json(
        {"message": "RequestStateChange failed", "fqid": "HvkubeWmi32779,Wait-HvJob"}
    )
    exc = to_error(record, "vm_screenshot", "web-001")
    assert type(exc) is BackendError
    assert "file" in exc.message and "not found" in exc.message


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ("Saved", SavedStateCorrupt),
        (6, SavedStateCorrupt),
        ("6", SavedStateCorrupt),
        ("Off", VMBroken),
        (3, VMBroken),
        ("Running", VMBroken),
        (None, BackendError),
    ],
)
def test_invalid_data_on_start_depends_on_the_state_before_it(
    state: object, expected: type[BackendError]
) -> None:
    data: dict[str, Any] = {
        "message": "The data is invalid. (0x8007000D)",
        "fqid": "OperationFailed,Microsoft.HyperV.PowerShell.Commands.StartVM",
        "category": "NotSpecified",
        "type": VEX,
        "hresults": ["0x80131500", "0x8007000D"],
    }
    if state is not None:
        data["vmState"] = state
    assert classify(ErrorRecord.from_json(data), "vm_start") is expected
    # Anywhere but a start, invalid data says nothing about a saved state or the VM.
    assert classify(ErrorRecord.from_json(data), "vm_save") is BackendError


def test_a_broken_vm_says_a_checkpoint_will_not_help() -> None:
    case = next(c for c in RECORDS if c.name == "start_invalid_data_from_off")
    exc = to_error(ErrorRecord.from_json(case.record), case.op, "web-002")
    assert isinstance(exc, VMBroken)
    assert "Die Daten sind ungültig" in exc.message


# -- what the session knows of its rights ------------------------------------------------------

UNSPECIFIED_GET_VM = {
    "message": "Vous ne disposez pas de l'autorisation requise pour effectuer cette tâche.",
    "fqid": "Unspecified,Microsoft.HyperV.PowerShell.Commands.GetVM",
    "category": "NotSpecified",
    "type": VEX,
    "hresults": ["0x80131500"],
}


@pytest.mark.parametrize(
    ("ready", "expected"),
    [
        ({"elevated": False, "hyperVAdmin": False}, PermissionDenied),
        ({"elevated": True, "hyperVAdmin": False}, BackendError),
        ({"elevated": False, "hyperVAdmin": True}, BackendError),
        ({"elevated": False}, BackendError),  # a field missing: rights unknown
        ({}, BackendError),  # an older dispatcher: rights unknown
    ],
)
def test_a_record_saying_nothing_is_a_permission_error_only_without_rights(
    ready: dict[str, Any], expected: type[BackendError]
) -> None:
    record = ErrorRecord.from_json(UNSPECIFIED_GET_VM)
    assert classify(record, "vm_list", session_rights(ready)) is expected
    exc = to_error(record, "vm_list", None, session_rights(ready))
    assert type(exc) is expected
    if expected is PermissionDenied:
        assert exc.message.startswith("Vous ne disposez pas")
        assert "Hyper-V Administrators" in exc.message and "elevated" in exc.message


def test_without_rights_a_specific_record_keeps_its_class() -> None:
    lacking = SessionRights(elevated=False, hyperv_admin=False)
    for case in RECORDS:
        if case.expected is not BackendError:
            record = ErrorRecord.from_json(case.record)
            assert classify(record, case.op, lacking) is case.expected, case.name
    # A record with an unmapped but specific HRESULT, id or WMI code is not a guess either.
    for data in (
        {**UNSPECIFIED_GET_VM, "hresults": ["0x80131500", "0x80070002"]},
        {**UNSPECIFIED_GET_VM, "fqid": "InvalidOperation,X", "category": "InvalidOperation"},
        {**UNSPECIFIED_GET_VM, "wmiCode": 32779},
    ):
        assert classify(ErrorRecord.from_json(data), "vm_list", lacking) is BackendError


def test_the_rights_a_record_arrived_with_are_used_by_default() -> None:
    record = ErrorRecord.from_json(UNSPECIFIED_GET_VM)
    assert classify(record, "vm_list") is BackendError
    record.rights = SessionRights(elevated=False, hyperv_admin=False)
    assert type(to_error(record, "vm_list", None)) is PermissionDenied


# -- the fake host sends what a real one would -------------------------------------------------

FAKE_CASES = [case for case in RECORDS if case.fake]


def test_the_fake_host_reproduces_a_real_record_of_every_class() -> None:
    assert {case.expected for case in FAKE_CASES} >= set(CLASSES)


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("case", FAKE_CASES, ids=lambda c: c.name)
def test_the_fake_host_builds_the_real_shape(case: RealRecord, language: str) -> None:
    rights = None if case.ready is None else session_rights(case.ready)
    exc = case.expected("the simulated host's own message", vm="web-001", operation=case.op)
    built = build_record(
        exc,
        case.op,
        language,
        vm_state=case.record.get("vmState"),
        wmi_code=case.record.get("wmiCode"),
        no_rights=rights is not None and rights.lacking,
    )
    for key in ("fqid", "category", "type", "hresults", "vmState", "wmiCode"):
        assert built.get(key) == case.record.get(key), key
    real = classify(ErrorRecord.from_json(case.record), case.op, rights)
    assert classify(ErrorRecord.from_json(built), case.op, rights) is real is case.expected
    if language == "en":
        assert built["message"] == "the simulated host's own message"


def test_the_fake_host_speaks_the_hosts_language_but_the_dispatcher_english() -> None:
    exc = InvalidVMState("cannot save while Off", vm="web-001")
    assert build_record(exc, "vm_save", "en")["message"] == "cannot save while Off"
    assert build_record(exc, "vm_save", "fr")["message"].startswith("Échec")
    assert "„vm_save”" in build_record(exc, "vm_save", "pl")["message"]
    own = VMNotFoundInHost("Hyper-V has no virtual machine named 'web-001'", vm="web-001")
    assert build_record(own, "vm_save", "zh")["message"] == own.message


def test_a_broken_vm_record_never_says_the_vm_was_saved() -> None:
    for state in (None, "Saved", 6):
        built = build_record(VMBroken("x", vm="a"), "vm_start", "en", vm_state=state)
        assert classify(ErrorRecord.from_json(built), "vm_start") is VMBroken


def test_over_the_fake_host_a_missing_checkpoint_is_not_a_missing_vm(tmp_path: Path) -> None:
    backend = fake_backend(tmp_path)
    try:
        ref = make_running_vm(backend)
        with pytest.raises(CheckpointNotFound) as info:
            backend.restore_checkpoint(ref, "clean")
        assert info.value.vm == "p-001"
        assert backend.get_vm(ref) is not None
    finally:
        backend.close()


def test_over_the_fake_host_an_existing_disk_is_an_existing_object(tmp_path: Path) -> None:
    backend = fake_backend(tmp_path)
    try:
        disk = backend.disk_path_for("p-001", "C:\\templates\\win11.vhdx")
        backend.create_differencing_disk("C:\\templates\\win11.vhdx", disk)
        with pytest.raises(HostObjectExists) as info:
            backend.create_differencing_disk("C:\\templates\\win11.vhdx", disk)
        assert info.value.raw is not None and "0x80070050" in info.value.raw
    finally:
        backend.close()


@pytest.mark.parametrize(
    ("extra", "saved"), [((), '"vmState": "Saved"'), (("--localized", "--ps51"), '"vmState": 6')]
)
def test_over_the_fake_host_a_start_without_memory_and_a_corrupt_saved_state(
    tmp_path: Path, extra: tuple[str, ...], saved: str
) -> None:
    backend = fake_backend(tmp_path, *extra)
    try:
        ref = make_running_vm(backend)
        backend.save(ref)
        sim = sim_host(tmp_path)
        sim.inject_fault("out-of-memory")
        with pytest.raises(OutOfMemory) as oom:
            backend.start(ref)
        assert "lacks the free memory" in oom.value.message
        assert oom.value.raw is not None and "OutOfMemory,Microsoft.HyperV" in oom.value.raw
        if extra:
            assert oom.value.message.startswith("Mémoire système insuffisante")
        sim.clear_faults()
        sim.inject_fault("corrupt-saved-state", vm="p-001")
        with pytest.raises(SavedStateCorrupt) as corrupt:
            backend.start(ref)
        assert corrupt.value.raw is not None and saved in corrupt.value.raw
    finally:
        backend.close()


def test_a_listing_that_fails_for_want_of_rights_is_not_an_empty_host(tmp_path: Path) -> None:
    """vm_list answers the VMs it could read and the errors of the others: a ghost VM is left
    out, but a permission failure is raised, never shown as a host with no VMs."""
    backend = fake_backend(tmp_path)
    denied = next(r for r in RECORDS if r.name == "start_vm_access_denied").record
    ghost = {"message": "could not read 'ghost'", "fqid": "OperationFailed,GetVM", "hresults": []}
    answers = iter([{"Items": [], "Errors": [ghost]}, {"Items": [], "Errors": [ghost, denied]}])
    backend.call = lambda *args, **kwargs: next(answers)  # type: ignore[method-assign]
    try:
        assert backend.list_vms() == []
        with pytest.raises(PermissionDenied):
            backend.list_vms()
    finally:
        backend.close()

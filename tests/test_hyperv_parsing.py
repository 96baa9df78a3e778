"""Windows PowerShell 5.1 and 7 output shapes are read alike; states map by name."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from core.backends.hyperv.parsing import (
    HEARTBEAT_NAMES,
    VM_STATE_NAMES,
    as_list,
    enum_name,
    parse_date,
    parse_seconds,
    parse_vm,
    pick_ipv4,
)
from core.errors import BackendError
from core.models import HostState
from core.ownership import owner_mark
from core.reported import MAX_NAME_CHARS

VM_ID = "5D4D2D7E-1B2A-4C3D-9E8F-0A1B2C3D4E5F"  # Hyper-V's id for a VM, as [string]$VM.Id


def test_states_map_by_name_and_51_integers_by_the_stable_table() -> None:
    assert enum_name("Running", VM_STATE_NAMES) == "Running"
    assert enum_name(2, VM_STATE_NAMES) == "Running"
    assert enum_name(3, VM_STATE_NAMES) == "Off"  # not the other way round
    assert enum_name("6", VM_STATE_NAMES) == "Saved"
    assert enum_name({"value": 9, "Value": "Paused"}, VM_STATE_NAMES) == "Paused"
    assert enum_name(6, HEARTBEAT_NAMES) == "OkApplicationsHealthy"


@pytest.mark.parametrize("raw", [32783, "ComponentServicing", "RunningCritical", "Hibernated"])
def test_unknown_and_version_dependent_states_are_kept_raw(raw: object) -> None:
    vm = parse_vm({"Name": "a-001", "Id": VM_ID, "State": raw})
    assert vm.state is HostState.UNKNOWN
    assert vm.raw_state == str(raw)


def test_transitional_states_stay_transitional() -> None:
    for raw in ("Saving", 32773, "Starting", "Resuming", 32777, "Stopping", "Pausing"):
        assert parse_vm({"Name": "a", "Id": VM_ID, "State": raw}).state.transitional, raw


def test_dates_in_both_forms() -> None:
    expected = datetime(2012, 1, 13, 8, 0, tzinfo=UTC)
    assert parse_date("/Date(1326441600000)/") == expected
    assert parse_date("\\/Date(1326441600000)\\/") == expected
    assert parse_date("/Date(1326441600000+0100)/") == expected
    assert parse_date("2012-01-13T08:00:00.0000000Z") == expected
    assert parse_date("2012-01-13T09:00:00.1234567+01:00") == expected.replace(microsecond=123456)
    assert parse_date(None) is None


def test_durations_as_seconds_timespan_or_text() -> None:
    assert parse_seconds(12.5) == 12.5
    assert parse_seconds({"Ticks": 125_000_000, "TotalSeconds": 12.5}) == 12.5
    assert parse_seconds({"Ticks": 125_000_000}) == 12.5
    assert parse_seconds("1.02:03:04.5") == 86400 + 7384.5
    assert parse_seconds(None) == 0.0


def test_list_or_single_object() -> None:
    assert as_list(None) == []
    assert as_list({"Name": "a"}) == [{"Name": "a"}]
    assert as_list("clean") == ["clean"]
    assert as_list([1, 2]) == [1, 2]


def test_vm_record_in_51_shape() -> None:
    # ConvertTo-HvRecord's fields (Name, Id, State, Notes, MemoryStartup, CreationTime,
    # Generation, Path) as Windows PowerShell 5.1 writes them when not stringified: the state
    # as an integer, the date as /Date(ms)/.
    vm = parse_vm(
        {
            "Name": "p-001",
            "Id": VM_ID,
            "State": 6,
            "Notes": "made by hvkube\r\n" + owner_mark("a" * 32),
            "MemoryStartup": 4096 * 1024 * 1024,
            "CreationTime": "/Date(1326441600000)/",
            "Generation": 2,
            "Path": "D:\\hvkube\\vms\\p-001",
        }
    )
    assert (vm.name, vm.id, vm.owner) == ("p-001", VM_ID.lower(), "a" * 32)
    assert (vm.state, vm.raw_state, vm.memory_mb, vm.checkpoints) == (
        HostState.SAVED,
        "Saved",
        4096,
        [],
    )


def test_ownership_is_read_from_notes_only() -> None:
    base = {"Name": "p-001", "Id": VM_ID, "State": "Off"}
    assert parse_vm(base).owner is None  # no Notes: not hvkube's
    assert parse_vm({**base, "Notes": ""}).owner is None
    assert parse_vm({**base, "Notes": None}).owner is None  # 5.1 writes null for an empty string
    assert parse_vm({**base, "Notes": "someone's VM"}).owner is None
    two = owner_mark("a" * 32) + "\n" + owner_mark("b" * 32)
    assert parse_vm({**base, "Notes": two}).owner is None  # Notes copied by hand: nobody's


def test_bad_records_are_refused() -> None:
    # The host's failure (BackendError, which every step handles), never a bare ValueError.
    with pytest.raises(BackendError, match="not a VM record"):
        parse_vm({"State": "Running"})
    with pytest.raises(BackendError):
        parse_vm("Running")  # type: ignore[arg-type]
    # A record without the hypervisor's id cannot be addressed: refused, never guessed.
    for bad_id in ({}, {"Id": ""}, {"Id": None}, {"Id": 7}):
        with pytest.raises(BackendError):
            parse_vm({"Name": "a-001", "State": "Running", **bad_id})
    # An uptime that is no duration, from a host or a guest's integration services.
    with pytest.raises(BackendError):
        parse_vm({"Name": "a-001", "Id": "x", "State": "Running", "Uptime": "soon"})


def test_reported_names_and_states_are_bounded() -> None:
    vm = parse_vm(
        {"Name": "n" * 100_000, "Id": "I" * 1000, "State": "S" * 5000, "Checkpoints": ["c" * 9000]}
    )
    assert len(vm.name) <= MAX_NAME_CHARS and len(vm.id) <= 64
    assert len(vm.raw_state) <= 64 and len(vm.checkpoints[0]) <= MAX_NAME_CHARS


def test_ipv4_is_preferred_over_ipv6_and_apipa() -> None:
    assert pick_ipv4(["fe80::1", "169.254.3.4", "10.0.0.7", "10.0.0.8"]) == "10.0.0.7"
    assert pick_ipv4("172.20.0.5") == "172.20.0.5"
    assert pick_ipv4(["fe80::1"]) is None
    assert pick_ipv4(None) is None
    assert pick_ipv4(["999.1.1.1", "1.2.3"]) is None


@pytest.mark.parametrize(
    "reported",
    [
        "172.20.0.\u00b2",  # a superscript two: str.isdigit() says yes, int() says no
        "\u0661\u0667\u0662.\u0662\u0660.\u0660.\u0665",  # 172.20.0.5 in Arabic-Indic digits
        "\uff11\uff10.0.0.5",  # fullwidth digits
        "10.0.0.5\x00",
        "10.0.0.5/24",
        "010.0.0.5",  # octal-looking: ambiguous, refused by ipaddress
        "0.0.0.0",
        "224.0.0.1",
        "255.255.255.255",
        "10.0.0." + "5" * 10_000,
        7,
        {"ip": "10.0.0.5"},
    ],
)
def test_hostile_reported_addresses_are_not_addresses(reported: object) -> None:
    assert pick_ipv4([reported]) is None
    assert pick_ipv4([reported, "10.0.0.9"]) == "10.0.0.9"

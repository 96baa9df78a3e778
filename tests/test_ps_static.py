"""The static checks of the Hyper-V PowerShell (tests/ps_static.py), and the scripts they check.

Hyper-V and PowerShell cannot run here, so each rule is shown to fail on a small script that
breaks it, and to pass on the idioms the dispatcher uses; then planted defects in a copy of the
real dispatcher must be caught, and the real scripts must pass.
"""

from __future__ import annotations

from pathlib import Path
from textwrap import dedent

import pytest

from tests import ps_static as ps
from tests.ps_static import HyperVModule, Violation

REPO = Path(__file__).resolve().parent.parent
CORE_SCRIPTS = sorted((REPO / "core").rglob("*.ps1"))
DISPATCHER = REPO / "core" / "backends" / "hyperv" / "dispatcher.ps1"


@pytest.fixture(scope="session")
def module() -> HyperVModule:
    return HyperVModule.load()


@pytest.fixture(scope="session")
def core_violations(module: HyperVModule) -> dict[Path, list[Violation]]:
    """Every core script parsed and checked once for the whole session."""
    return {path: ps.check_file(path, module, str(path.relative_to(REPO))) for path in CORE_SCRIPTS}


def check(source: str, module: HyperVModule) -> list[Violation]:
    return ps.check_script(ps.load_script(dedent(source).strip("\n"), module))


def found(source: str, module: HyperVModule) -> set[tuple[int, str]]:
    """(line, rule) of each violation in source."""
    return {(v.line, v.rule) for v in check(source, module)}


# -- the data the checks rest on ---------------------------------------------------------------


def test_the_module_data_has_the_shapes_the_checks_read(module: HyperVModule) -> None:
    get_vm, set_vm = module.cmdlet("Get-VM"), module.cmdlet("Set-VM")
    assert get_vm is not None and get_vm.all_sets() == {"Name", "Id", "ClusterObject"}
    assert set_vm is not None and ps.ALL_SETS in set_vm.parameters["CheckpointType"].sets
    assert module.enum_for_type("System.Nullable[Microsoft.HyperV.PowerShell.StopAction]") == (
        "StopAction"
    )
    assert set(module.enum_members("CheckpointType")) >= {"Standard", "Production"}


def test_virtual_machine_properties_are_found_under_their_own_name(module: HyperVModule) -> None:
    # The data file files them under VHDMetrics; the loader puts them back.
    for prop in ("State", "Heartbeat", "Uptime", "MemoryAssigned", "ConfigurationLocation"):
        assert module.has_property("VirtualMachine", prop), prop
    assert module.class_for_type("Microsoft.HyperV.PowerShell.VirtualMachine[]") == "VirtualMachine"


def test_every_output_class_and_alias_names_something_in_the_data(module: HyperVModule) -> None:
    for cmdlet, cls in ps.OUTPUT_CLASSES.items():
        assert module.cmdlet(cmdlet) is not None, cmdlet
        assert cls in module.classes, cls
    for alias in ps.CMDLET_ALIASES:
        assert module.cmdlet(alias) is not None, alias


# -- rule: it parses ---------------------------------------------------------------------------


def test_every_core_script_parses(core_violations: dict[Path, list[Violation]]) -> None:
    assert CORE_SCRIPTS, "no .ps1 under core/"
    errors = [v for found in core_violations.values() for v in found if v.rule == ps.PARSE]
    assert not errors, "\n".join(map(str, errors))


def test_a_parse_error_is_reported_with_its_line(module: HyperVModule) -> None:
    source = """
        function Test-It {
            param([string]$Name)
            if ($Name -eq 'x' {
                return 1
            }
        }
    """
    violations = [v for v in check(source, module) if v.rule == ps.PARSE]
    assert violations and min(v.line for v in violations) <= 3


# -- rule: nothing that needs PowerShell 7 -----------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        "$state = $running ? 'Running' : 'Off'",
        "$prefix = $Prefix ?? ''",
        "$prefix ??= ''",
        "$name = $request.data?.Name",
        "$first = ${items}?[0]",
        "Get-Thing && Write-Output done",
        "Get-Thing || Write-Output failed",
        "$ids | ForEach-Object -Parallel { $_ }",
        "function Test-It {\n    process { 1 }\n    clean { 2 }\n}",
        "$data = $line | ConvertFrom-Json -AsHashtable",
    ],
)
def test_powershell_7_syntax_is_flagged(source: str, module: HyperVModule) -> None:
    assert ps.PS7 in {rule for _, rule in found(source, module)}


def test_windows_powershell_5_1_syntax_passes(module: HyperVModule) -> None:
    source = """
        $text = 'is it? yes: ??'
        if ($null -eq $value) { $state = 'Off' } else { $state = 'Running' }
        $names = @($items | Where-Object { $_ } | ForEach-Object { [string]$_ })
        $chosen = $items | ? { $_ } | Select-Object -First 1
        $json = ConvertTo-Json -InputObject @($names) -Depth 4 -Compress
    """
    assert found(source, module) == set()


# -- rule: Hyper-V cmdlets, their parameters and parameter sets --------------------------------


def test_a_cmdlet_the_module_lacks_is_flagged(module: HyperVModule) -> None:
    assert found(r"Hyper-V\Get-VMThing -Name x", module) == {(1, ps.UNKNOWN_CMDLET)}
    assert found("Get-SomethingElse -Whatever 1", module) == set()  # not Hyper-V's


def test_a_misspelled_parameter_is_flagged(module: HyperVModule) -> None:
    violations = check(r"Hyper-V\Restore-VMSnapshot -VMSnaphot $snapshot -Confirm:$false", module)
    assert [(v.rule, "VMSnaphot" in v.message) for v in violations] == [
        (ps.UNKNOWN_PARAMETER, True)
    ]


def test_a_bare_hyperv_cmdlet_is_checked_unless_the_script_defines_it(module: HyperVModule) -> None:
    assert found("Get-VM -Nmae x", module) == {(1, ps.UNKNOWN_PARAMETER)}
    assert found("function Get-VM { param($Nmae) }\nGet-VM -Nmae x", module) == set()


def test_aliases_and_common_parameters_are_accepted(module: HyperVModule) -> None:
    source = r"""
        Hyper-V\Get-VM -VMName $name -ErrorAction Stop
        Hyper-V\Checkpoint-VM -VM $vm -CheckpointName $name -Confirm:$false
        Hyper-V\Restore-VMCheckpoint -VMCheckpoint $snapshot -Confirm:$false -WhatIf
        Hyper-V\Stop-VM -VM $vm -TurnOff -Force -Passthru -ea 0
    """
    assert found(source, module) == set()


def test_a_prefix_is_a_style_error_and_an_ambiguous_one_an_error(module: HyperVModule) -> None:
    violations = check(r"Hyper-V\Set-VM -VM $vm -ProcessorC 2 -Memory 1GB", module)
    assert {v.rule for v in violations} == {ps.PARAMETER_PREFIX, ps.UNKNOWN_PARAMETER}
    assert any("-ProcessorCount" in v.message for v in violations)
    assert any("ambiguous" in v.message for v in violations)


def test_parameters_of_two_parameter_sets_are_flagged(module: HyperVModule) -> None:
    assert found(r"Hyper-V\Get-VM -Id $id -Name $name", module) == {(1, ps.PARAMETER_SET)}
    source = r"Hyper-V\Get-VMSnapshot -VM $vm -VMName $name"
    assert found(source, module) == {(1, ps.PARAMETER_SET)}


def test_parameters_in_all_sets_fit_any_set(module: HyperVModule) -> None:
    source = r"Hyper-V\Set-VM -VM $vm -ProcessorCount 2 -StaticMemory -CheckpointType Standard"
    assert found(source, module) == set()


def test_splatted_keys_are_parameters(module: HyperVModule) -> None:
    source = r"""
        $set = @{ VM = $vm; ProcesorCount = 2 }
        $set['AutomaticCheckpointsEnabled'] = $false
        $set.Notes = 'pool'
        $set['StaticMemroy'] = $true
        Hyper-V\Set-VM @set
    """
    assert found(source, module) == {(1, ps.UNKNOWN_PARAMETER), (4, ps.UNKNOWN_PARAMETER)}


def test_conditional_splat_keys_must_fit_one_set_together(module: HyperVModule) -> None:
    source = r"""
        function New-It {
            param([string]$Name, [string]$Disk)
            $new = @{ Name = $Name; Generation = 2 }
            if ($Disk -ne '') { $new['VHDPath'] = $Disk } else { $new['NewVHDPath'] = 'x.vhdx' }
            Hyper-V\New-VM @new
        }
    """
    assert found(source, module) == {(5, ps.PARAMETER_SET)}


def test_a_splat_that_cannot_be_read_is_flagged(module: HyperVModule) -> None:
    source = r"""
        $set = Get-Settings
        Hyper-V\Set-VM @set
        $other = @{ VM = $vm }
        $other[$key] = 1
        Hyper-V\Set-VM @other
    """
    assert found(source, module) == {(2, ps.SPLAT), (4, ps.SPLAT)}


def test_the_dispatchers_vm_new_idiom_passes(module: HyperVModule) -> None:
    source = r"""
        'vm_new' = {
            param([string]$Name, [string]$DiskPath, [long]$MemoryBytes, [bool]$DynamicMemory,
                  [string]$SwitchName = '', [bool]$EnhancedSession)
            $new = @{ Name = $Name; MemoryStartupBytes = $MemoryBytes; VHDPath = $DiskPath }
            if ($SwitchName -ne '') { $new['SwitchName'] = $SwitchName }
            $vm = Hyper-V\New-VM @new
            $set = @{
                VM                          = $vm
                AutomaticCheckpointsEnabled = $false
                CheckpointType              = 'Standard'
                AutomaticStopAction         = 'Save'
            }
            if ($DynamicMemory) { $set['DynamicMemory'] = $true }
            else { $set['StaticMemory'] = $true }
            if ($EnhancedSession) { $set['EnhancedSessionTransportType'] = 'HvSocket' }
            Hyper-V\Set-VM @set
        }
    """
    assert found("$ops = @{\n" + dedent(source) + "\n}", module) == set()


# -- rule: properties of Hyper-V objects -------------------------------------------------------


def test_a_property_virtual_machine_lacks_is_flagged(module: HyperVModule) -> None:
    source = r"""
        $vm = Hyper-V\Get-VM -Id $Id
        $state = "$($vm.State)"
        $beat = "$($vm.Heartbeat)"
        $up = $vm.Uptime.TotalSeconds
        $ip = $vm.IPAddresses
    """
    violations = check(source, module)
    assert [(v.line, v.rule) for v in violations] == [(5, ps.UNKNOWN_PROPERTY)]
    assert "VirtualMachine" in violations[0].message and "IPAddresses" in violations[0].message


@pytest.mark.parametrize(
    "source",
    [
        "function Test-It {\n"
        "    param([Microsoft.HyperV.PowerShell.VirtualMachine]$VM)\n"
        "    $VM.Nme\n}",
        "function Test-It {\n"
        "    param([PSTypeName('Microsoft.HyperV.PowerShell.VirtualMachine')]$VM)\n"
        "    $VM.Nme\n}",
        "function Get-It {\n"
        "    [OutputType([Microsoft.HyperV.PowerShell.VirtualMachine])]\n"
        "    param()\n}\n$vm = Get-It\n$vm.Nme",
        "function Find-It {\n"
        "    param([guid]$Id)\n"
        "    $found = @(Hyper-V\\Get-VM | Where-Object { $_.Id -eq $Id })\n"
        "    if ($found.Count -eq 0) { return $null }\n"
        "    return $found[0]\n}\n$vm = Find-It -Id $id\n$vm.Nme",
        "foreach ($vm in @(Hyper-V\\Get-VM)) { $vm.Nme }",
        "Hyper-V\\Get-VM | Where-Object { $_.Nme -eq 'x' }",
    ],
    ids=["typed", "pstypename", "outputtype", "inferred-return", "foreach", "pipeline-item"],
)
def test_a_value_known_to_be_a_vm_has_its_properties_checked(
    source: str, module: HyperVModule
) -> None:
    violations = check(source, module)
    assert [v.rule for v in violations] == [ps.UNKNOWN_PROPERTY]
    assert "'Nme'" in violations[0].message


def test_other_hyperv_objects_are_checked_through_pipelines(module: HyperVModule) -> None:
    source = r"""
        $addresses = @(Hyper-V\Get-VMNetworkAdapter -VM $vm | ForEach-Object { @($_.IPAddress) })
        $service = Hyper-V\Get-VMIntegrationService -VM $vm |
            Where-Object { $_.Id -like '*x' } | Select-Object -First 1
        $status = "$($service.PrimaryOperationalStatus)"
        $enabled = $service.IsEnabled
        $vmhost = Hyper-V\Get-VMHost
        $memory = $vmhost.MemoryCapacity
        $disks = @(Hyper-V\Get-VMHardDiskDrive -VM $vm | ForEach-Object { $_.Path })
    """
    assert found(source, module) == {(1, ps.UNKNOWN_PROPERTY), (5, ps.UNKNOWN_PROPERTY)}


def test_values_of_unknown_type_are_not_judged(module: HyperVModule) -> None:
    source = r"""
        $request = ConvertFrom-Json -InputObject $line
        $x = $request.data.Anything
        $names = Hyper-V\Get-VM | Select-Object -Property Name
        $names.Whatever
    """
    assert found(source, module) == set()


# -- rule: enum values -------------------------------------------------------------------------


def test_a_bad_enum_argument_is_flagged(module: HyperVModule) -> None:
    source = r"""
        Hyper-V\Set-VM -VM $vm -CheckpointType Standard -AutomaticStopAction Save
        Hyper-V\Set-VM -VM $vm -CheckpointType Standart
        Hyper-V\Set-VM -VM $vm -AutomaticStopAction:'Suspend'
        $set = @{ VM = $vm; AutomaticStopAction = 'Sav' }
        $set['EnhancedSessionTransportType'] = 'HvSockets'
        Hyper-V\Set-VM @set
    """
    assert found(source, module) == {
        (2, ps.ENUM_VALUE),
        (3, ps.ENUM_VALUE),
        (4, ps.ENUM_VALUE),
        (5, ps.ENUM_VALUE),
    }


def test_a_bad_enum_value_in_a_comparison_is_flagged(module: HyperVModule) -> None:
    source = r"""
        $vm = Hyper-V\Get-VM -Id $Id
        if ("$($vm.State)" -eq 'Off' -or $vm.State -ne 'Saved') { }
        if ("$($vm.State)" -eq 'Stopped') { }
        if ($vm.Heartbeat -eq 'OK') { }
        if ([string]$vm.State -in 'Running', 'Pased') { }
        if ("$($vm.State)" -ceq 'running') { }
        $off = [Microsoft.HyperV.PowerShell.VMState]::Of
        switch ("$($vm.State)") {
            'Running' { 1 }
            'Hibernating' { 2 }
            default { 3 }
        }
    """
    assert found(source, module) == {
        (3, ps.ENUM_VALUE),
        (4, ps.ENUM_VALUE),
        (5, ps.ENUM_VALUE),
        (6, ps.ENUM_VALUE),
        (7, ps.ENUM_VALUE),
        (10, ps.ENUM_VALUE),
    }


# -- rule: .Count, .Length and [i] under Set-StrictMode ----------------------------------------

RESTORE_BUG = r"""
    function Get-HvCheckpoints {
        param($VM, [string]$Checkpoint)
        return @(Hyper-V\Get-VMSnapshot -VM $VM | Where-Object { $_.Name -ceq $Checkpoint } |
            Sort-Object CreationTime)
    }
    function Restore-It {
        param([string]$Name, [string]$Checkpoint)
        $vm = Hyper-V\Get-VM -Name $Name
        $found = Get-HvCheckpoints -VM $vm -Checkpoint $Checkpoint
        if ($found.Count -eq 0) { throw 'no checkpoint' }
        Hyper-V\Restore-VMSnapshot -VMSnapshot $found[-1] -Confirm:$false
    }
"""


def test_the_restore_bug_is_flagged(module: HyperVModule) -> None:
    violations = check(RESTORE_BUG, module)
    assert [(v.line, v.rule) for v in violations] == [(10, ps.STRICT_COUNT), (11, ps.STRICT_COUNT)]
    assert "line 9" in violations[0].message


def test_the_restore_bug_fixed_at_the_call_site_passes(module: HyperVModule) -> None:
    fixed = RESTORE_BUG.replace("$found = Get-HvCheckpoints", "$found = @(Get-HvCheckpoints")
    fixed = fixed.replace("-Checkpoint $Checkpoint\n", "-Checkpoint $Checkpoint)\n")
    assert found(fixed, module) == set()


@pytest.mark.parametrize(
    "assignment",
    [
        "$x = @(Get-Thing)",
        "$x = , @(Get-Thing)",
        "[array]$x = Get-Thing",
        "[object[]]$x = Get-Thing",
        "$x = 'a', 'b'",
        "$x = @{ a = 1 }",
        "$x = [ordered]@{ a = 1 }",
        "$y = @(Get-Thing)\n$x = $y",
    ],
)
def test_values_that_are_surely_collections_may_be_counted(
    assignment: str, module: HyperVModule
) -> None:
    assert found(f"{assignment}\n$n = $x.Count\n$first = $x[0]", module) == set()


@pytest.mark.parametrize(
    ("source", "line"),
    [
        ("$x = Get-Thing\n$x.Count", 2),
        ("$x = Get-Thing | Where-Object { $_ }\n$x[0]", 2),
        ("$n = (Get-Thing).Count", 1),
        ("function Test-It {\n    param($Items)\n    $Items.Count\n}", 3),
        ("foreach ($item in $list) { $item.Length }", 1),
        ("$x = $null\n$x.Count", 2),
        ("param([string]$Name)\n$Name.Count", 2),
        ("$n = $never.Count", 1),
    ],
)
def test_values_that_may_be_single_are_flagged(
    source: str, line: int, module: HyperVModule
) -> None:
    assert found(source, module) == {(line, ps.STRICT_COUNT)}


def test_automatic_variables_and_strings_are_not_flagged(module: HyperVModule) -> None:
    source = r"""
        param([string]$Name)
        if ($Name -match '^(\d+)$') { $n = [int]$Matches[1] }
        $edition = $PSVersionTable['PSEdition']
        $long = $Name.Length -gt 3
    """
    assert found(source, module) == set()


# -- planted defects in a copy of the real dispatcher ------------------------------------------

PLANTED = {
    "restore-bug": (RESTORE_BUG, ps.STRICT_COUNT),
    "misspelled-parameter": (
        r"""
        function Invoke-Planted {
            param($Snapshot)
            Hyper-V\Restore-VMSnapshot -VMSnaphot $Snapshot -Confirm:$false
        }
        """,
        ps.UNKNOWN_PARAMETER,
    ),
    "two-parameter-sets": (
        r"""
        function Invoke-Planted {
            param($VM, [string]$Name)
            return @(Hyper-V\Get-VMSnapshot -VM $VM -VMName $Name)
        }
        """,
        ps.PARAMETER_SET,
    ),
    "missing-property": (
        r"""
        function Invoke-Planted {
            param([guid]$Id)
            $vm = Hyper-V\Get-VM -Id $Id
            return [string]$vm.IPAddresses
        }
        """,
        ps.UNKNOWN_PROPERTY,
    ),
    "null-conditional": (
        r"""
        function Invoke-Planted {
            param($Request)
            return $Request.data?.Name
        }
        """,
        ps.PS7,
    ),
    "null-coalescing": (
        r"""
        function Invoke-Planted {
            param($Prefix)
            return $Prefix ?? ''
        }
        """,
        ps.PS7,
    ),
    "bad-enum-argument": (
        r"""
        function Invoke-Planted {
            param($VM)
            Hyper-V\Set-VM -VM $VM -AutomaticStopAction Suspend
        }
        """,
        ps.ENUM_VALUE,
    ),
    "bad-enum-comparison": (
        r"""
        function Invoke-Planted {
            param([guid]$Id)
            $vm = Hyper-V\Get-VM -Id $Id
            return ("$($vm.State)" -eq 'Stopped')
        }
        """,
        ps.ENUM_VALUE,
    ),
}


def plant(snippet: str, tmp_path: Path) -> tuple[Path, int]:
    """A copy of the dispatcher with snippet appended; the first line of the snippet."""
    original = DISPATCHER.read_text(encoding="utf-8").rstrip("\n")
    copy = tmp_path / "dispatcher.ps1"
    copy.write_text(original + "\n\n" + dedent(snippet).strip("\n") + "\n", encoding="utf-8")
    return copy, original.count("\n") + 3


@pytest.mark.parametrize(("snippet", "rule"), PLANTED.values(), ids=PLANTED.keys())
def test_a_defect_planted_in_the_dispatcher_is_caught(
    snippet: str, rule: str, module: HyperVModule, tmp_path: Path
) -> None:
    copy, first = plant(snippet, tmp_path)
    planted = [v for v in ps.check_file(copy, module) if v.line >= first]
    assert planted, f"nothing found in the planted lines from {first}"
    assert {v.rule for v in planted} == {rule}, "\n".join(map(str, planted))


def test_the_planted_code_done_right_adds_nothing(module: HyperVModule, tmp_path: Path) -> None:
    right = r"""
        function Invoke-Planted {
            param([guid]$Id, $Snapshot)
            $vm = Hyper-V\Get-VM -Id $Id
            $snapshots = @(Hyper-V\Get-VMSnapshot -VM $vm | Where-Object { $_.Name -ceq 'clean' })
            if ($snapshots.Count -eq 0 -or "$($vm.State)" -eq 'Off') { return $null }
            Hyper-V\Set-VM -VM $vm -AutomaticStopAction Save
            Hyper-V\Restore-VMSnapshot -VMSnapshot $snapshots[-1] -Confirm:$false
        }
    """
    copy, first = plant(right, tmp_path)
    assert [v for v in ps.check_file(copy, module) if v.line >= first] == []


# -- the real scripts --------------------------------------------------------------------------


def test_every_core_script_passes_every_check(core_violations: dict[Path, list[Violation]]) -> None:
    violations = [v for found in core_violations.values() for v in found]
    assert not violations, "\n".join(map(str, violations))

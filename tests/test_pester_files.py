"""The Pester tests of the dispatcher and their Hyper-V stand-in, read without PowerShell.

tests/pester runs only on Windows (.github/workflows/windows.yml, on Windows PowerShell 5.1
and PowerShell 7). Here the files are parsed with the tree-sitter PowerShell grammar
(tests/ps_static.py) and held to what 5.1 accepts; the stand-in is held to the Hyper-V module
as published (tests/data/hyperv-module.json): it defines every Hyper-V cmdlet the dispatcher
calls, with real parameter names, sets and aliases, returns objects with real property names,
and compiles the real enums; and the workflow runs the tests on both PowerShells.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from tree_sitter import Node

from tests import ps_static as ps
from tests.ps_static import HyperVModule

REPO = Path(__file__).resolve().parent.parent
PESTER = REPO / "tests" / "pester"
TESTS = PESTER / "Dispatcher.Tests.ps1"
HYPERV_STUB = PESTER / "stub" / "Hyper-V" / "Hyper-V.psm1"
CIM_STUB = PESTER / "stub" / "HvkubeCimStub" / "HvkubeCimStub.psm1"
DISPATCHER = REPO / "core" / "backends" / "hyperv" / "dispatcher.ps1"
WORKFLOW = REPO / ".github" / "workflows" / "windows.yml"
POWERSHELL_FILES = sorted(
    p for p in PESTER.rglob("*") if p.suffix.lower() in {".ps1", ".psm1", ".psd1"}
)
CIM_COMMANDS = {"get-ciminstance", "get-cimassociatedinstance", "invoke-cimmethod"}
# Type names whose short name is a class of the module data.
OBJECT_NAMESPACES = ("Microsoft.HyperV.PowerShell.", "Microsoft.Vhd.PowerShell.")


@pytest.fixture(scope="module")
def module() -> HyperVModule:
    return HyperVModule.load()


@pytest.fixture(scope="module")
def module_data() -> dict[str, Any]:
    return json.loads(ps.MODULE_JSON.read_text(encoding="utf-8"))


def load(path: Path, module: HyperVModule) -> ps.Script:
    return ps.load_script(path.read_text(encoding="utf-8"), module, str(path.relative_to(REPO)))


def rel(path: Path) -> str:
    return str(path.relative_to(REPO))


# -- the files parse, as Windows PowerShell 5.1 reads them --------------------------------------


def test_the_pester_files_are_there() -> None:
    assert {TESTS, HYPERV_STUB, CIM_STUB} <= set(POWERSHELL_FILES)
    # Invoke-Pester runs *.Tests.ps1; the stand-ins are modules it must not run.
    assert [p for p in POWERSHELL_FILES if p.name.endswith(".Tests.ps1")] == [TESTS]


@pytest.mark.parametrize("path", POWERSHELL_FILES, ids=rel)
def test_every_pester_file_parses(path: Path, module: HyperVModule) -> None:
    script = load(path, module)
    broken = [
        f"{rel(path)}:{ps.line(node)}: {'missing' if node.is_missing else 'error'} "
        f"{ps.text(node)[:60]!r}"
        for node in ps.walk(script.root)
        if node.is_error or node.is_missing
    ]
    assert not broken, "\n".join(broken)


@pytest.mark.parametrize("path", POWERSHELL_FILES, ids=rel)
def test_no_powershell_7_only_syntax(path: Path, module: HyperVModule) -> None:
    script = load(path, module)
    found = ps.check_syntax(script) + ps.check_ps7_constructs(script)
    assert not found, "\n".join(map(str, found))


@pytest.mark.parametrize("path", POWERSHELL_FILES, ids=rel)
def test_files_are_ascii(path: Path) -> None:
    # Windows PowerShell 5.1 reads a file without a byte order mark as ANSI: a non-ASCII
    # character in a string would change. Write it with [char]0x00E9 and the like.
    data = path.read_bytes()
    assert data.isascii(), f"{rel(path)} has a non-ASCII byte"


# -- the stand-in has the real cmdlets' names, parameters and objects ---------------------------


@dataclass(frozen=True)
class DeclaredParameter:
    name: str
    aliases: tuple[str, ...]
    sets: tuple[str, ...]  # () when in every set
    mandatory: bool
    line: int


def functions(script: ps.Script) -> dict[str, Node]:
    return {
        ps.text(next(c for c in node.children if c.type == "function_name")): node
        for node in script.nodes("function_statement")
    }


def declared_parameters(function: Node) -> list[DeclaredParameter]:
    body = next(c for c in function.children if c.type == "script_block")
    block = next((c for c in body.children if c.type == "param_block"), None)
    listing = (
        next((c for c in block.children if c.type == "parameter_list"), None) if block else None
    )
    found = []
    for parameter in listing.children if listing is not None else []:
        if parameter.type != "script_parameter":
            continue
        variable = next(c for c in parameter.children if c.type == "variable")
        aliases: list[str] = []
        sets: list[str] = []
        mandatory = False
        for attribute in ps.walk(parameter):
            if attribute.type != "attribute":
                continue
            name = next((c for c in attribute.children if c.type == "attribute_name"), None)
            arguments = next(
                (c for c in attribute.children if c.type == "attribute_arguments"), None
            )
            if name is None or arguments is None:
                continue
            items = [c for c in arguments.children if c.type == "attribute_argument"]
            if ps.text(name).lower() == "alias":
                aliases += [ps.literal_string(item.children[0]) or "" for item in items]
            elif ps.text(name).lower() == "parameter":
                for item in items:
                    key = ps.text(item.children[0]).lower()
                    value = ps.text(item.children[-1])
                    if key == "parametersetname":
                        sets.append(ps.literal_string(item.children[-1]) or value)
                    elif key == "mandatory":
                        mandatory = value.lower() == "$true"
        found.append(
            DeclaredParameter(
                ps.variable_name(variable),
                tuple(aliases),
                tuple(sets),
                mandatory,
                ps.line(variable),
            )
        )
    return found


def exported(script: ps.Script) -> set[str]:
    """The names in the module's Export-ModuleMember -Function list."""
    for command in script.nodes("command"):
        if (ps.command_name(command) or "").lower() == "export-modulemember":
            return set(re.findall(r"'([A-Za-z-]+)'", ps.text(command)))
    return set()


def called_commands(script: ps.Script) -> set[str]:
    return {ps.command_name(c) or "" for c in script.nodes("command")}


def test_the_stand_in_defines_every_hyperv_cmdlet_the_dispatcher_calls(
    module: HyperVModule,
) -> None:
    calls = called_commands(load(DISPATCHER, module))
    wanted = {name.split("\\", 1)[1] for name in calls if name.lower().startswith("hyper-v\\")}
    stub = load(HYPERV_STUB, module)
    defined = {name for name in functions(stub) if module.cmdlet(name) is not None}
    assert wanted, "the dispatcher calls no Hyper-V\\ cmdlet?"
    assert wanted <= defined, f"no stand-in for {sorted(wanted - defined)}"
    assert exported(stub) == defined, "Export-ModuleMember lists the stand-in cmdlets"


def test_the_cim_stand_in_defines_every_cim_cmdlet_the_dispatcher_calls(
    module: HyperVModule,
) -> None:
    used = {name.lower() for name in called_commands(load(DISPATCHER, module))}
    assert used & CIM_COMMANDS, "the dispatcher calls no CIM cmdlet?"
    stub = load(CIM_STUB, module)
    defined = {name.lower() for name in functions(stub)}
    wmi_commands = {name for name in used if "-cim" in name}
    assert wmi_commands <= defined, f"no stand-in for {sorted(wmi_commands - defined)}"
    assert {name.lower() for name in exported(stub)} == CIM_COMMANDS
    # The Hyper-V stand-in loads it, since the dispatcher never does.
    assert "HvkubeCimStub.psm1" in HYPERV_STUB.read_text(encoding="utf-8")


def test_stand_in_parameters_are_the_real_cmdlets(
    module: HyperVModule, module_data: dict[str, Any]
) -> None:
    stub = load(HYPERV_STUB, module)
    problems = []
    for name, function in functions(stub).items():
        cmdlet = module.cmdlet(name)
        if cmdlet is None:
            continue  # a helper of the stand-in
        real = {p.lower(): p for p in cmdlet.parameters}
        mandatory_in = {
            p: set(data["mandatory_in"])
            for p, data in module_data["cmdlets"][cmdlet.name]["parameters"].items()
        }
        for declared in declared_parameters(function):
            where = f"{rel(HYPERV_STUB)}:{declared.line}: {name} -{declared.name}"
            if declared.name not in real:
                problems.append(f"{where}: {name} has no such parameter")
                continue
            parameter = cmdlet.parameters[real[declared.name]]
            if {a.lower() for a in declared.aliases} != {a.lower() for a in parameter.aliases}:
                problems.append(f"{where}: aliases {declared.aliases} != {parameter.aliases}")
            sets = set(declared.sets) or {ps.ALL_SETS}
            if not sets <= parameter.sets:
                problems.append(f"{where}: sets {sorted(sets)} not in {sorted(parameter.sets)}")
            if declared.mandatory and not sets <= mandatory_in[parameter.name]:
                problems.append(f"{where}: mandatory where the real one is not")
    assert not problems, "\n".join(problems)


def typed_objects(script: ps.Script) -> list[tuple[str, list[tuple[str, int]]]]:
    """(type name, [(key, line)]) of every @{...} with a PSTypeName key."""
    found = []
    for literal in script.nodes("hash_literal_expression"):
        body = next((c for c in literal.children if c.type == "hash_literal_body"), None)
        entries = [c for c in body.children if c.type == "hash_entry"] if body else []
        keys = {(ps.literal_string(e.children[0]) or ps.text(e.children[0])): e for e in entries}
        type_entry = keys.pop("PSTypeName", None)
        if type_entry is None:
            continue
        type_name = ps.literal_string(type_entry.children[2]) or ""
        found.append((type_name, [(key, ps.line(entry)) for key, entry in keys.items()]))
    return found


def test_stand_in_objects_have_the_real_property_names(module: HyperVModule) -> None:
    objects = typed_objects(load(HYPERV_STUB, module))
    classes = set()
    problems = []
    for type_name, keys in objects:
        namespace = next((n for n in OBJECT_NAMESPACES if type_name.startswith(n)), None)
        assert namespace is not None, f"unexpected PSTypeName {type_name!r}"
        cls = type_name[len(namespace) :]
        assert cls in module.classes, f"{type_name}: no class {cls} in the module data"
        classes.add(cls)
        problems += [
            f"{rel(HYPERV_STUB)}:{line}: {cls} has no property {key!r}"
            for key, line in keys
            if not module.has_property(cls, key)
        ]
    assert not problems, "\n".join(problems)
    # The objects the dispatcher reads.
    assert {
        "VirtualMachine",
        "VMSnapshot",
        "VMNetworkAdapter",
        "VMIntegrationComponent",
        "VMHost",
    } <= classes


def test_stand_in_enums_have_the_real_members_and_values(module: HyperVModule) -> None:
    source = HYPERV_STUB.read_text(encoding="utf-8")
    enums = re.findall(r"public enum (\w+)\s*\{([^}]*)\}", source)
    assert {name for name, _ in enums} >= {"VMState", "VMIntegrationComponentOperationalStatus"}
    for name, body in enums:
        members = {m: int(v) for m, v in re.findall(r"(\w+)\s*=\s*(\d+)", body)}
        assert members == module.enum_members(name), name


# -- the workflow -------------------------------------------------------------------------------


def test_the_workflow_runs_pester_on_both_windows_powershells() -> None:
    workflow = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    assert {"push", "pull_request"} <= set(triggers)
    (job,) = workflow["jobs"].values()
    assert job["runs-on"] == "windows-latest"
    assert set(job["strategy"]["matrix"]["shell"]) == {"powershell", "pwsh"}
    runs = [step for step in job["steps"] if "run" in step]
    assert runs and all(step.get("shell") == "${{ matrix.shell }}" for step in runs)
    script = "\n".join(step["run"] for step in runs)
    assert re.search(r"Install-Module Pester -MinimumVersion 5\.5\b.*-Force", script)
    assert re.search(r"Invoke-Pester tests/pester\b.*-CI", script)


def test_the_docs_say_how_to_run_them() -> None:
    docs = (REPO / "docs" / "hyperv.md").read_text(encoding="utf-8")
    assert "Invoke-Pester tests/pester" in docs
    assert "tests/test_pester_files.py" in docs

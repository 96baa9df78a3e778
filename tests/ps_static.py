"""Static checks of the PowerShell scripts that drive Hyper-V, which cannot run on this machine.

A script is parsed with the tree-sitter PowerShell grammar and checked against the Hyper-V
module as published (tests/data/hyperv-module.json: cmdlets with their parameters and parameter
sets, object classes with their properties, enums with their members) and against what Windows
PowerShell 5.1 accepts under ``Set-StrictMode -Version 2``. ``check_script`` runs every check and
returns the violations, each with its line.

The analysis is deliberately simple: variables are tracked per scope (a function body or a
script block, as PowerShell scopes them), without following the order of statements. Where it
cannot tell what a value is, the property and enum checks stay silent, while the strict-mode
``.Count`` check complains (an unproven array is the bug it looks for).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

import tree_sitter_powershell
from tree_sitter import Language, Node, Parser, Tree

MODULE_JSON = Path(__file__).resolve().parent / "data" / "hyperv-module.json"

# Rule names, as they appear in violations.
PARSE = "parse"
PS7 = "ps7-syntax"
UNKNOWN_CMDLET = "unknown-cmdlet"
UNKNOWN_PARAMETER = "unknown-parameter"
PARAMETER_PREFIX = "parameter-prefix"
PARAMETER_SET = "parameter-set"
SPLAT = "splat"
UNKNOWN_PROPERTY = "unknown-property"
ENUM_VALUE = "enum-value"
STRICT_COUNT = "strict-count"


@dataclass(frozen=True, order=True)
class Violation:
    path: str
    line: int
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: [{self.rule}] {self.message}"


# -- the Hyper-V module ------------------------------------------------------------------------

ALL_SETS = "__AllParameterSets"
HYPERV_NAMESPACE = "microsoft.hyperv.powershell."

# The parameters every cmdlet has, with their aliases and whether they are switches. -WhatIf and
# -Confirm are accepted on every Hyper-V cmdlet: the data does not say which support them.
COMMON_PARAMETERS: dict[str, tuple[tuple[str, ...], bool]] = {
    "Debug": (("db",), True),
    "ErrorAction": (("ea",), False),
    "ErrorVariable": (("ev",), False),
    "InformationAction": (("infa",), False),
    "InformationVariable": (("iv",), False),
    "OutBuffer": (("ob",), False),
    "OutVariable": (("ov",), False),
    "PipelineVariable": (("pv",), False),
    "Verbose": (("vb",), True),
    "WarningAction": (("wa",), False),
    "WarningVariable": (("wv",), False),
    "WhatIf": (("wi",), True),
    "Confirm": (("cf",), True),
}

# What the cmdlets whose results the script reads return; the data has no output types.
OUTPUT_CLASSES: dict[str, str] = {
    "get-vm": "VirtualMachine",
    "new-vm": "VirtualMachine",
    "get-vmsnapshot": "VMSnapshot",
    "get-vmhost": "VMHost",
    "get-vmnetworkadapter": "VMNetworkAdapter",
    "get-vmintegrationservice": "VMIntegrationComponent",
    "get-vmharddiskdrive": "HardDiskDrive",
    "get-vhd": "VirtualHardDisk",
    "get-vmswitch": "VMSwitch",
}

# The checkpoint names of the snapshot cmdlets, which the data lists under their snapshot names.
CMDLET_ALIASES: dict[str, str] = {
    f"{verb}-vmcheckpoint": f"{verb}-vmsnapshot"
    for verb in ("get", "remove", "restore", "rename", "export")
}

# Members PowerShell gives every object.
INTRINSIC_MEMBERS = frozenset({"psobject", "pstypenames", "psbase", "psadapted", "psextended"})


@dataclass(frozen=True)
class Parameter:
    name: str
    aliases: tuple[str, ...]
    sets: frozenset[str]
    type: str
    common: bool = False

    @property
    def is_switch(self) -> bool:
        return self.type.lower() in {"switch", "switchparameter"}


@dataclass(frozen=True)
class Cmdlet:
    name: str
    default_set: str
    parameters: dict[str, Parameter]

    def all_sets(self) -> frozenset[str]:
        sets = {s for p in self.parameters.values() for s in p.sets} | {self.default_set}
        return frozenset(sets - {ALL_SETS}) or frozenset({ALL_SETS})


class Match(Enum):
    EXACT = "exact"
    ALIAS = "alias"
    PREFIX = "prefix"
    AMBIGUOUS = "ambiguous"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Resolution:
    match: Match
    candidates: tuple[Parameter, ...] = ()

    @property
    def parameter(self) -> Parameter | None:
        return self.candidates[0] if len(self.candidates) == 1 else None


_COMMON = tuple(
    Parameter(name, aliases, frozenset({ALL_SETS}), "switch" if switch else "object", common=True)
    for name, (aliases, switch) in COMMON_PARAMETERS.items()
)


class HyperVModule:
    """The cmdlets, classes and enums of the Hyper-V module, looked up case-insensitively."""

    def __init__(self, data: dict) -> None:
        self.cmdlets = {name.lower(): _cmdlet(name, c) for name, c in data["cmdlets"].items()}
        self.classes = {
            name: {prop.lower(): (prop, type_) for prop, type_ in props.items()}
            for name, props in _repair_classes(data["classes"]).items()
        }
        self.enums = {
            name.lower(): (name, dict(members)) for name, members in data["enums"].items()
        }

    @classmethod
    def load(cls, path: Path = MODULE_JSON) -> HyperVModule:
        return cls(json.loads(path.read_text(encoding="utf-8")))

    def cmdlet(self, name: str) -> Cmdlet | None:
        key = name.lower()
        return self.cmdlets.get(CMDLET_ALIASES.get(key, key))

    def resolve(self, cmdlet: Cmdlet, written: str) -> Resolution:
        """Bind a parameter name as PowerShell does: full name or alias, else a unique prefix."""
        wanted = written.lower()
        everything = (*cmdlet.parameters.values(), *_COMMON)
        for parameter in everything:
            if parameter.name.lower() == wanted:
                return Resolution(Match.EXACT, (parameter,))
        for parameter in everything:
            if wanted in (a.lower() for a in parameter.aliases):
                return Resolution(Match.ALIAS, (parameter,))
        found = tuple(
            p for p in everything if any(n.lower().startswith(wanted) for n in (p.name, *p.aliases))
        )
        if not found:
            return Resolution(Match.UNKNOWN)
        return Resolution(Match.PREFIX if len(found) == 1 else Match.AMBIGUOUS, found)

    def class_for_type(self, type_text: str) -> str | None:
        """The class a .NET type name denotes, e.g. Microsoft.HyperV.PowerShell.VMSnapshot[]."""
        short = _strip_type(type_text)
        if short is None:
            return None
        return next((c for c in self.classes if c.lower() == short.lower()), None)

    def enum_for_type(self, type_text: str) -> str | None:
        """The enum a parameter or property type denotes, through Nullable; not an array."""
        if type_text.rstrip().endswith("[]"):
            return None
        short = _strip_type(type_text, namespaced_only=False)
        if short is None or short.lower() not in self.enums:
            return None
        return self.enums[short.lower()][0]

    def enum_members(self, enum: str) -> dict[str, int]:
        return self.enums[enum.lower()][1]

    def property_type(self, cls: str, prop: str) -> str | None:
        found = self.classes.get(cls, {}).get(prop.lower())
        return found[1] if found else None

    def has_property(self, cls: str, prop: str) -> bool:
        return prop.lower() in self.classes.get(cls, {})


def _cmdlet(name: str, data: dict) -> Cmdlet:
    parameters = {
        p_name: Parameter(p_name, tuple(p["aliases"]), frozenset(p["sets"]), p["type"] or "")
        for p_name, p in data["parameters"].items()
    }
    return Cmdlet(name, data["default_set"], parameters)


def _repair_classes(classes: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    # The generator of hyperv-module.json gave VirtualMachine's properties to VHDMetrics, an
    # empty stub declared just before VirtualMachine in the source stubs, and lost the name
    # VirtualMachine. Put them back under their own name.
    repaired = dict(classes)
    stub = repaired.get("VHDMetrics", {})
    if "VirtualMachine" not in repaired and {"State", "Heartbeat", "Uptime"} <= stub.keys():
        repaired["VirtualMachine"] = repaired.pop("VHDMetrics")
    return repaired


def _strip_type(type_text: str, namespaced_only: bool = True) -> str | None:
    """VMState from System.Nullable[Microsoft.HyperV.PowerShell.VMState], Nullable<VMState>."""
    name = type_text.strip()
    for opening, closing in (("system.nullable[", "]"), ("nullable<", ">")):
        if name.lower().startswith(opening) and name.endswith(closing):
            name = name[len(opening) : -len(closing)]
    name = name.removesuffix("[]")
    if name.lower().startswith(HYPERV_NAMESPACE):
        return name[len(HYPERV_NAMESPACE) :]
    return None if namespaced_only else name.rsplit(".", 1)[-1]


# -- the syntax tree ---------------------------------------------------------------------------

_PARSER = Parser(Language(tree_sitter_powershell.language()))

# Nodes that, with a single child, only wrap it (the grammar's precedence levels).
_WRAPPERS = frozenset(
    {
        "pipeline",
        "pipeline_chain",
        "statement_list",
        "logical_expression",
        "bitwise_expression",
        "comparison_expression",
        "additive_expression",
        "multiplicative_expression",
        "format_expression",
        "range_expression",
        "array_literal_expression",
        "unary_expression",
        "left_assignment_expression",
        "key_expression",
        "argument_expression",
        "logical_argument_expression",
        "bitwise_argument_expression",
        "comparison_argument_expression",
        "additive_argument_expression",
        "multiplicative_argument_expression",
        "format_argument_expression",
        "range_argument_expression",
    }
)
_SCOPES = frozenset({"program", "script_block"})


def parse(source: str) -> Tree:
    return _PARSER.parse(source.encode("utf-8"))


def walk(node: Node) -> Iterator[Node]:
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(reversed(current.children))


def text(node: Node) -> str:
    return (node.text or b"").decode("utf-8")


def line(node: Node) -> int:
    return node.start_point.row + 1


def parts(node: Node) -> list[Node]:
    return [c for c in node.children if c.type != "comment"]


def unwrap(node: Node) -> Node:
    while node.type in _WRAPPERS and len(parts(node)) == 1:
        node = parts(node)[0]
    return node


def scope_of(node: Node) -> Node:
    current = node.parent
    while current is not None and current.type not in _SCOPES:
        current = current.parent
    assert current is not None, "every node is inside the program"
    return current


def variable_name(node: Node) -> str:
    """$Name, ${Name}, @Name and $script:Name all name 'name' (PowerShell ignores case)."""
    name = text(node).lstrip("$@")
    if name.startswith("{") and name.endswith("}"):
        name = name[1:-1]
    for prefix in ("script:", "global:", "local:", "private:", "using:"):
        if name.lower().startswith(prefix):
            name = name[len(prefix) :]
    return name.lower()


def is_null(node: Node) -> bool:
    node = unwrap(node)
    return node.type == "variable" and variable_name(node) == "null"


def literal_string(node: Node) -> str | None:
    """The value of a constant string: 'x', "x" without expansions, or a bare word."""
    node = unwrap(node)
    if node.type == "string_literal":
        return literal_string(node.children[0])
    if node.type == "switch_clause_condition" and node.children:
        return literal_string(node.children[0])
    if node.type == "generic_token" and node.named_child_count:
        return None  # a bare word with a $variable in it
    word = text(node)
    if node.type == "verbatim_string_characters" or word[:1] == word[-1:] == "'":
        return word[1:-1].replace("''", "'")
    if node.type == "expandable_string_literal" or word[:1] == word[-1:] == '"':
        constant = node.named_child_count == 0 and not any(c in word for c in "$`")
        return word[1:-1] if constant else None
    if node.type in {"generic_token", "simple_name", "switch_clause_condition"}:
        return word
    return None


def literal_list(node: Node) -> list[Node]:
    """The elements of `a, b, c`, or the node itself."""
    node = unwrap(node)
    if node.type == "array_literal_expression":
        return [c for c in parts(node) if c.type != ","]
    return [node]


def as_cast(node: Node) -> Node | None:
    """The cast_expression [T]x, which the grammar sometimes wraps in a unary expression."""
    node = unwrap(node)
    if node.type == "expression_with_unary_operator" and node.children[0].type == "cast_expression":
        node = node.children[0]
    return node if node.type == "cast_expression" else None


def type_text(type_literal: Node) -> str:
    """Microsoft.HyperV.PowerShell.VMState from [Microsoft.HyperV.PowerShell.VMState]."""
    return text(type_literal).strip()[1:-1].strip()


def command_name(command: Node) -> str | None:
    first = command.children[0] if command.children else None
    return text(first) if first is not None and first.type == "command_name" else None


def pipeline_stages(node: Node) -> list[Node]:
    """The commands or expressions of `a | b | c`, unwrapped."""
    node = unwrap(node)
    if node.type in {"pipeline", "pipeline_chain"}:
        return [unwrap(c) for c in parts(node) if c.type not in {"|", "pipeline_chain_tail"}]
    return [node]


# -- command arguments -------------------------------------------------------------------------


@dataclass(frozen=True)
class Argument:
    """A named argument (-Name value, -Switch, -Switch:$false) of a command."""

    name: str
    value: Node | None
    node: Node


@dataclass
class CommandArguments:
    named: list[Argument] = field(default_factory=list)
    positional: list[Node] = field(default_factory=list)
    splats: list[Node] = field(default_factory=list)


def command_arguments(command: Node, takes_value: Callable[[str], bool]) -> CommandArguments:
    """Split a command's elements; takes_value(name) says whether a parameter has an argument."""
    result = CommandArguments()
    elements = [e for e in _command_elements(command) if e.type not in {"redirection", "comment"}]
    index = 0
    while index < len(elements):
        element = elements[index]
        index += 1
        if element.type == "command_argument_sep":
            continue
        if element.type == "command_parameter":
            name = text(element).lstrip("-").rstrip(":")
            value, index = _parameter_value(elements, index, takes_value(name))
            result.named.append(Argument(name, value, element))
        elif _is_splat(element):
            result.splats.append(unwrap(element))
        else:
            result.positional.append(element)
    return result


def _command_elements(command: Node) -> list[Node]:
    elements = next((c for c in command.children if c.type == "command_elements"), None)
    return elements.children if elements is not None else []


def _parameter_value(
    elements: list[Node], index: int, takes_value: bool
) -> tuple[Node | None, int]:
    colon = index < len(elements) and text(elements[index]) == ":"
    while index < len(elements) and elements[index].type == "command_argument_sep":
        index += 1
    has_value = index < len(elements) and elements[index].type != "command_parameter"
    if has_value and (colon or takes_value):
        return elements[index], index + 1
    return None, index


def _is_splat(element: Node) -> bool:
    node = unwrap(element)
    return node.type == "variable" and text(node).startswith("@")


# -- scopes and variables ----------------------------------------------------------------------


class Binding(Enum):
    ASSIGN = "assign"
    PARAM = "param"
    FOREACH = "foreach"


@dataclass(frozen=True)
class VarBinding:
    """One way a variable gets a value in a scope."""

    kind: Binding
    node: Node
    value: Node | None = None  # the assigned expression, or the foreach collection
    operator: str = "="
    constraint: str | None = None  # [type] on the variable or parameter
    ps_type_name: str | None = None  # [PSTypeName('...')] on a parameter


@dataclass(frozen=True)
class HashAddition:
    """$h['Key'] = value or $h.Key = value; key is None when not a constant."""

    key: str | None
    value: Node
    node: Node


class ScriptIndex:
    """Where each variable is bound, per scope, and the script's functions."""

    def __init__(self, root: Node) -> None:
        self.bindings: dict[tuple[int, str], list[VarBinding]] = {}
        self.additions: dict[tuple[int, str], list[HashAddition]] = {}
        self.functions: dict[str, Node] = {}
        self.by_type: dict[str, list[Node]] = {}
        for node in walk(root):
            self.by_type.setdefault(node.type, []).append(node)
            if node.type == "assignment_expression":
                self._add_assignment(node)
            elif node.type == "script_parameter":
                self._add_parameter(node)
            elif node.type == "foreach_statement":
                self._add_foreach(node)
            elif node.type == "function_statement":
                name = next(c for c in node.children if c.type == "function_name")
                self.functions[text(name).lower()] = node

    def lookup(self, node: Node, name: str) -> list[VarBinding]:
        """The bindings of $name seen from node: its own scope's, else the nearest parent's."""
        scope: Node | None = scope_of(node)
        while scope is not None:
            found = self.bindings.get((scope.id, name))
            if found:
                return found
            scope = scope_of(scope) if scope.parent is not None else None
        return []

    def hash_additions(self, scope: Node, name: str) -> list[HashAddition]:
        return self.additions.get((scope.id, name), [])

    def _bind(self, variable: Node, binding: VarBinding) -> None:
        key = (scope_of(variable).id, variable_name(variable))
        self.bindings.setdefault(key, []).append(binding)

    def _add_assignment(self, node: Node) -> None:
        target = unwrap(node.children[0])
        operator = text(node.children[1])
        value = node.children[2]
        constraint = None
        cast = as_cast(target)
        if cast is not None:
            constraint = type_text(cast.children[0])
            target = unwrap(cast.children[1])
        if target.type == "variable":
            self._bind(target, VarBinding(Binding.ASSIGN, target, value, operator, constraint))
        elif target.type in {"element_access", "member_access"}:
            self._add_hash_addition(target, value)

    def _add_hash_addition(self, target: Node, value: Node) -> None:
        holder = unwrap(target.children[0])
        if holder.type != "variable":
            return
        if target.type == "element_access":
            key = literal_string(target.children[2])
        else:
            key = _member_name(target)
        item = (scope_of(holder).id, variable_name(holder))
        self.additions.setdefault(item, []).append(HashAddition(key, value, target))

    def _add_parameter(self, node: Node) -> None:
        variable = next(c for c in node.children if c.type == "variable")
        constraint = ps_type_name = None
        for attribute in _attributes(node):
            if attribute.children[0].type == "type_literal":
                constraint = type_text(attribute.children[0])
            elif _attribute_name(attribute) == "pstypename":
                ps_type_name = _attribute_string(attribute)
        binding = VarBinding(Binding.PARAM, node, None, "=", constraint, ps_type_name)
        self._bind(variable, binding)

    def _add_foreach(self, node: Node) -> None:
        variable = next(c for c in node.children if c.type == "variable")
        collection = next(c for c in node.children if c.type == "pipeline")
        self._bind(variable, VarBinding(Binding.FOREACH, node, collection))


def _attributes(node: Node) -> list[Node]:
    attribute_list = next((c for c in node.children if c.type == "attribute_list"), None)
    if attribute_list is None:
        return []
    return [c for c in attribute_list.children if c.type == "attribute"]


def _attribute_name(attribute: Node) -> str:
    name = next((c for c in attribute.children if c.type == "attribute_name"), None)
    return text(name).lower() if name is not None else ""


def _attribute_string(attribute: Node) -> str | None:
    arguments = next((c for c in attribute.children if c.type == "attribute_arguments"), None)
    if arguments is None:
        return None
    literals = [n for n in walk(arguments) if n.type in {"string_literal", "type_literal"}]
    if not literals:
        return None
    first = literals[0]
    return type_text(first) if first.type == "type_literal" else literal_string(first)


def function_output_attribute(function: Node) -> str | None:
    """The type named by [OutputType(...)] in a function's param block."""
    body = next((c for c in function.children if c.type == "script_block"), None)
    block = next((c for c in body.children if c.type == "param_block"), None) if body else None
    if block is None:
        return None
    for attribute in _attributes(block):
        if _attribute_name(attribute) == "outputtype":
            return _attribute_string(attribute)
    return None


# -- types of values ---------------------------------------------------------------------------


_PASS_THROUGH = frozenset({"where-object", "where", "?", "sort-object", "sort"})
_SELECT = frozenset({"select-object", "select"})
_SELECT_KEEPS_OBJECTS = frozenset({"first", "last", "skip", "unique", "index", "skiplast"})
_ITEM_COMMANDS = frozenset({"where-object", "where", "?", "foreach-object", "foreach", "%"})


def _merge(classes: list[str | None]) -> str | None:
    """The one class all of these are, or None when any is unknown or they differ."""
    if not classes or None in classes or len(set(classes)) != 1:
        return None
    return classes[0]


class Types:
    """Which Hyper-V class a value holds, where the script makes that plain.

    A collection of objects counts as their class: member enumeration reads each one's property.
    """

    def __init__(self, index: ScriptIndex, module: HyperVModule) -> None:
        self.index = index
        self.module = module
        self._variables: dict[tuple[int, str], str | None] = {}
        self._functions: dict[str, str | None] = {}

    def of(self, node: Node) -> str | None:
        node = unwrap(node)
        if node.type == "variable":
            return self._of_variable(node)
        if node.type in {"parenthesized_expression", "sub_expression", "array_expression"}:
            return self.of(parts(node)[1]) if len(parts(node)) == 3 else None
        if node.type == "element_access":
            return self.of(node.children[0])
        cast = as_cast(node)
        if cast is not None:
            return self.module.class_for_type(type_text(cast.children[0]))
        if node.type in {"command", "pipeline", "pipeline_chain"}:
            return self.of_pipeline(pipeline_stages(node))
        return None

    def of_pipeline(self, stages: list[Node]) -> str | None:
        current: str | None = None
        for position, stage in enumerate(stages):
            if stage.type != "command":
                current = self.of(stage) if position == 0 else None
                continue
            produced = self._command_output(stage)
            if produced is not None:
                current = produced
            elif not _passes_objects_through(stage):
                current = None
        return current

    def of_function(self, name: str) -> str | None:
        key = name.lower()
        if key not in self._functions:
            self._functions[key] = None  # a recursive function stays unknown
            self._functions[key] = self._infer_function(self.index.functions[key])
        return self._functions[key]

    def pipeline_item(self, node: Node) -> str | None:
        """The type of $_ in a script block given to Where-Object or ForEach-Object."""
        block = node.parent
        while block is not None and block.type != "script_block_expression":
            block = block.parent
        command = block.parent if block is not None else None
        while command is not None and command.type != "command":
            if command.type not in {
                "unary_expression",
                "array_literal_expression",
                "command_elements",
            }:
                return None
            command = command.parent
        if command is None or (command_name(command) or "").lower() not in _ITEM_COMMANDS:
            return None
        stages = pipeline_stages(command.parent) if command.parent is not None else []
        if command not in stages or stages.index(command) == 0:
            return None
        return self.of_pipeline(stages[: stages.index(command)])

    def _of_variable(self, node: Node) -> str | None:
        name = variable_name(node)
        if name in {"_", "psitem"}:
            return self.pipeline_item(node)
        bindings = self.index.lookup(node, name)
        if not bindings:
            return None
        key = (scope_of(bindings[0].node).id, name)
        if key not in self._variables:
            self._variables[key] = None  # $x = $x... stays unknown
            self._variables[key] = _merge(
                [self._of_binding(b) for b in bindings if not _binds_null(b)]
            )
        return self._variables[key]

    def _of_binding(self, binding: VarBinding) -> str | None:
        declared = binding.constraint or binding.ps_type_name
        if declared is not None:
            return self.module.class_for_type(declared)
        if binding.kind is Binding.FOREACH or binding.operator == "=":
            return self.of(binding.value) if binding.value is not None else None
        return None

    def _command_output(self, command: Node) -> str | None:
        name = command_name(command)
        if name is None:
            return None
        short = hyperv_cmdlet_name(name, self.index, self.module)
        if short is not None:
            cmdlet = self.module.cmdlet(short)
            return OUTPUT_CLASSES.get(cmdlet.name.lower()) if cmdlet else None
        if name.lower() in self.index.functions:
            return self.of_function(name)
        return None

    def _infer_function(self, function: Node) -> str | None:
        declared = function_output_attribute(function)
        if declared is not None:
            return self.module.class_for_type(declared)
        returned = [v for v in _returned_values(function) if not is_null(v)]
        return _merge([self.of(v) for v in returned])


def _binds_null(binding: VarBinding) -> bool:
    return binding.kind is Binding.ASSIGN and binding.value is not None and is_null(binding.value)


def _passes_objects_through(command: Node) -> bool:
    name = (command_name(command) or "").lower()
    if name in _PASS_THROUGH:
        return True
    if name not in _SELECT:
        return False
    arguments = command_arguments(command, lambda p: p.lower() != "unique")
    named = {a.name.lower() for a in arguments.named}
    return not arguments.positional and named <= _SELECT_KEEPS_OBJECTS


def _returned_values(function: Node) -> list[Node]:
    body = next(c for c in function.children if c.type == "script_block")
    values = []
    for node in walk(body):
        is_return = (
            node.type == "flow_control_statement" and text(node.children[0]).lower() == "return"
        )
        if is_return and scope_of(node) == body and len(node.children) > 1:
            values.append(node.children[1])
    return values


def hyperv_cmdlet_name(name: str, index: ScriptIndex, module: HyperVModule) -> str | None:
    """The Hyper-V cmdlet a command calls: Hyper-V\\X, or a bare X the script does not define."""
    if "\\" in name:
        qualifier, _, short = name.partition("\\")
        return short if qualifier.lower() == "hyper-v" else None
    if name.lower() in index.functions or module.cmdlet(name) is None:
        return None
    return name


# -- the script --------------------------------------------------------------------------------


@dataclass
class Script:
    path: str
    source: str
    tree: Tree
    index: ScriptIndex
    types: Types
    module: HyperVModule

    @property
    def root(self) -> Node:
        return self.tree.root_node

    def nodes(self, *types: str) -> Iterator[Node]:
        """The script's nodes of these types, in document order within each type."""
        for node_type in types:
            yield from self.index.by_type.get(node_type, [])

    def violation(self, node: Node | int, rule: str, message: str) -> Violation:
        at = node if isinstance(node, int) else line(node)
        return Violation(self.path, at, rule, message)


def load_script(source: str, module: HyperVModule, path: str = "<inline>") -> Script:
    tree = parse(source)
    index = ScriptIndex(tree.root_node)
    return Script(path, source, tree, index, Types(index, module), module)


def check_script(script: Script) -> list[Violation]:
    """Every violation of every rule, in line order."""
    checks = (
        check_syntax,
        check_ps7_constructs,
        check_cmdlet_calls,
        check_members,
        check_enum_comparisons,
        check_strict_counts,
    )
    return sorted({v for check in checks for v in check(script)})


def check_file(path: Path, module: HyperVModule, name: str | None = None) -> list[Violation]:
    return check_script(load_script(path.read_text(encoding="utf-8"), module, name or str(path)))


# -- rule: the grammar parses it, with nothing PowerShell 7 only -------------------------------


def check_syntax(script: Script) -> list[Violation]:
    """Parse errors; the ones a PowerShell 7 construct causes are named as such."""
    found = []
    stack = [script.root]
    while stack:
        node = stack.pop()
        if node.is_missing:
            found.append(script.violation(node, PARSE, f"missing {node.type!r}"))
        elif node.is_error:
            found.append(_explain_error(script, node))
        elif node.has_error:
            stack.extend(node.children)
    return found


def _explain_error(script: Script, error: Node) -> Violation:
    snippet = text(error)
    after = error.next_sibling
    clean = next((c for c in error.children if text(c).strip().lower() == "clean"), None)
    if "??" in snippet:
        return script.violation(error, PS7, "null-coalescing ?? or ??= needs PowerShell 7")
    if snippet.strip() == "?" and after is not None and after.type in {".", "["}:
        return script.violation(error, PS7, "null-conditional ?. or ?[] needs PowerShell 7")
    if "?" in snippet and ":" in snippet:
        return script.violation(error, PS7, "ternary ? : needs PowerShell 7")
    if clean is not None:
        return script.violation(
            clean.end_point.row + 1, PS7, "a clean {} block needs PowerShell 7.3"
        )
    return script.violation(error, PARSE, f"cannot parse {_excerpt(error)}")


def _excerpt(node: Node) -> str:
    snippet = " ".join(text(node).split())
    return repr(snippet[:60])


# Cmdlets and parameters that Windows PowerShell 5.1 does not have.
PS7_COMMANDS = frozenset({"get-error", "join-string", "test-json", "get-uptime", "remove-alias"})
_PARALLEL = frozenset({"parallel", "throttlelimit", "timeoutseconds", "asjob"})
PS7_PARAMETERS: dict[str, frozenset[str]] = {
    "foreach-object": _PARALLEL,
    "%": _PARALLEL,
    "foreach": _PARALLEL,
    "convertfrom-json": frozenset({"ashashtable", "depth", "noenumerate"}),
    "convertto-json": frozenset({"enumsasstrings", "asarray", "escapehandling"}),
}


def check_ps7_constructs(script: Script) -> list[Violation]:
    """What parses but Windows PowerShell 5.1 rejects: &&, ||, -Parallel, 7-only cmdlets."""
    found = []
    for node in script.nodes(
        "pipeline_chain_tail", "foreach_parameter", "parallel_statement", "command"
    ):
        if node.type == "pipeline_chain_tail":
            operator = text(node.children[0])
            found.append(
                script.violation(node, PS7, f"pipeline chain {operator} needs PowerShell 7")
            )
        elif node.type in {"foreach_parameter", "parallel_statement"}:
            found.append(script.violation(node, PS7, "-parallel runs only in a workflow"))
        elif node.type == "command":
            found.extend(_ps7_command(script, node))
    return found


def _ps7_command(script: Script, command: Node) -> list[Violation]:
    name = (command_name(command) or "").lower()
    if name in PS7_COMMANDS:
        return [script.violation(command, PS7, f"{command_name(command)} needs PowerShell 7")]
    newer = PS7_PARAMETERS.get(name, frozenset())
    return [
        script.violation(
            argument.node, PS7, f"{command_name(command)} -{argument.name} needs PowerShell 7"
        )
        for argument in command_arguments(command, lambda _: False).named
        if argument.name.lower() in newer
    ]


# -- rule: Hyper-V cmdlets are called with parameters they have, from one set ------------------


@dataclass(frozen=True)
class Bound:
    """A parameter as the script writes it (or a splatted key), with its value."""

    written: str
    value: Node | None
    node: Node
    via_splat: bool = False


def check_cmdlet_calls(script: Script) -> list[Violation]:
    found = []
    for node in script.nodes("command"):
        if command_name(node):
            found.extend(_check_call(script, node))
    return found


def _check_call(script: Script, command: Node) -> list[Violation]:
    name = command_name(command) or ""
    short = hyperv_cmdlet_name(name, script.index, script.module)
    if short is None:
        return []
    cmdlet = script.module.cmdlet(short)
    if cmdlet is None:
        return [
            script.violation(command, UNKNOWN_CMDLET, f"the Hyper-V module has no cmdlet {short}")
        ]
    bound, found = _bound_parameters(script, command, cmdlet)
    resolved: dict[str, tuple[Parameter, Bound]] = {}
    for item in bound:
        parameter, problems = _resolve(script, cmdlet, item)
        found.extend(problems)
        if parameter is not None and not parameter.common:
            resolved.setdefault(parameter.name, (parameter, item))
    found.extend(_check_parameter_set(script, command, cmdlet, [p for p, _ in resolved.values()]))
    for parameter, item in resolved.values():
        found.extend(_check_enum_argument(script, cmdlet, parameter, item))
    return found


def _bound_parameters(
    script: Script, command: Node, cmdlet: Cmdlet
) -> tuple[list[Bound], list[Violation]]:
    def takes_value(written: str) -> bool:
        parameter = script.module.resolve(cmdlet, written).parameter
        return parameter is None or not parameter.is_switch

    arguments = command_arguments(command, takes_value)
    bound = [Bound(a.name, a.value, a.node) for a in arguments.named]
    problems = []
    for splat in arguments.splats:
        keys, problem = splatted_keys(script, splat)
        bound.extend(keys)
        problems.extend(problem)
    return bound, problems


def splatted_keys(script: Script, splat: Node) -> tuple[list[Bound], list[Violation]]:
    """The keys of @name: `$name = @{...}` in this scope, plus its `$name['Key'] = ...`."""
    name = variable_name(splat)
    scope = scope_of(splat)
    bindings = script.index.bindings.get((scope.id, name), [])
    value = bindings[0].value if len(bindings) == 1 else None
    literal = _hash_literal(value) if value is not None and bindings[0].operator == "=" else None
    if literal is None:
        message = f"@{name}: cannot check a splat that is not one hashtable literal in this scope"
        return [], [script.violation(splat, SPLAT, message)]
    keys = [
        Bound(key, value, entry, via_splat=True) for key, value, entry in _hash_entries(literal)
    ]
    problems = []
    for addition in script.index.hash_additions(scope, name):
        if addition.key is None:
            message = f"@{name}: a key that is not a constant"
            problems.append(script.violation(addition.node, SPLAT, message))
        else:
            keys.append(Bound(addition.key, addition.value, addition.node, via_splat=True))
    return keys, problems


def _hash_literal(value: Node) -> Node | None:
    node = unwrap(value)
    cast = as_cast(node)
    if cast is not None and type_text(cast.children[0]).lower() == "ordered":
        node = unwrap(cast.children[1])
    return node if node.type == "hash_literal_expression" else None


def _hash_entries(hash_literal: Node) -> list[tuple[str, Node, Node]]:
    """(key, value, entry) of each `Key = value` in @{...}."""
    body = next((c for c in hash_literal.children if c.type == "hash_literal_body"), None)
    entries = [c for c in body.children if c.type == "hash_entry"] if body is not None else []
    return [
        (literal_string(e.children[0]) or text(e.children[0]), e.children[2], e) for e in entries
    ]


def _resolve(
    script: Script, cmdlet: Cmdlet, item: Bound
) -> tuple[Parameter | None, list[Violation]]:
    resolution = script.module.resolve(cmdlet, item.written)
    shown = f"{item.written!r}" if item.via_splat else f"-{item.written}"
    if resolution.match is Match.UNKNOWN:
        message = f"{cmdlet.name} has no parameter {shown}"
        return None, [script.violation(item.node, UNKNOWN_PARAMETER, message)]
    if resolution.match is Match.AMBIGUOUS:
        names = ", ".join(f"-{p.name}" for p in resolution.candidates)
        message = f"{cmdlet.name} {shown} is ambiguous: {names}"
        return None, [script.violation(item.node, UNKNOWN_PARAMETER, message)]
    parameter = resolution.candidates[0]
    if resolution.match is Match.PREFIX:
        message = f"{cmdlet.name} {shown} abbreviates -{parameter.name}: spell it in full"
        return parameter, [script.violation(item.node, PARAMETER_PREFIX, message)]
    return parameter, []


def _check_parameter_set(
    script: Script, command: Node, cmdlet: Cmdlet, parameters: list[Parameter]
) -> list[Violation]:
    fitting = set(cmdlet.all_sets())
    for parameter in parameters:
        if ALL_SETS not in parameter.sets:
            fitting &= parameter.sets
    if fitting:
        return []
    described = "; ".join(
        f"-{p.name} in {', '.join(sorted(p.sets))}" for p in parameters if ALL_SETS not in p.sets
    )
    message = f"{cmdlet.name}: no parameter set takes all of these together ({described})"
    return [script.violation(command, PARAMETER_SET, message)]


def _check_enum_argument(
    script: Script, cmdlet: Cmdlet, parameter: Parameter, item: Bound
) -> list[Violation]:
    enum = script.module.enum_for_type(parameter.type.removesuffix("[]"))
    if enum is None or item.value is None:
        return []
    return [
        script.violation(item.node, ENUM_VALUE, f"{cmdlet.name} -{parameter.name}: {problem}")
        for value in literal_list(item.value)
        if (problem := enum_problem(script.module, enum, literal_string(value)))
    ]


def enum_problem(
    module: HyperVModule, enum: str, value: str | None, case_sensitive: bool = False
) -> str | None:
    """Why value is not a member of enum (None if it is, or if it is not a constant)."""
    if value is None or value.strip().lstrip("-").isdigit():
        return None
    members = module.enum_members(enum)
    wanted = [v.strip() for v in value.split(",")]  # flags enums take 'A, B'
    for item in wanted:
        exact = item in members
        if exact or (not case_sensitive and item.lower() in (m.lower() for m in members)):
            continue
        return f"{item!r} is not a member of {enum} ({', '.join(sorted(members))})"
    return None


# -- rule: properties exist on the objects Hyper-V returns -------------------------------------


def check_members(script: Script) -> list[Violation]:
    found = []
    for node in script.nodes("member_access"):
        if text(node.children[1]) == "::":
            found.extend(_check_static_member(script, node))
        else:
            found.extend(_check_property(script, node))
    return found


def _member_name(member_access: Node) -> str | None:
    member = member_access.children[-1]
    if (
        member.type == "member_name"
        and member.children
        and member.children[0].type == "simple_name"
    ):
        return text(member)
    return None


def _check_property(script: Script, node: Node) -> list[Violation]:
    name = _member_name(node)
    owner = script.types.of(node.children[0])
    if name is None or owner is None:
        return []
    # .Count and .Length are the strict-count rule's: fine on a collection, fatal on one object.
    if name.lower() in INTRINSIC_MEMBERS | {"count", "length"}:
        return []
    if script.module.has_property(owner, name):
        return []
    message = f"{owner} has no property {name!r} ({_excerpt(node)})"
    return [script.violation(node, UNKNOWN_PROPERTY, message)]


def _check_static_member(script: Script, node: Node) -> list[Violation]:
    owner = unwrap(node.children[0])
    name = _member_name(node)
    if owner.type != "type_literal" or name is None:
        return []
    if not type_text(owner).lower().startswith(HYPERV_NAMESPACE):
        return []
    enum = script.module.enum_for_type(type_text(owner))
    if enum is None:
        return []
    problem = enum_problem(script.module, enum, name)
    return [script.violation(node, ENUM_VALUE, problem)] if problem else []


# -- rule: enum comparisons name real members --------------------------------------------------

_EQUALITY = frozenset({"-eq", "-ne", "-ieq", "-ine", "-ceq", "-cne"})
_MEMBERSHIP_RIGHT = frozenset({"-in", "-notin", "-iin", "-inotin", "-cin", "-cnotin"})
_MEMBERSHIP_LEFT = frozenset(
    {"-contains", "-notcontains", "-icontains", "-inotcontains", "-ccontains", "-cnotcontains"}
)


def check_enum_comparisons(script: Script) -> list[Violation]:
    """`$vm.State -eq 'Runing'`, `"$($vm.State)" -in 'Off', 'Saved'`, `switch ($vm.State)`."""
    found = []
    for node in script.nodes("comparison_expression", "switch_statement"):
        if node.type == "comparison_expression" and len(parts(node)) == 3:
            found.extend(_check_comparison(script, node))
        elif node.type == "switch_statement":
            found.extend(_check_switch(script, node))
    return found


def enum_of(script: Script, node: Node) -> str | None:
    """The enum an expression holds: $x.State, "$($x.State)" or [string]$x.State."""
    node = unwrap(node)
    if node.type == "string_literal" and node.children[0].type == "expandable_string_literal":
        inner = node.children[0]
        only = inner.named_children[0] if inner.named_child_count == 1 else None
        whole = only is not None and text(inner)[1:-1] == text(only)
        return enum_of(script, only) if only is not None and whole else None
    if node.type in {"sub_expression", "parenthesized_expression"}:
        return enum_of(script, parts(node)[1])
    cast = as_cast(node)
    if cast is not None and type_text(cast.children[0]).lower() in {"string", "system.string"}:
        return enum_of(script, cast.children[1])
    if node.type != "member_access" or text(node.children[1]) != ".":
        return None
    owner = script.types.of(node.children[0])
    name = _member_name(node)
    prop_type = script.module.property_type(owner, name) if owner and name else None
    return script.module.enum_for_type(prop_type) if prop_type else None


def _check_comparison(script: Script, node: Node) -> list[Violation]:
    left, operator_node, right = parts(node)
    operator = text(operator_node).lower()
    if operator in _EQUALITY:
        pairs = [(left, [right]), (right, [left])]
    elif operator in _MEMBERSHIP_RIGHT:
        pairs = [(left, literal_list(right))]
    elif operator in _MEMBERSHIP_LEFT:
        pairs = [(right, literal_list(left))]
    else:
        return []
    case_sensitive = operator.startswith("-c")
    found = []
    for subject, values in pairs:
        enum = enum_of(script, subject)
        if enum is None:
            continue
        for value in values:
            problem = enum_problem(script.module, enum, literal_string(value), case_sensitive)
            if problem:
                found.append(script.violation(node, ENUM_VALUE, problem))
    return found


def _check_switch(script: Script, node: Node) -> list[Violation]:
    condition = next((c for c in node.children if c.type == "switch_condition"), None)
    if condition is None or any(c.type == "switch_parameters" for c in node.children):
        return []
    enum = enum_of(script, parts(condition)[1])
    if enum is None:
        return []
    found = []
    for clause in _switch_clause_conditions(node):
        value = literal_string(clause)
        if value is not None and value.lower() == "default" and clause.named_child_count == 0:
            continue
        problem = enum_problem(script.module, enum, value)
        if problem:
            found.append(script.violation(clause, ENUM_VALUE, problem))
    return found


def _switch_clause_conditions(switch: Node) -> list[Node]:
    body = next(c for c in switch.children if c.type == "switch_body")
    clauses = next((c for c in body.children if c.type == "switch_clauses"), None)
    if clauses is None:
        return []
    return [c.children[0] for c in clauses.children if c.type == "switch_clause"]


# -- rule: .Count, .Length and [i] only on values that are surely collections ------------------


class Shape(Enum):
    ARRAY = "array"
    MAP = "hashtable"
    TEXT = "string"


# What each shape answers under Set-StrictMode -Version 2 without throwing.
_SAFE_USES = {
    Shape.ARRAY: {"count", "length", "index"},
    Shape.MAP: {"count", "length", "index"},
    Shape.TEXT: {"length", "index"},
}
_AUTOMATIC_SHAPES = {
    "args": Shape.ARRAY,
    "error": Shape.ARRAY,
    "matches": Shape.MAP,
    "psboundparameters": Shape.MAP,
    "psversiontable": Shape.MAP,
}
_NOT_JUDGED = frozenset({"_", "psitem", "this", "input"})


@dataclass(frozen=True)
class Verdict:
    shape: Shape | None
    why: str = ""  # why the shape is unknown


def check_strict_counts(script: Script) -> list[Violation]:
    found = []
    for node in script.nodes("element_access", "member_access"):
        use = _collection_use(node)
        if use is None:
            continue
        target = unwrap(node.children[0])
        verdict = _verdict_of_target(script, target, set())
        if verdict is None or (verdict.shape is not None and use in _SAFE_USES[verdict.shape]):
            continue
        shown = f".{use.capitalize()}" if use != "index" else "[...]"
        if verdict.shape is not None:
            message = f"{shown} on {_excerpt(target)}: a {verdict.shape.value} has no {shown}"
        else:
            message = (
                f"{shown} on {_excerpt(target)}, which may be one object or $null: {verdict.why}"
            )
        found.append(script.violation(node, STRICT_COUNT, message))
    return found


def _collection_use(node: Node) -> str | None:
    if node.type == "element_access":
        return "index"
    if node.type == "member_access" and text(node.children[1]) == ".":
        name = (_member_name(node) or "").lower()
        return name if name in {"count", "length"} else None
    return None


def _verdict_of_target(script: Script, target: Node, seen: set[tuple[int, str]]) -> Verdict | None:
    """The shape of what .Count or [i] is applied to; None when the check has no opinion."""
    if target.type == "variable":
        return _verdict_of_variable(script, target, seen)
    if target.type == "parenthesized_expression":
        inner = unwrap(parts(target)[1])
        if inner.type in {"command", "pipeline", "pipeline_chain"}:
            return Verdict(None, "the output of a command, not wrapped in @(...)")
        return _verdict_of_target(script, inner, seen)
    shape = _shape_of_literal(target)
    return Verdict(shape) if shape else None


def _verdict_of_variable(
    script: Script, variable: Node, seen: set[tuple[int, str]]
) -> Verdict | None:
    name = variable_name(variable)
    if name in _NOT_JUDGED:
        return None
    if name in _AUTOMATIC_SHAPES:
        return Verdict(_AUTOMATIC_SHAPES[name])
    bindings = script.index.lookup(variable, name)
    if not bindings:
        return Verdict(None, f"${name} is never assigned in this script")
    key = (scope_of(bindings[0].node).id, name)
    if key in seen:
        return Verdict(None, f"${name} is assigned from itself")
    constraint = next((b.constraint for b in bindings if b.constraint), None)
    if constraint is not None:
        shape = _shape_of_type(constraint)
        return Verdict(shape, "" if shape else f"${name} is typed [{constraint}]")
    # `$x += ...` keeps an array an array: judge the plain assignments, if there are any.
    assignments = [b for b in bindings if not (b.kind is Binding.ASSIGN and b.operator != "=")]
    verdicts = [_verdict_of_binding(script, b, seen | {key}) for b in assignments or bindings]
    unknown = next((v for v in verdicts if v.shape is None), None)
    if unknown is not None:
        return unknown
    shapes = {v.shape for v in verdicts}
    return Verdict(shapes.pop()) if len(shapes) == 1 else Verdict(None, f"${name} changes shape")


def _verdict_of_binding(script: Script, binding: VarBinding, seen: set[tuple[int, str]]) -> Verdict:
    where = f"line {line(binding.node)}"
    if binding.kind is Binding.PARAM:
        return Verdict(None, f"a parameter without an array type ({where})")
    if binding.kind is Binding.FOREACH:
        return Verdict(None, f"a foreach variable ({where})")
    if binding.operator != "=" or binding.value is None:
        return Verdict(None, f"assigned with {binding.operator} only ({where})")
    value = unwrap(binding.value)
    shape = _shape_of_literal(value)
    if shape is not None:
        return Verdict(shape)
    if value.type == "variable":
        verdict = _verdict_of_variable(script, value, seen)
        return (
            verdict
            if verdict is not None
            else Verdict(None, f"copied from {text(value)} ({where})")
        )
    if value.type in {"command", "pipeline", "pipeline_chain"}:
        return Verdict(None, f"assigned from a command or function without @(...) ({where})")
    return Verdict(None, f"assigned a value that is not an array ({where})")


def _shape_of_literal(node: Node) -> Shape | None:
    """The shape of a value whose form decides it: @(...), ,x, a, b, @{...}, 'text', [T[]]x."""
    node = unwrap(node)
    if node.type == "array_expression":
        return Shape.ARRAY
    if node.type == "expression_with_unary_operator" and node.children[0].type == ",":
        return Shape.ARRAY
    cast = as_cast(node)
    if cast is not None:
        return _shape_of_type(type_text(cast.children[0]))
    if node.type == "array_literal_expression" and any(c.type == "," for c in node.children):
        return Shape.ARRAY
    if node.type == "hash_literal_expression":
        return Shape.MAP
    if node.type == "string_literal":
        return Shape.TEXT
    return None


def _shape_of_type(type_name: str) -> Shape | None:
    lowered = type_name.lower().replace(" ", "")
    if lowered.endswith("[]") or lowered in {"array", "system.array"}:
        return Shape.ARRAY
    if lowered.startswith(("system.collections.", "collections.")) or lowered in {"arraylist"}:
        return Shape.ARRAY if "list" in lowered else Shape.MAP
    if lowered in {"hashtable", "ordered", "system.collections.hashtable"}:
        return Shape.MAP
    if lowered in {"string", "system.string"}:
        return Shape.TEXT
    return None

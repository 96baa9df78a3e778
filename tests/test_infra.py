"""Static checks of infra/: the Terraform host and the Packer template.

Every .tf and .pkr.hcl file is parsed with python-hcl2. The checks are plain
functions that return a list of problems, so each one is run twice: on the
real files (no problems expected) and on a deliberately broken copy (the
problem must be found), which proves the check can fail.

python-hcl2 output differs between versions: newer ones keep the quotes of
string literals ('"abc"'), wrap expressions as '${...}', quote block labels
and add '__is_block__' / '__comments__' keys. `norm` removes those
differences before anything is checked.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hcl2
import pytest

ROOT = Path(__file__).resolve().parents[1]
INFRA = ROOT / "infra"
TF_DIR = INFRA / "terraform"
PACKER_DIR = INFRA / "packer"
SETUP_SCRIPT = TF_DIR / "scripts" / "setup-host.ps1"
ANSWER_TEMPLATE = PACKER_DIR / "answer" / "autounattend.pkrtpl.hcl"
README = INFRA / "README.md"

HCL_FILES = sorted([*TF_DIR.glob("*.tf"), *PACKER_DIR.glob("*.pkr.hcl")])

# Flags of `hvkube template create` in the CLI spec (issue 9).
TEMPLATE_CREATE_FLAGS = {"--name", "--vhdx", "--memory-mb", "--cpus", "--gpu"}
TEMPLATE_CREATE_REQUIRED = {"--name", "--vhdx"}

# Sources that open a port to everybody.
OPEN_SOURCES = {"*", "0.0.0.0", "0.0.0.0/0", "::/0", "internet", "any"}

# Variable names that hold secrets (or may: a wheel URL can carry a SAS token).
SECRET_VAR = re.compile(r"password|passwd|secret|token|(^|_)key($|_)|sas|wheel_url", re.I)
# ... of which these must never have a default at all.
NO_DEFAULT_VAR = re.compile(r"password|passwd|secret|token|wheel_url", re.I)
# Attribute names whose value must come from a variable, never a literal.
SECRET_ATTR = re.compile(r"password|passwd|secret|token|(^|_)key$|access_key|sas", re.I)

# Credential-looking text in any infra file.
SECRET_TEXT = {
    "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "storage account key": re.compile(r"AccountKey=[A-Za-z0-9+/=]{20,}"),
    "SAS signature": re.compile(r"[?&]sig=[A-Za-z0-9%+/=]{16,}"),
    "GitHub token": re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}"),
    "AWS access key": re.compile(r"\bAKIA[0-9A-Z]{16}\b"),
    "Windows product key": re.compile(r"\b[A-Z0-9]{5}(-[A-Z0-9]{5}){4}\b"),
    "literal password assignment": re.compile(
        r"""(?i)\b\w*(password|passwd|pwd)\w*\s*[:=]\s*["'](?![$%]\{)[^"'\s]{4,}["']"""
    ),
}

META_KEY = re.compile(r"^__\w+__$")
VAR_REF = re.compile(r"\bvar\.([A-Za-z_][A-Za-z0-9_-]*)")
LOCAL_REF = re.compile(r"\blocal\.([A-Za-z_][A-Za-z0-9_-]*)")


# --------------------------------------------------------------------------- helpers


def unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return text[1:-1]
    return text


def norm(obj: Any) -> Any:
    """Strip version-specific decoration from python-hcl2 output."""
    if isinstance(obj, dict):
        return {unquote(k): norm(v) for k, v in obj.items() if not META_KEY.match(k)}
    if isinstance(obj, list):
        return [norm(v) for v in obj]
    if isinstance(obj, str):
        return unquote(obj)
    return obj


def parse(path: Path) -> dict[str, Any]:
    return norm(hcl2.loads(path.read_text(encoding="utf-8")))


def load(directory: Path, pattern: str) -> list[dict[str, Any]]:
    files = sorted(directory.glob(pattern))
    assert files, f"no {pattern} files in {directory}"
    return [parse(f) for f in files]


def blocks(docs: list[dict[str, Any]], kind: str) -> Iterator[Any]:
    for doc in docs:
        yield from doc.get(kind, [])


def declared_variables(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for block in blocks(docs, "variable"):
        found.update(block)
    return found


def declared_locals(docs: list[dict[str, Any]]) -> set[str]:
    names: set[str] = set()
    for block in blocks(docs, "locals"):
        names.update(block)
    return names


def strings(obj: Any) -> Iterator[str]:
    if isinstance(obj, dict):
        for value in obj.values():
            yield from strings(value)
    elif isinstance(obj, list):
        for value in obj:
            yield from strings(value)
    elif isinstance(obj, str):
        yield obj


def references(docs: list[dict[str, Any]], pattern: re.Pattern[str]) -> set[str]:
    """Names referenced outside `variable` blocks (a validation naming its own
    variable is not a use)."""
    found: set[str] = set()
    for doc in docs:
        for kind, body in doc.items():
            if kind == "variable":
                continue
            for text in strings(body):
                found.update(pattern.findall(text))
    return found


def is_literal(value: Any) -> bool:
    """A plain string literal: no interpolation, no reference."""
    return isinstance(value, str) and "${" not in value


def walk_attributes(obj: Any, path: str = "") -> Iterator[tuple[str, str, Any]]:
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield path, key, value
            yield from walk_attributes(value, f"{path}.{key}" if path else key)
    elif isinstance(obj, list):
        for value in obj:
            yield from walk_attributes(value, path)


def terraform_resources(docs: list[dict[str, Any]], rtype: str) -> Iterator[tuple[str, dict]]:
    for block in blocks(docs, "resource"):
        for kind, named in block.items():
            if kind == rtype:
                yield from named.items()


# --------------------------------------------------------------------------- checks


def variable_problems(docs: list[dict[str, Any]]) -> list[str]:
    declared = set(declared_variables(docs))
    used = references(docs, VAR_REF)
    local_names = declared_locals(docs)
    local_used = references(docs, LOCAL_REF)
    problems = [f"variable used but not declared: {n}" for n in sorted(used - declared)]
    problems += [f"variable declared but never used: {n}" for n in sorted(declared - used)]
    problems += [f"local used but not defined: {n}" for n in sorted(local_used - local_names)]
    problems += [f"local defined but never used: {n}" for n in sorted(local_names - local_used)]
    return problems


def secret_variable_problems(docs: list[dict[str, Any]]) -> list[str]:
    problems = []
    for name, body in declared_variables(docs).items():
        if not SECRET_VAR.search(name):
            continue
        if body.get("sensitive") is not True:
            problems.append(f"secret variable {name} is not sensitive = true")
        if NO_DEFAULT_VAR.search(name):
            if "default" in body:
                problems.append(f"secret variable {name} has a default")
        elif body.get("default", "") not in ("", None):
            problems.append(f"secret variable {name} has a non-empty default")
    return problems


def literal_secret_problems(docs: list[dict[str, Any]]) -> list[str]:
    problems = []
    for doc in docs:
        for kind, body in doc.items():
            if kind == "variable":
                continue  # checked by secret_variable_problems
            for where, key, value in walk_attributes(body):
                if SECRET_ATTR.search(key) and is_literal(value) and value.strip():
                    problems.append(f"literal value for {where}.{key}")
    return problems


def secret_text_problems(files: list[Path]) -> list[str]:
    problems = []
    for path in files:
        text = path.read_text(encoding="utf-8", errors="replace")
        for what, pattern in SECRET_TEXT.items():
            for match in pattern.finditer(text):
                line = text.count("\n", 0, match.start()) + 1
                problems.append(f"{path.name}:{line}: looks like a {what}")
    return problems


def open_source_problems(source: Any, variables: dict[str, dict[str, Any]]) -> list[str]:
    if source is None:
        return ["rule has no source (Azure would treat that as any)"]
    if is_literal(source):
        value = source.strip().lower()
        if value in OPEN_SOURCES or value.endswith("/0"):
            return [f"source {source!r} is open to everybody"]
        return []
    problems = []
    for name in VAR_REF.findall(source):
        var = variables.get(name)
        if var is None:
            problems.append(f"source uses undeclared variable {name}")
            continue
        if "default" in var:
            problems.append(f"source variable {name} has a default ({var['default']!r})")
        conditions = " ".join(
            str(v.get("condition", "")) for v in var.get("validation", []) if isinstance(v, dict)
        ).lower()
        for needle in ("*", "0.0.0.0/0", "internet", "any"):
            # A list element of the condition, whatever quotes python-hcl2 left on it.
            if not re.search(rf"(^|[\s\[,\"']){re.escape(needle)}($|[\s\],\"'])", conditions):
                problems.append(f"validation of {name} does not reject {needle!r}")
    if not VAR_REF.search(source):
        problems.append(f"source {source!r} is neither a literal nor a variable")
    return problems


def security_rule_problems(docs: list[dict[str, Any]]) -> list[str]:
    variables = declared_variables(docs)
    rules = []
    for name, body in terraform_resources(docs, "azurerm_network_security_group"):
        rules += [(f"{name}/{r.get('name')}", r) for r in body.get("security_rule", [])]
    rules += list(terraform_resources(docs, "azurerm_network_security_rule"))
    problems = []
    for name, rule in rules:
        inbound = str(rule.get("direction", "")).lower() == "inbound"
        allow = str(rule.get("access", "")).lower() == "allow"
        if not (inbound and allow):
            continue
        sources = []
        if "source_address_prefix" in rule:
            sources.append(rule["source_address_prefix"])
        prefixes = rule.get("source_address_prefixes", [])
        sources += prefixes if isinstance(prefixes, list) else [prefixes]
        for source in sources or [None]:
            problems += [f"{name}: {p}" for p in open_source_problems(source, variables)]
        if rule.get("destination_port_range") == "*":
            problems.append(f"{name}: allows every destination port")
    return problems


def register_command_problems(command: str) -> list[str]:
    problems = []
    if "hvkube template create" not in command:
        problems.append(f"not an 'hvkube template create' command: {command!r}")
    flags = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", command))
    problems += [f"unknown flag {f}" for f in sorted(flags - TEMPLATE_CREATE_FLAGS)]
    problems += [f"missing flag {f}" for f in sorted(TEMPLATE_CREATE_REQUIRED - flags)]
    return problems


def wheel_url_problems(script: str, main_tf: str) -> list[str]:
    problems = []
    if not re.search(r"\[string\]\s*\$WheelUrl\b", script):
        problems.append("setup script has no -WheelUrl parameter")
    if not re.search(r"Get-RemoteFile\s+-Url\s+\$WheelUrl\b", script):
        problems.append("setup script does not download from $WheelUrl")
    for name, text in (("setup script", script), ("main.tf", main_tf)):
        for url in re.findall(r"https?://[^\s'\"]+\.whl\b", text):
            problems.append(f"{name} hardcodes a wheel URL: {url}")
    if not re.search(r"-WheelUrl '\$\{var\.hvkube_wheel_url\}'", main_tf):
        problems.append("main.tf does not pass var.hvkube_wheel_url to the setup script")
    return problems


def template_placeholders(text: str) -> set[str]:
    return set(re.findall(r"\$\{\s*([A-Za-z_]\w*)\s*\}", text))


def render_template(text: str, values: dict[str, str]) -> str:
    assert "%{" not in text, "template directives are not supported by this renderer"
    leftover = re.sub(r"\$\{\s*([A-Za-z_]\w*)\s*\}", lambda m: values[m.group(1)], text)
    assert "${" not in leftover
    return leftover


def answer_file_problems(text: str) -> list[str]:
    problems = []
    for match in re.finditer(r"<Password>\s*<Value>(.*?)</Value>", text, re.S):
        if match.group(1).strip() != "${agent_password}":
            problems.append(f"password in answer file is not the variable: {match.group(1)!r}")
    if "<Password>" not in text:
        problems.append("answer file sets no password")
    return problems


def templatefile_keys(pkr_text: str) -> set[str]:
    match = re.search(
        r"templatefile\([^,]*autounattend\.pkrtpl\.hcl\",\s*\{(.*?)\}\)", pkr_text, re.S
    )
    assert match, "template.pkr.hcl does not render the answer file with templatefile"
    return set(re.findall(r"^\s*(\w+)\s*=", match.group(1), re.M))


def xml_escape_like_packer(value: str) -> str:
    for old, new in (
        ("&", "&amp;"),
        ("<", "&lt;"),
        (">", "&gt;"),
        ('"', "&quot;"),
        ("'", "&apos;"),
    ):
        value = value.replace(old, new)
    return value


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def tf_docs() -> list[dict[str, Any]]:
    return load(TF_DIR, "*.tf")


@pytest.fixture(scope="module")
def pkr_docs() -> list[dict[str, Any]]:
    return load(PACKER_DIR, "*.pkr.hcl")


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------- files exist and parse


def test_expected_files_exist() -> None:
    for rel in (
        "terraform/main.tf",
        "terraform/variables.tf",
        "terraform/outputs.tf",
        "terraform/terraform.tfvars.example",
        "terraform/scripts/setup-host.ps1",
        "packer/template.pkr.hcl",
        "packer/answer/autounattend.pkrtpl.hcl",
        "README.md",
    ):
        assert (INFRA / rel).is_file(), rel
    assert list((PACKER_DIR / "scripts").glob("*.ps1"))


@pytest.mark.parametrize("path", HCL_FILES, ids=lambda p: p.name)
def test_hcl_file_parses(path: Path) -> None:
    doc = parse(path)
    assert isinstance(doc, dict) and doc, f"{path.name} parsed to nothing"


def test_broken_hcl_is_rejected(tmp_path: Path) -> None:
    bad = write(tmp_path, "bad.tf", 'resource "a" "b" {\n  name = "x"\n')
    with pytest.raises(Exception):  # noqa: B017 - the exception type differs between versions
        parse(bad)


# --------------------------------------------------------------------------- variables


@pytest.mark.parametrize("which", ["terraform", "packer"])
def test_variables_and_locals_declared_and_used(which: str, tf_docs, pkr_docs) -> None:
    docs = tf_docs if which == "terraform" else pkr_docs
    assert declared_variables(docs)
    assert variable_problems(docs) == []


def test_undeclared_variable_is_caught(tmp_path: Path) -> None:
    write(tmp_path, "main.tf", 'resource "a" "b" {\n  name = var.nope\n}\n')
    assert variable_problems(load(tmp_path, "*.tf")) == ["variable used but not declared: nope"]


def test_unused_variable_is_caught(tmp_path: Path) -> None:
    write(
        tmp_path,
        "main.tf",
        'variable "used" {\n  type = string\n}\n'
        'variable "idle" {\n  type = string\n'
        '  validation {\n    condition     = var.idle != ""\n'
        '    error_message = "x"\n  }\n}\n'
        'resource "a" "b" {\n  name = "${var.used}-x"\n}\n',
    )
    assert variable_problems(load(tmp_path, "*.tf")) == ["variable declared but never used: idle"]


def test_undefined_local_is_caught(tmp_path: Path) -> None:
    write(tmp_path, "main.tf", 'resource "a" "b" {\n  name = local.ghost\n}\n')
    assert variable_problems(load(tmp_path, "*.tf")) == ["local used but not defined: ghost"]


# --------------------------------------------------------------------------- secrets


@pytest.mark.parametrize("which", ["terraform", "packer"])
def test_secret_variables_are_sensitive_without_default(which: str, tf_docs, pkr_docs) -> None:
    docs = tf_docs if which == "terraform" else pkr_docs
    assert secret_variable_problems(docs) == []


def test_known_secrets_are_declared_sensitive(tf_docs, pkr_docs) -> None:
    tf_vars = declared_variables(tf_docs)
    pkr_vars = declared_variables(pkr_docs)
    for variables, name in (
        (tf_vars, "admin_password"),
        (tf_vars, "hvkube_wheel_url"),
        (pkr_vars, "agent_password"),
    ):
        assert variables[name].get("sensitive") is True, name
        assert "default" not in variables[name], name


def test_non_sensitive_secret_variable_is_caught(tmp_path: Path) -> None:
    write(
        tmp_path,
        "variables.tf",
        'variable "admin_password" {\n  type    = string\n  default = "Hunter2-Hunter2"\n}\n'
        'variable "api_token" {\n  type      = string\n  sensitive = true\n  default   = ""\n}\n',
    )
    problems = secret_variable_problems(load(tmp_path, "*.tf"))
    assert "secret variable admin_password is not sensitive = true" in problems
    assert "secret variable admin_password has a default" in problems
    assert "secret variable api_token has a default" in problems


@pytest.mark.parametrize("which", ["terraform", "packer"])
def test_no_literal_secret_attributes(which: str, tf_docs, pkr_docs) -> None:
    docs = tf_docs if which == "terraform" else pkr_docs
    assert literal_secret_problems(docs) == []


def test_literal_password_attribute_is_caught(tmp_path: Path) -> None:
    write(
        tmp_path,
        "main.tf",
        'resource "azurerm_windows_virtual_machine" "h" {\n'
        '  admin_username = "hvadmin"\n  admin_password = "Hunter2-Hunter2"\n}\n',
    )
    problems = literal_secret_problems(load(tmp_path, "*.tf"))
    assert problems == ["literal value for azurerm_windows_virtual_machine.h.admin_password"]


def test_literal_winrm_password_in_packer_is_caught(tmp_path: Path) -> None:
    write(
        tmp_path,
        "t.pkr.hcl",
        'source "hyperv-iso" "w" {\n  winrm_username = "agent"\n  winrm_password = "packer"\n}\n',
    )
    assert literal_secret_problems(load(tmp_path, "*.pkr.hcl")) == [
        "literal value for hyperv-iso.w.winrm_password"
    ]


def infra_text_files() -> list[Path]:
    suffixes = {".tf", ".hcl", ".ps1", ".md", ".example", ".xml"}
    return sorted(p for p in INFRA.rglob("*") if p.is_file() and p.suffix in suffixes)


def test_no_credentials_in_any_infra_file() -> None:
    files = infra_text_files()
    assert SETUP_SCRIPT in files and ANSWER_TEMPLATE in files and README in files
    assert secret_text_problems(files) == []


@pytest.mark.parametrize(
    ("snippet", "what"),
    [
        ('admin_password = "Hunter2-Hunter2"', "literal password assignment"),
        ("$AgentPassword = 'Sommer2024!'", "literal password assignment"),
        ("-----BEGIN RSA PRIVATE KEY-----", "private key"),
        ("https://x.blob.core.windows.net/c/h.whl?sv=2022&sig=AbCdEfGhIjKlMnOpQrSt%3D", "SAS"),
        ("<Key>VK7JG-NPHTM-C97JM-9MPGT-3V66T</Key>", "product key"),
        ("DefaultEndpointsProtocol=https;AccountKey=" + "A" * 40, "storage account key"),
    ],
)
def test_credential_text_is_caught(tmp_path: Path, snippet: str, what: str) -> None:
    path = write(tmp_path, "leak.ps1", f"# setup\n{snippet}\n")
    problems = secret_text_problems([path])
    assert problems and what in problems[0]


def test_tfvars_example_sets_no_secret(tf_docs) -> None:
    text = (TF_DIR / "terraform.tfvars.example").read_text(encoding="utf-8")
    assigned = set(re.findall(r"^\s*([A-Za-z_]\w*)\s*=", text, re.M))
    sensitive = {n for n, b in declared_variables(tf_docs).items() if b.get("sensitive") is True}
    assert assigned, "example sets nothing"
    assert assigned <= set(declared_variables(tf_docs)), assigned - set(declared_variables(tf_docs))
    assert not assigned & sensitive
    assert "allowed_ip" in assigned


# --------------------------------------------------------------------------- network exposure


def test_security_rules_are_not_open_by_default(tf_docs) -> None:
    rules = [
        r
        for _, body in terraform_resources(tf_docs, "azurerm_network_security_group")
        for r in body.get("security_rule", [])
    ]
    assert any(str(r.get("destination_port_range")) == "3389" for r in rules), "no RDP rule"
    assert security_rule_problems(tf_docs) == []


def test_allowed_ip_has_no_default_and_rejects_open_values(tf_docs) -> None:
    var = declared_variables(tf_docs)["allowed_ip"]
    assert "default" not in var
    assert open_source_problems("${var.allowed_ip}", declared_variables(tf_docs)) == []


NSG = """
resource "azurerm_network_security_group" "n" {{
  security_rule {{
    name                       = "rdp"
    direction                  = "Inbound"
    access                     = "Allow"
    protocol                   = "Tcp"
    destination_port_range     = "3389"
    source_address_prefix      = {source}
  }}
}}
"""


@pytest.mark.parametrize("source", ['"*"', '"0.0.0.0/0"', '"Internet"', '"Any"', '"10.0.0.0/0"'])
def test_open_literal_source_is_caught(tmp_path: Path, source: str) -> None:
    write(tmp_path, "main.tf", NSG.format(source=source))
    problems = security_rule_problems(load(tmp_path, "*.tf"))
    assert len(problems) == 1 and "open to everybody" in problems[0]


def test_source_variable_with_open_default_is_caught(tmp_path: Path) -> None:
    write(
        tmp_path,
        "main.tf",
        'variable "allowed_ip" {\n  type    = string\n  default = "0.0.0.0/0"\n}\n'
        + NSG.format(source="var.allowed_ip"),
    )
    problems = security_rule_problems(load(tmp_path, "*.tf"))
    assert any("has a default" in p for p in problems)
    assert any("does not reject '*'" in p for p in problems)


def test_separate_rule_resource_with_open_prefixes_is_caught(tmp_path: Path) -> None:
    write(
        tmp_path,
        "main.tf",
        'resource "azurerm_network_security_rule" "api" {\n'
        '  direction = "Inbound"\n  access = "Allow"\n'
        '  destination_port_range = "8080"\n'
        '  source_address_prefixes = ["203.0.113.4/32", "Internet"]\n}\n',
    )
    problems = security_rule_problems(load(tmp_path, "*.tf"))
    assert problems == ["api: source 'Internet' is open to everybody"]


TERRAFORM = shutil.which("terraform")


@pytest.mark.skipif(TERRAFORM is None, reason="terraform is not installed")
def test_terraform_validation_rejects_open_allowed_ip(tmp_path: Path) -> None:
    """Run the real validation blocks: a config made of variables.tf alone
    needs no provider, so `terraform plan` works offline."""
    shutil.copy(TF_DIR / "variables.tf", tmp_path / "variables.tf")
    env = {**os.environ, "CHECKPOINT_DISABLE": "1", "TF_IN_AUTOMATION": "1"}

    def tf(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [TERRAFORM, *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    assert tf("init", "-input=false", "-backend=false").returncode == 0
    required = [
        "-var=subscription_id=00000000-0000-0000-0000-000000000000",
        "-var=admin_password=not-a-real-one-1",
        "-var=hvkube_wheel_url=https://example.org/hvkube-0.1.0-py3-none-any.whl",
    ]

    def plan(allowed_ip: str) -> int:
        args = ["plan", "-input=false", "-lock=false", *required, f"-var=allowed_ip={allowed_ip}"]
        return tf(*args).returncode

    for open_value in ("*", "0.0.0.0/0", "Internet", "Any", "any", "10.0.0.0/0"):
        assert plan(open_value) != 0, open_value
    assert plan("203.0.113.10/32") == 0
    assert plan("203.0.113.10") == 0
    missing = tf("plan", "-input=false", "-lock=false", *required)
    assert missing.returncode != 0, "allowed_ip must have no default"


@pytest.mark.skipif(TERRAFORM is None, reason="terraform is not installed")
def test_terraform_files_are_formatted() -> None:
    result = subprocess.run(
        [TERRAFORM, "fmt", "-check", "-diff", str(TF_DIR)],
        env={**os.environ, "CHECKPOINT_DISABLE": "1"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout


# --------------------------------------------------------------------------- host setup script


def test_setup_script_installs_from_the_wheel_url_variable() -> None:
    script = SETUP_SCRIPT.read_text(encoding="utf-8")
    main_tf = (TF_DIR / "main.tf").read_text(encoding="utf-8")
    assert wheel_url_problems(script, main_tf) == []


def test_hardcoded_wheel_url_is_caught() -> None:
    script = SETUP_SCRIPT.read_text(encoding="utf-8")
    main_tf = (TF_DIR / "main.tf").read_text(encoding="utf-8")
    url = "https://example.org/dist/hvkube-0.1.0-py3-none-any.whl"
    broken = script.replace("Get-RemoteFile -Url $WheelUrl", f"Get-RemoteFile -Url '{url}'")
    problems = wheel_url_problems(broken, main_tf.replace("${var.hvkube_wheel_url}", url))
    assert "setup script does not download from $WheelUrl" in problems
    assert f"setup script hardcodes a wheel URL: {url}" in problems
    assert "main.tf does not pass var.hvkube_wheel_url to the setup script" in problems


def test_setup_script_is_ascii_for_windows_powershell() -> None:
    # Windows PowerShell 5.1 reads a BOM-less script as ANSI.
    SETUP_SCRIPT.read_bytes().decode("ascii")
    for path in (PACKER_DIR / "scripts").glob("*.ps1"):
        path.read_bytes().decode("ascii")


def function_body(script: str, name: str) -> str:
    match = re.search(rf"^function {name} \{{\n(.*?)^\}}", script, re.S | re.M)
    assert match, f"function {name} not found"
    return match.group(1)


def test_setup_script_keeps_secrets_off_disk_and_logs() -> None:
    script = SETUP_SCRIPT.read_text(encoding="utf-8")
    param_block = script[script.index("param(") : script.index("Set-StrictMode")]
    assert not re.search(r"password|token|secret", param_block, re.I)
    # The startup task after the restart never receives the wheel URL.
    assert "$WheelUrl" not in function_body(script, "Register-ResumeTask")
    # URLs are logged without their query string (SAS tokens).
    assert "Get-SafeUrl $Url" in function_body(script, "Get-RemoteFile")
    assert "AbsolutePath" in function_body(script, "Get-SafeUrl")


def test_setup_script_creates_folders_before_writing() -> None:
    script = SETUP_SCRIPT.read_text(encoding="utf-8")
    # The log folder is made before the logging helpers are even defined.
    make_log_dir = script.index("New-Item -ItemType Directory -Force -Path $LogDir")
    assert make_log_dir < script.index("function Write-Log")
    # Every folder the steps write into is created by the first step.
    for folder in ("$SetupDir", "$ServiceDir", "$ToolsDir", "$DownloadDir"):
        assert folder in function_body(script, "Initialize-Folders"), folder
    assert "New-Item -ItemType Directory -Force -Path (Split-Path -Parent $OutFile)" in (
        function_body(script, "Get-RemoteFile")
    )
    main = script[
        script.index("# ---------------------------------------------------------------- main") :
    ]
    assert main.index("'folders'") < main.index("'data disk'") < main.index("'hvkube'")


def test_setup_script_service_and_restart_handling() -> None:
    script = SETUP_SCRIPT.read_text(encoding="utf-8")
    service = function_body(script, "Install-HvkubeService")
    assert "<depend>vmms</depend>" in service
    assert "<arguments>run</arguments>" in service
    assert "<executable>$HvkubeExe</executable>" in service
    # The extension cannot survive a restart it did not expect: no -Restart,
    # a startup task and a delayed restart instead.
    assert not re.search(r"Install-WindowsFeature[^\n]*-Restart", script)
    assert "New-ScheduledTaskTrigger -AtStartup" in script
    assert "Unregister-ScheduledTask -TaskName $ResumeTaskName" in script
    for feature in ("Hyper-V", "DHCP"):
        assert f"'{feature}'" in function_body(script, "Install-Roles")
    network = function_body(script, "Initialize-GuestNetwork")
    for cmdlet in ("New-VMSwitch", "-SwitchType Internal", "New-NetNat", "Add-DhcpServerv4Scope"):
        assert cmdlet in network


def test_bootstrap_is_protected_and_reruns_on_change(tf_docs) -> None:
    (ext,) = [b for name, b in terraform_resources(tf_docs, "azurerm_virtual_machine_extension")]
    assert "commandToExecute" in ext["protected_settings"]
    assert "commandToExecute" not in ext.get("settings", "")
    assert "sha256(local.setup_script)" in ext["settings"]


# --------------------------------------------------------------------------- Packer template


def register_command_expression(pkr_docs) -> str:
    for block in blocks(pkr_docs, "locals"):
        if "hvkube_register_command" in block:
            return block["hvkube_register_command"]
    raise AssertionError("local hvkube_register_command not found")


def test_packer_prints_a_valid_register_command(pkr_docs) -> None:
    expression = register_command_expression(pkr_docs)
    assert register_command_problems(expression) == []
    post = [
        p
        for build in blocks(pkr_docs, "build")
        for p in build.get("post-processor", [])
        if "shell-local" in p
    ]
    assert post, "no shell-local post-processor"
    inline = " ".join(post[0]["shell-local"]["inline"])
    assert "local.hvkube_register_command" in inline


@pytest.mark.parametrize(
    ("command", "problem"),
    [
        ("hvkube template create --name x --vhdx y --ram 4096", "unknown flag --ram"),
        ("hvkube template create --vhdx y", "missing flag --name"),
        ("hvkube template add --name x --vhdx y", "not an 'hvkube template create' command"),
    ],
)
def test_bad_register_command_is_caught(command: str, problem: str) -> None:
    assert any(problem in p for p in register_command_problems(command))


def test_packer_builds_gen2_windows_with_variable_credentials(pkr_docs) -> None:
    (source,) = [s["hyperv-iso"]["win11"] for s in blocks(pkr_docs, "source")]
    assert source["generation"] == 2
    assert source["winrm_password"] == "${var.agent_password}"
    assert "autounattend.xml" in source["cd_content"]
    scripts = [
        Path(p["powershell"]["script"]).name
        for build in blocks(pkr_docs, "build")
        for p in build.get("provisioner", [])
        if "powershell" in p
    ]
    for name in scripts:
        assert (PACKER_DIR / "scripts" / name).is_file(), name


def test_answer_file_placeholders_match_templatefile_call() -> None:
    text = ANSWER_TEMPLATE.read_text(encoding="utf-8")
    pkr_text = (PACKER_DIR / "template.pkr.hcl").read_text(encoding="utf-8")
    assert template_placeholders(text) == templatefile_keys(pkr_text)


def test_answer_file_renders_to_xml_with_injected_password() -> None:
    text = ANSWER_TEMPLATE.read_text(encoding="utf-8")
    assert answer_file_problems(text) == []
    password = "p<a&s's\"w>rd-123"
    values = {name: name.upper() for name in template_placeholders(text)}
    values["agent_password"] = xml_escape_like_packer(password)
    values["product_key"] = ""
    root = ET.fromstring(render_template(text, values).encode("utf-8"))
    ns = {"u": "urn:schemas-microsoft-com:unattend"}
    found = [v.text for v in root.iterfind(".//u:Password/u:Value", ns)]
    assert found == [password, password]  # the local account and its auto-logon
    assert root.find(".//u:AutoLogon/u:Username", ns).text == "AGENT_USERNAME"


def test_packer_escapes_every_xml_special_character(pkr_docs) -> None:
    for block in blocks(pkr_docs, "locals"):
        if "xml_agent_password" in block:
            expression = block["xml_agent_password"]
            break
    else:
        raise AssertionError("local xml_agent_password not found")
    for entity in ("&amp;", "&lt;", "&gt;", "&quot;", "&apos;"):
        assert entity in expression
    # & must be replaced first, or the other entities would be escaped twice:
    # it is the innermost replace().
    assert re.search(r"replace\(var\.agent_password,\s*\"&\"", expression)


def test_literal_password_in_answer_file_is_caught() -> None:
    text = ANSWER_TEMPLATE.read_text(encoding="utf-8")
    broken = text.replace("<Value>${agent_password}</Value>", "<Value>Passw0rd!</Value>", 1)
    assert answer_file_problems(broken) == [
        "password in answer file is not the variable: 'Passw0rd!'"
    ]


def test_template_settings_for_agents() -> None:
    script = (PACKER_DIR / "scripts" / "configure-agent.ps1").read_text(encoding="utf-8")
    for needle in (
        "AutoAdminLogon",
        "LsaStorePrivateData",
        "fDenyTSConnections",
        "standby-timeout-ac",
        "ScreenSaveActive",
        "NoLockScreen",
        "NoAutoRebootWithLoggedOnUsers",
        "vmicheartbeat",
    ):
        assert needle in script, needle
    # The plain-text Winlogon value is removed, never set.
    assert not re.search(r"Set-Reg[^\n]*'DefaultPassword'", script)
    software = (PACKER_DIR / "scripts" / "install-software.ps1").read_text(encoding="utf-8")
    for needle in ("Chrome", "node-v", "python-"):
        assert needle in software


# --------------------------------------------------------------------------- README


README_COMMANDS = [
    "az login",
    "terraform init",
    "terraform plan",
    "terraform apply",
    "packer build",
    "hvkube template create --name win11-chrome --vhdx",
    "hvkube pool create --name browser-pool --template win11-chrome --count 5 --warm 3 --hot 1",
    "hvkube pool provision browser-pool",
    "hvkube acquire --pool browser-pool",
    "hvkube release",
    "--reset",
    "hvkube events",
    "hvkube run",
    "terraform destroy",
]


def test_readme_walks_through_every_step() -> None:
    text = README.read_text(encoding="utf-8")
    for command in README_COMMANDS:
        assert command in text, command
    for line in re.findall(r"hvkube template create[^\n`]*", text):
        assert register_command_problems(line) == [], line
    for topic in ("Hyper-V Administrators", "execution policy", "nested virtualization", "cost"):
        assert topic.lower() in text.lower(), topic


def test_checks_catch_breakage_in_a_copy_of_the_real_host(tmp_path: Path) -> None:
    for path in TF_DIR.glob("*.tf"):
        shutil.copy(path, tmp_path / path.name)
    main = tmp_path / "main.tf"
    text = main.read_text(encoding="utf-8")
    assert "source_address_prefix      = var.allowed_ip" in text
    main.write_text(
        text.replace("source_address_prefix      = var.allowed_ip", 'source_address_prefix = "*"')
        .replace("admin_password      = var.admin_password", 'admin_password = "Hunter2-Hunter2"')
        .replace("ip_rules       = [var.allowed_ip]", "ip_rules = []"),
        encoding="utf-8",
    )
    docs = load(tmp_path, "*.tf")
    assert any("'*' is open to everybody" in p for p in security_rule_problems(docs))
    assert literal_secret_problems(docs) == [
        "literal value for azurerm_windows_virtual_machine.host.admin_password"
    ]
    # allowed_ip and admin_password are now declared but unused.
    assert "variable declared but never used: allowed_ip" in variable_problems(docs)


# -- checkov ------------------------------------------------------------------------------------

# Deliberate exceptions, each marked inline in main.tf with its reason.
CHECKOV_EXCEPTIONS = {
    "CKV_AZURE_50": "the setup extension",
    "CKV_AZURE_119": "the RDP address, restricted to allowed_ip",
    "CKV_AZURE_189": "the key vault's endpoint, restricted to allowed_ip",
    "CKV2_AZURE_32": "no private endpoint for the key vault, for the same reason",
}


def checkov_binary() -> str | None:
    """checkov lives in its own virtual environment (.ci/run makes it): its pins would
    change the project's."""
    local = ROOT / ".venv-checkov" / "bin" / "checkov"
    return str(local) if local.exists() else shutil.which("checkov")


def test_the_azure_host_passes_checkov() -> None:
    checkov = checkov_binary()
    if checkov is None:
        if os.environ.get("CI") == "true":
            pytest.fail("checkov is missing: .ci/run installs it into .venv-checkov")
        pytest.skip(
            "checkov is not installed (python3 -m venv .venv-checkov && pip install checkov)"
        )
    done = subprocess.run(
        [checkov, "-d", str(TF_DIR), "--framework", "terraform", "--skip-download", "-o", "json"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE"},
    )
    report = json.loads(done.stdout)
    results = report["results"]
    failed = [(c["check_id"], c["resource"]) for c in results["failed_checks"]]
    assert failed == [], done.stdout[-2000:]
    assert results["parsing_errors"] == []
    skipped = {
        c["check_id"]: c["check_result"].get("suppress_comment", "")
        for c in results["skipped_checks"]
    }
    assert set(skipped) == set(CHECKOV_EXCEPTIONS)
    for check_id, reason in skipped.items():
        assert len(reason) > 40, f"{check_id} is skipped without its reason"
    assert report["summary"]["passed"] >= 21

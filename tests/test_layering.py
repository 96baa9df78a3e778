"""core is the engine: importable and usable without the dashboard."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

CORE = Path(__file__).resolve().parent.parent / "core"


def _core_imports_of(packages: set[str]) -> list[str]:
    """Where core's source imports one of `packages` (as file:line module)."""
    offenders = []
    for path in CORE.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                if name.split(".")[0] in packages:
                    offenders.append(f"{path.relative_to(CORE.parent)}:{node.lineno} {name}")
    return offenders


def test_core_source_never_imports_the_dashboard() -> None:
    assert _core_imports_of({"textual", "hvkube_tui"}) == []


def test_core_never_refers_to_the_tests() -> None:
    """Test doubles (the fake PowerShell host) live in tests/fakes; the package never
    imports them or names them in a command line."""
    assert _core_imports_of({"tests"}) == []
    named = [
        str(path.relative_to(CORE.parent))
        for path in CORE.rglob("*.py")
        if "tests.fakes" in path.read_text(encoding="utf-8") or "fakeps" in path.name
    ]
    assert named == []


def test_importing_the_engine_and_cli_loads_no_textual() -> None:
    code = (
        "import sys, core, core.cli, core.engine, core.provision, core.reconcile; "
        "core.cli.build_parser(); "
        # The dashboard's `ui`/`demo` commands register through the hvkube.commands entry
        # point, which imports hvkube_tui.cli (argparse only); nothing more may come along.
        "ok = {'hvkube_tui', 'hvkube_tui.cli'}; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('textual', 'hvkube_tui') "
        "and m not in ok]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr

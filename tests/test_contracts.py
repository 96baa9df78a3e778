"""The contracts hold on the code, and each can fail: a violation planted in a scratch copy
of the source is found."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from contracts import CONTRACTS

REPO = Path(__file__).resolve().parent.parent

# A line that breaks each contract, and where it is planted.
VIOLATIONS = {
    "core never imports the dashboard": ("core/engine.py", "import hvkube_tui.app\n"),
    "only the storage layer imports peewee": ("core/provision.py", "import peewee\n"),
    "only the storage layer writes SQL": (
        "core/scheduler.py",
        "\n\ndef _count(engine):\n    return engine.store.fetch_all('SELECT 1', ())\n",
    ),
    "no module calls another's _private names": (
        "core/reconcile.py",
        "\ndef _sneak(engine):\n    return engine._check_backend(False)\n",
    ),
}


@pytest.mark.parametrize("name", sorted(CONTRACTS))
def test_the_code_keeps_the_contract(name: str) -> None:
    assert CONTRACTS[name](REPO) == []


@pytest.mark.parametrize("name", sorted(CONTRACTS))
def test_a_violation_breaks_the_contract(name: str, tmp_path: Path) -> None:
    for folder in ("core", "hvkube_tui"):
        shutil.copytree(REPO / folder, tmp_path / folder)
    check: Callable[[Path], list[str]] = CONTRACTS[name]
    assert check(tmp_path) == []
    where, line = VIOLATIONS[name]
    with (tmp_path / where).open("a", encoding="utf-8") as fh:
        fh.write(line)
    found = check(tmp_path)
    assert len(found) == 1 and found[0].startswith(where), found

"""The code's boundaries, checked on its source (design: "Layers", architecture.md).

- `core` never imports the dashboard (`hvkube_tui`) or Textual;
- only the storage layer (`core/store/`) imports peewee, writes SQL or touches its tables
  (`store.t`), in core and in the dashboard; the simulated host keeps its own file and is
  not the store;
- no module reaches into another module's `_private` names: `from m import _x`, `m._x` on an
  imported module, or `obj._x` on anything but `self`/`cls` of the class being written.

Each check takes a root folder, so the tests can run it on a scratch copy with a violation put
in and see it fail.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

STORAGE = ("core/store/",)
# Private names of other libraries that the code may use on purpose, with why.
ALLOWED_PRIVATE = {
    "_exit",  # os._exit: leave a forked or dying process without running cleanup
    "_replace",  # NamedTuple._replace is public API despite the underscore
    "_asdict",  # NamedTuple._asdict, likewise
    "_fields",  # NamedTuple._fields, likewise
}


def python_files(root: Path, *folders: str) -> Iterator[tuple[str, ast.Module]]:
    for folder in folders:
        for path in sorted((root / folder).rglob("*.py")):
            rel = path.relative_to(root).as_posix()
            yield rel, ast.parse(path.read_text(encoding="utf-8"), filename=rel)


def _imports(tree: ast.Module) -> Iterator[tuple[int, str]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module


def core_imports_no_dashboard(root: Path) -> list[str]:
    return [
        f"{rel}:{line} imports {name}"
        for rel, tree in python_files(root, "core")
        for line, name in _imports(tree)
        if name.split(".")[0] in {"textual", "hvkube_tui"}
    ]


def only_storage_imports_peewee(root: Path) -> list[str]:
    return [
        f"{rel}:{line} imports {name} (only the storage layer may)"
        for rel, tree in python_files(root, "core", "hvkube_tui")
        if not rel.startswith(STORAGE)
        for line, name in _imports(tree)
        if name.split(".")[0] in {"peewee", "playhouse"}
    ]


_SQL = re.compile(r"^\s*(SELECT\s|UPDATE\s+\"|INSERT\s+INTO\s|DELETE\s+FROM\s)")
# The simulated host keeps its own SQLite file: it stands in for a hypervisor, not the store.
NOT_THE_STORE = ("core/backends/sim.py",)


def only_storage_writes_sql(root: Path) -> list[str]:
    """SQL text or the store's tables (`.t`) anywhere outside the storage layer."""
    found: list[str] = []
    for rel, tree in python_files(root, "core", "hvkube_tui"):
        if rel.startswith(STORAGE) or rel in NOT_THE_STORE:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                if _SQL.match(node.value):
                    found.append(f"{rel}:{node.lineno} SQL {node.value[:40]!r}")
            elif isinstance(node, ast.Attribute) and node.attr == "t":
                found.append(f"{rel}:{node.lineno} reaches the tables: {ast.unparse(node)}")
    return found


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__") and name not in ALLOWED_PRIVATE


def no_private_reach(root: Path) -> list[str]:
    """`from x import _y`, and `a._b` where `a` is not self or cls (nor super())."""
    found: list[str] = []
    for rel, tree in python_files(root, "core", "hvkube_tui"):
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                for alias in node.names:
                    if _private(alias.name):
                        found.append(f"{rel}:{node.lineno} imports {alias.name}")
            elif isinstance(node, ast.Attribute) and _private(node.attr):
                owner = node.value
                if isinstance(owner, ast.Name) and owner.id in {"self", "cls"}:
                    continue
                if (
                    isinstance(owner, ast.Call)
                    and isinstance(owner.func, ast.Name)
                    and owner.func.id == "super"
                ):
                    continue
                found.append(f"{rel}:{node.lineno} reaches {ast.unparse(node)}")
    return found


CONTRACTS = {
    "core never imports the dashboard": core_imports_no_dashboard,
    "only the storage layer imports peewee": only_storage_imports_peewee,
    "only the storage layer writes SQL": only_storage_writes_sql,
    "no module calls another's _private names": no_private_reach,
}

"""A store is recognised before anything is written to it, and read-only changes no file.

Each scenario compares the files of the folder (names and bytes) before and after a real
`hvkube` process ran on it."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

from core.store import SCHEMA_VERSION, Store
from tests.conftest import run_cli


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under `folder`: relative name -> sha256 of its bytes."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def unrelated_sqlite(path: Path) -> None:
    """Somebody else's SQLite file: its own table and rows, rollback journal."""
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    con.executemany("INSERT INTO notes (body) VALUES (?)", [("keep me",), ("and me",)])
    con.commit()
    con.close()


def hvkube(folder: Path, *args: str) -> tuple[int, str]:
    # The simulated host's state would go beside the database: in `folder`.
    result = run_cli(*args, env={"HVKUBE_DATA_DIR": str(folder / "data")})
    return result.returncode, result.stderr


def one_line_error(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("hvkube: error: "), stderr
    return lines[0]


def test_readonly_on_an_unrelated_sqlite_file_changes_nothing(tmp_path: Path) -> None:
    app = tmp_path / "app.sqlite"
    unrelated_sqlite(app)
    before = snapshot(tmp_path)
    code, err = hvkube(tmp_path, "--readonly", "--db", str(app), "vm", "list")
    assert code == 2
    assert "not an hvkube store" in one_line_error(err)
    assert snapshot(tmp_path) == before  # no tables added, no WAL, no simulated host file
    con = sqlite3.connect(app)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    con.close()


def test_an_unrelated_sqlite_file_is_refused_untouched_without_readonly_too(
    tmp_path: Path,
) -> None:
    app = tmp_path / "app.sqlite"
    unrelated_sqlite(app)
    before = snapshot(tmp_path)
    code, err = hvkube(tmp_path, "--db", str(app), "template", "list")
    assert code == 2
    assert str(app) in one_line_error(err)
    assert snapshot(tmp_path) == before


def test_a_file_that_is_not_sqlite_is_refused_untouched(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes, not a database\n")
    before = snapshot(tmp_path)
    code, err = hvkube(tmp_path, "--db", str(notes), "vm", "list")
    assert code == 2
    assert "not an SQLite database" in one_line_error(err)
    assert snapshot(tmp_path) == before


def test_readonly_on_a_path_that_does_not_exist_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "new-folder" / "store.db"
    code, err = hvkube(tmp_path, "--readonly", "--db", str(missing), "vm", "list")
    assert code == 2
    assert "does not exist" in one_line_error(err)
    assert not missing.parent.exists()
    assert snapshot(tmp_path) == {}
    assert not (tmp_path / "data").exists()


def test_readonly_reads_a_store_without_changing_a_byte(tmp_path: Path) -> None:
    db = tmp_path / "hvkube.db"
    assert hvkube(tmp_path, "--db", str(db), "template", "create", "--name", "t",
                  "--vhdx", r"C:\T\t.vhdx")[0] == 0  # fmt: skip
    assert hvkube(tmp_path, "--db", str(db), "pool", "create", "--name", "p",
                  "--template", "t", "--count", "2", "--warm", "2")[0] == 0  # fmt: skip
    assert hvkube(tmp_path, "--db", str(db), "pool", "provision", "p")[0] == 0
    before = snapshot(tmp_path)
    assert "sim-host.db" in before and "hvkube.db" in before
    for args in (["vm", "list"], ["pool", "list"], ["events"], ["template", "list"]):
        code, err = hvkube(tmp_path, "--readonly", "--db", str(db), *args)
        assert code == 0, err
    code, err = hvkube(
        tmp_path, "--readonly", "--db", str(db), "pool", "scale", "p", "--count", "3"
    )
    assert code == 2 and "read-only" in err
    assert snapshot(tmp_path) == before


def test_readonly_does_not_create_the_simulated_hosts_file(tmp_path: Path) -> None:
    db = tmp_path / "hvkube.db"
    Store(db).close()  # a store, but no simulated host made yet
    before = snapshot(tmp_path)
    code, err = hvkube(tmp_path, "--readonly", "--db", str(db), "vm", "list")
    assert code == 0, err
    assert snapshot(tmp_path) == before
    assert not (tmp_path / "sim-host.db").exists()


def test_readonly_refuses_a_store_that_needs_migrating(tmp_path: Path) -> None:
    db = tmp_path / "hvkube.db"
    Store(db).close()
    con = sqlite3.connect(db)  # as an older hvkube left it
    con.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    con.commit()
    con.close()
    before = snapshot(tmp_path)
    code, err = hvkube(tmp_path, "--readonly", "--db", str(db), "vm", "list")
    assert code == 2
    line = one_line_error(err)
    assert "schema version 2" in line and "without --readonly" in line
    assert snapshot(tmp_path) == before
    # Without --readonly the store is upgraded and used.
    assert hvkube(tmp_path, "--db", str(db), "vm", "list")[0] == 0
    con = sqlite3.connect(db)
    version = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    con.close()
    assert version == (str(SCHEMA_VERSION),)


def test_a_readonly_reader_follows_a_writer_that_starts_after_it(tmp_path: Path) -> None:
    db = tmp_path / "hvkube.db"
    Store(db).close()  # quiescent: no -wal file, so the reader opens it immutable
    before = snapshot(tmp_path)
    reader = Store(db, readonly=True)
    try:
        first = reader.data_version()
        assert snapshot(tmp_path) == before  # not even SQLite's side files
        writer = Store(db)
        writer.set_meta("probe", "1")
        assert reader.data_version() != first
        assert reader.meta("probe") == "1"
        writer.close()
    finally:
        reader.close()

"""The store: SQLite set up for many processes, migrations, and owner-only files."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

import pytest

import core.store as store_module
from core.store import SCHEMA_VERSION, Store


def test_sqlite_settings_and_indexes(tmp_path: Path) -> None:
    store = Store(tmp_path / "h.db")
    db = store.db
    assert db.execute_sql("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute_sql("PRAGMA foreign_keys").fetchone()[0] == 1
    assert db.execute_sql("PRAGMA busy_timeout").fetchone()[0] >= 5000
    indexes = {row[1] for row in db.execute_sql("PRAGMA index_list('vm')").fetchall()}
    assert any("pool" in name and "state" in name for name in indexes)
    agent_indexes = {row[1] for row in db.execute_sql("PRAGMA index_list('agent')").fetchall()}
    assert any("status" in name for name in agent_indexes)
    assert store.schema_version() == SCHEMA_VERSION


def test_files_are_owner_only(tmp_path: Path) -> None:
    store = Store(tmp_path / "new" / "h.db")
    assert store.file_mode() == 0o600
    assert stat.S_IMODE((tmp_path / "new").stat().st_mode) == 0o700


def test_an_old_database_is_migrated_on_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "old.db"
    monkeypatch.setattr(store_module, "SCHEMA_VERSION", 1)
    old = Store(path)
    old.t.Template.create(name="t", disk_path="C:\\t.vhdx", memory_mb=2048, cpus=1)
    old.close()
    assert "lease" not in {
        r[0]
        for r in sqlite3.connect(path).execute("SELECT name FROM sqlite_master WHERE type='table'")
    }
    monkeypatch.setattr(store_module, "SCHEMA_VERSION", 2)
    new = Store(path)
    assert new.schema_version() == 2
    assert new.t.Template.get_by_id("t").memory_mb == 2048  # data kept
    assert new.db.table_exists("lease")


def test_a_newer_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    store = Store(path)
    store.t.Meta.update(value="99").where(store.t.Meta.key == "schema_version").execute()
    store.close()
    with pytest.raises(Exception, match="newer than this hvkube"):
        Store(path)


def test_foreign_keys_guard_templates(tmp_path: Path) -> None:
    import peewee

    store = Store(tmp_path / "h.db")
    store.t.Template.create(name="t", disk_path="C:\\t.vhdx", memory_mb=2048, cpus=1)
    store.t.Pool.create(name="p", template="t", desired_count=1)
    with pytest.raises(peewee.IntegrityError):
        store.t.Template.delete_by_id("t")

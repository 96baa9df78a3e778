"""What an attacker can leave where hvkube looks: another program's SQLite file given as
`--db` to every command, another user's files (or links) in the data folder, a foreign file
where the simulated host keeps its state, and links planted where output is written. Each is
refused with one line, exit 2, and nothing is created or changed."""

from __future__ import annotations

import hashlib
import os
import sqlite3
from pathlib import Path

import pytest
from ctl_support import hvkube, isolated_env

from core import open_engine

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX owners, modes and links")

NOBODY = 65534
as_root = pytest.mark.skipif(
    os.name != "posix" or os.geteuid() != 0, reason="planting another user's file needs root"
)


def digest(folder: Path) -> dict[str, str]:
    """Each file's (and link's) name and content hash: what "nothing changed" means here."""
    out = {}
    for path in sorted(folder.iterdir()):
        if path.is_symlink():
            out[path.name] = "link -> " + os.readlink(path)
        elif path.is_file():
            out[path.name] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def one_error(result: object) -> str:
    stderr = getattr(result, "stderr", "")
    errors = [line for line in stderr.splitlines() if line.startswith("hvkube:")]
    assert len(errors) == 1 and "Traceback" not in stderr, stderr
    return errors[0]


# -- another program's SQLite file as --db ------------------------------------------------------

EVERY_COMMAND = [
    ("template", "list"),
    ("pool", "list"),
    ("vm", "list"),
    ("host", "list"),
    ("acquire", "-p", "p"),
    ("release", "x"),
    ("agent", "list"),
    ("events",),
    ("reconcile",),
    ("token", "list"),
    ("sim", "clear"),
    ("mcp",),
    ("run", "--once"),
    ("serve", "--port", "0"),
    ("--readonly", "serve", "--port", "0"),
    ("--readonly", "vm", "list"),
    ("ui",),
]


@pytest.fixture
def foreign_db(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir(mode=0o700)
    db = folder / "app.sqlite"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE users (name TEXT)")
    con.execute("INSERT INTO users VALUES ('alice')")
    con.commit()
    con.close()
    return db


@pytest.mark.parametrize("command", EVERY_COMMAND, ids=" ".join)
def test_every_command_leaves_another_programs_database_alone(
    tmp_path: Path, foreign_db: Path, command: tuple[str, ...]
) -> None:
    env = isolated_env(tmp_path)
    before = digest(foreign_db.parent)
    result = hvkube(*command, env={**env, "HVKUBE_DB": str(foreign_db)}, timeout=60)
    assert result.returncode == 2, (command, result.stdout[-500:], result.stderr[-500:])
    assert "not an hvkube store" in one_error(result)
    # Not a byte of it, and no file beside it (the API token file included).
    assert digest(foreign_db.parent) == before


# -- the simulated host's file ------------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> dict[str, str]:
    env = isolated_env(tmp_path)
    (tmp_path / "data").mkdir(mode=0o700)
    with open_engine(db=env["HVKUBE_DB"], backend="sim", sim_scale=0) as engine:
        engine.create_template("win11", r"C:\Templates\win11.vhdx", memory_mb=4096)
    return env


def test_a_foreign_database_where_the_simulated_host_lives_is_left_alone(
    tmp_path: Path, store: dict[str, str]
) -> None:
    sim = tmp_path / "data" / "sim-host.db"
    sim.unlink()
    con = sqlite3.connect(sim)
    con.execute("CREATE TABLE users (name TEXT)")
    con.commit()
    con.close()
    before = digest(sim.parent)
    # Commands that open the simulated host (`vm list` reads the store alone).
    for args in (("pool", "list"), ("--readonly", "pool", "list"), ("sim", "clear")):
        result = hvkube(*args, env=store)
        assert result.returncode == 2, (args, result.stderr)
        assert "not a simulated host's" in one_error(result)
    assert digest(sim.parent) == before


def test_a_file_that_is_not_sqlite_where_the_simulated_host_lives_is_one_line(
    tmp_path: Path, store: dict[str, str]
) -> None:
    sim = tmp_path / "data" / "sim-host.db"
    for side in ("-wal", "-shm"):  # the file replaced whole, as another program would
        sim.with_name(sim.name + side).unlink(missing_ok=True)
    sim.write_bytes(b"ssh-ed25519 AAAA... user@host\n")
    sim.chmod(0o600)
    before = digest(sim.parent)
    result = hvkube("pool", "list", env=store)
    assert result.returncode == 2 and "simulated host file" in one_error(result)
    assert digest(sim.parent) == before


# -- another user's files in the data folder ----------------------------------------------------


@as_root
@pytest.mark.parametrize("name", ["hvkube.db", "sim-host.db"])
def test_another_users_file_in_the_data_folder_is_refused(
    tmp_path: Path, store: dict[str, str], name: str
) -> None:
    planted = tmp_path / "data" / name
    os.chown(planted, NOBODY, -1)
    before = digest(planted.parent)
    for args in (("pool", "list"), ("--readonly", "template", "list")):
        result = hvkube(*args, env=store)
        assert result.returncode == 2, result.stderr
        line = one_error(result)
        assert "belongs to" in line and "sudo chown" in line, line
    assert digest(planted.parent) == before


@as_root
def test_a_link_another_user_planted_beside_the_store_is_refused(
    tmp_path: Path, store: dict[str, str]
) -> None:
    victim = tmp_path / "authorized_keys"
    victim.write_text("ssh-ed25519 AAAA... me@host\n")
    link = tmp_path / "data" / "hvkube.db-wal"
    link.symlink_to(victim)
    os.lchown(link, NOBODY, -1)
    result = hvkube("template", "create", "-n", "w2", "--vhdx", r"C:\t\w.vhdx", env=store)
    assert result.returncode == 2 and "is a link made by" in one_error(result)
    assert victim.read_text() == "ssh-ed25519 AAAA... me@host\n"


def test_a_store_others_can_write_is_refused_with_the_chmod(
    tmp_path: Path, store: dict[str, str]
) -> None:
    db = tmp_path / "data" / "hvkube.db"
    db.chmod(0o666)
    result = hvkube("template", "list", env=store)
    assert result.returncode == 2 and "chmod go-w" in one_error(result)
    assert db.stat().st_mode & 0o777 == 0o666


@as_root
def test_another_users_controller_log_is_not_appended_to(
    tmp_path: Path, store: dict[str, str]
) -> None:
    from core.controller import start_in_background
    from core.errors import InvalidInput
    from core.settings import Settings

    log = tmp_path / "data" / "controller.log"
    log.write_text("theirs\n")
    os.chown(log, NOBODY, -1)
    settings = Settings(db=store["HVKUBE_DB"], backend="sim", sim_scale=0)
    with pytest.raises(InvalidInput, match="belongs to"):
        start_in_background(settings)
    assert log.read_text() == "theirs\n"


# -- links planted where output goes ------------------------------------------------------------


@as_root
def test_a_screenshot_replaces_a_planted_link_never_its_target(
    tmp_path: Path, store: dict[str, str]
) -> None:
    with open_engine(db=store["HVKUBE_DB"], backend="sim", sim_scale=0) as engine:
        engine.create_pool("p", "win11", count=1, warm=1)
        assert not engine.provision_pool("p").failed
        engine.acquire("p")
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    victim = tmp_path / "authorized_keys"
    victim.write_text("ssh-ed25519 AAAA... me@host\n")
    for name in ("shot.png", ".shot.png.tmp"):
        (shared / name).symlink_to(victim)
        os.lchown(shared / name, NOBODY, -1)
    result = hvkube("vm", "screenshot", "p-001", "-o", str(shared / "shot.png"), env=store)
    assert result.returncode == 0, result.stderr
    assert victim.read_text() == "ssh-ed25519 AAAA... me@host\n"
    out = shared / "shot.png"
    assert not out.is_symlink() and out.read_bytes().startswith(b"\x89PNG")

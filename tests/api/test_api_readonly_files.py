"""`hvkube --readonly serve` creates and changes no file: it uses the admin token file when
there is one and the store's tokens otherwise, and refuses to start (one line, exit 2) when
there is neither, instead of making a token file."""

from __future__ import annotations

import contextlib
import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from conftest import api_env

from core.tokens import TOKEN_FILE_NAME

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX signals stop the server")


def snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    """Every file under the folder: its mode and bytes."""
    return {
        str(p.relative_to(folder)): (stat.S_IMODE(p.lstat().st_mode), p.read_bytes())
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def hvkube(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "core.cli", *args],
        env=api_env(data),
        capture_output=True,
        text=True,
        timeout=120,
    )


def make_store(data: Path) -> None:
    data.mkdir(mode=0o700)
    made = hvkube(data, "template", "create", "-n", "win11", "--vhdx", r"C:\t\w.vhdx")
    assert made.returncode == 0, made.stderr


def serve(data: Path, log: Path, *first: str) -> tuple[subprocess.Popen[bytes], str]:
    """`hvkube [FIRST...] serve --port 0`, its log outside the data folder; and its URL."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "core.cli", *first, "serve", "--port", "0"],
            env=api_env(data),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith("hvkube API on "):
                url = line.split()[3]
                with contextlib.suppress(httpx.TransportError):
                    if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                        return proc, url
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"the server did not start: {log.read_text(errors='replace')}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    proc.wait(30)


def test_without_a_token_it_refuses_to_start_and_creates_nothing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    make_store(data)
    before = snapshot(data)
    result = hvkube(data, "--readonly", "serve", "--port", "0")
    assert result.returncode == 2, result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("hvkube:")]
    assert len(errors) == 1 and "read-only mode creates no file" in errors[0], result.stderr
    assert "hvkube token create" in errors[0]
    assert not (data / TOKEN_FILE_NAME).exists()
    assert snapshot(data) == before


def test_with_the_token_file_it_serves_and_changes_no_byte(tmp_path: Path) -> None:
    data = tmp_path / "data"
    make_store(data)
    # A server that may write makes the token file once.
    proc, _ = serve(data, tmp_path / "rw.log")
    stop(proc)
    before = snapshot(data)
    assert TOKEN_FILE_NAME in before
    proc, url = serve(data, tmp_path / "ro.log", "--readonly")
    try:
        token = (data / TOKEN_FILE_NAME).read_text().strip()
        headers = {"Authorization": f"Bearer {token}"}
        assert httpx.get(f"{url}/api/v1/templates", headers=headers).status_code == 200
        wrong = httpx.get(f"{url}/api/v1/pools", headers={"Authorization": "Bearer x"})
        assert wrong.status_code == 401
    finally:
        stop(proc)
    assert snapshot(data) == before


def test_with_only_store_tokens_it_serves_them_and_changes_no_byte(tmp_path: Path) -> None:
    data = tmp_path / "data"
    make_store(data)
    made = hvkube(data, "--json", "token", "create", "--name", "ops", "--scope", "admin")
    assert made.returncode == 0, made.stderr
    secret = json.loads(made.stdout)["token"]
    before = snapshot(data)
    assert TOKEN_FILE_NAME not in before
    proc, url = serve(data, tmp_path / "ro.log", "--readonly")
    try:
        ok = httpx.get(f"{url}/api/v1/templates", headers={"Authorization": f"Bearer {secret}"})
        assert ok.status_code == 200, ok.text
        assert "no token file" in (tmp_path / "ro.log").read_text()
    finally:
        stop(proc)
    assert snapshot(data) == before

"""`hvkube --backend hyperv` end to end over the fake PowerShell host, and the input commands."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from hyperv_helpers import fake_command

from core.cli import main
from tests.fakes import fakeps


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HVKUBE_DB", str(tmp_path / "hvkube.db"))
    monkeypatch.setenv("HVKUBE_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.setenv("HVKUBE_SIM_SCALE", "0")
    monkeypatch.setenv("HVKUBE_READY_TIMEOUT_S", "10")
    # The fake host finds the simulated host beside the database, as documented.
    cmd = fake_command(tmp_path).replace(f"--state-dir {tmp_path} ", "")
    monkeypatch.setenv("HVKUBE_POWERSHELL", cmd)
    return tmp_path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_whole_path_on_hyperv_backend(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hv = ("--backend", "hyperv")
    assert run(capsys, "template", "create", "--name", "w", "--vhdx", "C:\\w.vhdx", *hv)[0] == 0
    assert (
        run(capsys, "pool", "create", "--name", "p", "--template", "w", "--count", "1", *hv)[0] == 0
    )
    assert run(capsys, "pool", "provision", "p", *hv)[0] == 0
    code, out, _ = run(capsys, "acquire", "--pool", "p", "--json", *hv)
    assert code == 0
    name = json.loads(out)["name"]
    assert run(capsys, "vm", "type", name, "hello", *hv)[0] == 0
    assert run(capsys, "vm", "key", name, "enter", *hv)[0] == 0
    assert run(capsys, "vm", "click", name, "10", "20", "--button", "right", *hv)[0] == 0
    log = fakeps.read_input_log(env)
    assert [e["op"] for e in log] == ["type_text", "type_key", "click"]
    code, _, err = run(capsys, "vm", "key", name, "warp-drive", *hv)
    assert code == 2 and "unknown key" in err and err.count("\n") == 1
    if sys.platform != "win32":
        code, _, err = run(capsys, "vm", "console", name, *hv)
        assert code == 1 and "vmconnect.exe" in err
    # Hostile names never get past validation.
    code, _, err = run(capsys, "vm", "type", "x'; Remove-VM -Name * -Force; '", "a", *hv)
    assert code == 2 and "not allowed" in err


def test_input_on_a_backend_without_it_says_why(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sim = ("--backend", "sim")
    run(capsys, "template", "create", "--name", "w", "--vhdx", "C:\\w.vhdx", *sim)
    run(capsys, "pool", "create", "--name", "p", "--template", "w", "--count", "1", *sim)
    run(capsys, "pool", "provision", "p", *sim)
    code, _, err = run(capsys, "vm", "type", "p-001", "hello", *sim)
    assert code == 1 and "cannot type into a VM" in err

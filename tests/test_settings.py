"""Settings from flags, HVKUBE_* variables, the config file and defaults: every value is
checked, text is read as the number or yes/no a setting wants, and a bad value is one line
naming the setting, where it came from and what it must be, with nothing created."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import InvalidInput
from core.settings import SETTING_NAMES, Settings, load_settings
from tests.conftest import run_cli


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "no-config.toml"  # where the test environment points HVKUBE_CONFIG
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults() -> None:
    settings = Settings()
    assert settings.backend == "sim" and settings.sim_scale == 1.0
    assert settings.provision_parallelism == 8 and settings.recording is True
    assert settings.keys == {} and settings.keys is not Settings().keys
    assert list(settings.values()) == list(SETTING_NAMES)


def test_text_is_read_as_the_number_or_yes_no_a_setting_wants(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HVKUBE_PROVISION_PARALLELISM", " 3 ")
    monkeypatch.setenv("HVKUBE_MEMORY_CEILING", "0.5")
    monkeypatch.setenv("HVKUBE_READONLY", "yes")
    _config(tmp_path, 'op_timeout_s = 30\nrecording = false\n[keys]\nresume = "R"\n')
    loaded = load_settings({"db": str(tmp_path / "x.db")})
    s = loaded.settings
    assert (s.provision_parallelism, s.memory_ceiling, s.readonly) == (3, 0.5, True)
    assert isinstance(s.op_timeout_s, float) and s.op_timeout_s == 30.0
    assert s.recording is False and s.keys == {"resume": "R"}
    assert loaded.sources["provision_parallelism"] == "env HVKUBE_PROVISION_PARALLELISM"
    assert loaded.sources["recording"] == f"config {tmp_path / 'no-config.toml'}"
    assert loaded.sources["db"] == "flag" and loaded.sources["vm_dir"] == "default"


@pytest.mark.parametrize(
    ("env", "config", "message"),
    [
        (
            {"HVKUBE_SIM_SCALE": "-1"},
            "",
            "setting 'sim_scale' (from env HVKUBE_SIM_SCALE) is invalid: must be at least 0",
        ),
        (
            {"HVKUBE_PROVISION_PARALLELISM": "lots"},
            "",
            "setting 'provision_parallelism' (from env HVKUBE_PROVISION_PARALLELISM) is "
            "invalid: must be a whole number, not 'lots'",
        ),
        ({}, "provision_parallelism = 2.5\n", "must be a whole number, not 2.5"),
        ({}, "hyperv_sessions = 33\n", "must be at most 32, not 33"),
        ({}, "memory_ceiling = 0\n", "must be more than 0, not 0.0"),
        ({}, 'qemu_accel = "fast"\n', "'fast' is not one of auto, kvm, tcg"),
        ({}, "db = 5\n", "setting 'db' (from config"),
        ({}, 'recording = "maybe"\n', "must be yes or no"),
        ({}, "[keys]\nresume = 1\n", "must be a table of text values"),
        ({}, 'exec_env = "NOT A NAME"\n', "not an environment variable name"),
        ({"HVKUBE_READONLY": "maybe"}, "", "HVKUBE_READONLY='maybe' is not a yes/no value"),
    ],
)
def test_a_bad_value_is_one_line_and_creates_nothing(
    tmp_path: Path, env: dict[str, str], config: str, message: str
) -> None:
    _config(tmp_path, config)
    result = run_cli("vm", "list", env=env)
    assert result.returncode == 2
    assert result.stderr.startswith("hvkube: error: ") and result.stderr.count("\n") == 1
    assert message in result.stderr
    assert not (tmp_path / "data").exists()


def test_replace_checks_the_new_values() -> None:
    settings = Settings(sim_scale=0)
    assert settings.replace(sim_scale="2").sim_scale == 2.0
    assert settings.replace(readonly=True) == Settings(sim_scale=0, readonly=True)
    assert settings.sim_scale == 0.0 and not settings.readonly
    with pytest.raises(ValueError, match="sim_scale"):
        settings.replace(sim_scale=-1)
    with pytest.raises(TypeError, match="no_such"):
        Settings(no_such=1)


def test_an_unknown_key_in_the_config_file_is_named(tmp_path: Path) -> None:
    _config(tmp_path, "provison_parallelism = 3\n")
    with pytest.raises(InvalidInput, match="unknown setting\\(s\\) provison_parallelism"):
        load_settings()

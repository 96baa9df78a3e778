"""The dashboard's commands plug into the CLI through the hvkube.commands entry point."""

from __future__ import annotations

from tests.conftest import run_cli


def test_ui_and_demo_are_commands() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    assert "ui " in result.stdout and "demo " in result.stdout
    demo = run_cli("demo", "--help")
    assert demo.returncode == 0 and "--readonly" in demo.stdout and "--dir" in demo.stdout

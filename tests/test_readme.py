"""The README's commands and script work as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO, run_cli

README = (REPO / "README.md").read_text(encoding="utf-8")


def test_readme_starts_with_the_two_commands() -> None:
    first_block = re.search(r"```sh\n(.*?)```", README, re.S)
    assert first_block is not None
    lines = first_block.group(1).strip().splitlines()
    assert lines[0].endswith("hvkube demo")
    assert lines[1] == "bash .ci/run"
    assert (REPO / ".ci" / "run").exists()


def test_the_headless_script_runs_as_written(tmp_path: Path) -> None:
    block = re.search(
        r"<!-- headless-script -->\s*```python\n(.*?)```\s*<!-- /headless-script -->", README, re.S
    )
    assert block is not None
    script = tmp_path / "script.py"
    script.write_text(block.group(1), encoding="utf-8")
    for args in (
        ["template", "create", "--name", "win11-chrome", "--vhdx", r"C:\Templates\win11.vhdx"],
        [
            "pool",
            "create",
            "--name",
            "browser-pool",
            "--template",
            "win11-chrome",
            "--count",
            "2",
            "--warm",
            "2",
        ],
        ["pool", "provision", "browser-pool"],
    ):
        assert run_cli(*args).returncode == 0
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=REPO
    )
    assert result.returncode == 0, result.stderr
    name, ip, *_ = result.stdout.split()
    assert name.startswith("browser-pool-") and ip.count(".") == 3
    listing = run_cli("vm", "list", "--json").stdout
    assert '"holder": null' in listing and '"holder": "' not in listing  # released

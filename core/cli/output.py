"""How commands print: the two consoles, a one-line report (or JSON), and the VM table."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rich.console import Console

from core.output import ago, ms, print_json, styled, table

if TYPE_CHECKING:
    from core.cli.context import Context

# Piped output is not cut to 80 columns: scripts and grep see whole lines.
console = Console(highlight=False, width=None if sys.stdout.isatty() else 240)
err_console = Console(stderr=True, highlight=False)


def done(ctx: Context, value: Any, text: str) -> None:
    """A finished change: `value` as JSON with --json, else one line of text."""
    if ctx.json:
        print_json(value)
    else:
        console.print(text)


def vm_table(vms: Sequence[Any]) -> None:
    rows = [
        (
            vm.name,
            vm.pool,
            vm.host,
            styled(vm.state.value),
            vm.holder and (f"agent {vm.agent_id}" if vm.agent_id else vm.holder),
            vm.ip,
            vm.memory_mb,
            ago(vm.last_resumed_at),
            ms(vm.last_resume_ms),
            (vm.error or "")[:60],
        )
        for vm in vms
    ]
    table(
        console,
        ["NAME", "POOL", "HOST", "STATE", "HELD BY", "IP", "MB", "RESUMED", "RESUME", "ERROR"],
        rows,
        "VMs",
    )

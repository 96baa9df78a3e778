"""How commands print: the two consoles, a one-line report (or JSON), and the VM table.

The consoles read no markup (core.markup): whatever a name, an error or an agent's output
holds is printed as it is. They are made when first used, so a command that prints only
JSON never loads rich.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from core.markup import plain_console
from core.output import ago, holder_text, ms, print_json, styled, table

if TYPE_CHECKING:
    from rich.console import Console

    from core.cli.context import Context


class _LazyConsole:
    """A rich console made on first use."""

    def __init__(self, stderr: bool) -> None:
        self._stderr = stderr
        self._console: Console | None = None

    def _get(self) -> Console:
        if self._console is None:
            if self._stderr:
                self._console = plain_console(stderr=True)
            else:
                # Piped output is not cut to 80 columns: scripts and grep see whole lines.
                self._console = plain_console(width=None if sys.stdout.isatty() else 240)
        return self._console

    def __getattr__(self, name: str) -> Any:
        return getattr(self._get(), name)


console: Console = _LazyConsole(stderr=False)  # type: ignore[assignment]
err_console: Console = _LazyConsole(stderr=True)  # type: ignore[assignment]


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
            styled(str(vm.state)),
            holder_text(vm.holder, vm.agent_id),
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

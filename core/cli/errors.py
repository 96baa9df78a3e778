"""How the command line reports an error: one line on stderr (with --json, a JSON object
`{"error": {"code", "message"}}`), and the exit code it maps to."""

from __future__ import annotations

import json
import sys

from core.errors import HvkubeError

INTERRUPTED = 130


def report_error(exc: BaseException, as_json: bool, *, verbose: bool = False) -> int:
    """Print `exc` as the command line reports errors; returns the exit code."""
    if isinstance(exc, HvkubeError):
        code, message, exit_code = exc.code, exc.message, exc.exit_code
    elif isinstance(exc, KeyboardInterrupt):
        code, message, exit_code = "interrupted", "interrupted", INTERRUPTED
    else:  # a bug: one line by default, the traceback with --verbose
        if verbose:
            import traceback

            traceback.print_exc()
        code, exit_code = "internal", 1
        message = f"internal error: {type(exc).__name__}: {exc} (rerun with --verbose)"
    if as_json:
        sys.stderr.write(json.dumps({"error": {"code": code, "message": message}}) + "\n")
    else:
        prefix = "error: " if isinstance(exc, HvkubeError) else ""
        sys.stderr.write(f"hvkube: {prefix}{message}\n")
        if verbose and isinstance(exc, HvkubeError) and exc.detail:
            sys.stderr.write(f"{exc.detail}\n")
    return exit_code

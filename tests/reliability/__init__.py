"""hvkube's reliability suite: crash trials, the invariant checker, and the full-run command.

    .venv/bin/python -m tests.reliability            # the full run; prints the figures

The pytest files `tests/test_rel_*.py` run reduced counts of the same checks in CI.
Nothing in `core` imports this package.
"""

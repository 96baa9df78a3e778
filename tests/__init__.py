"""hvkube's tests, a package: `tests.x` imports (and `python -m tests.x`) work from the
checkout's root. pytest also puts this folder on sys.path (`pythonpath` in pyproject.toml)
for the tests that import their helpers by bare name (`from hyperv_helpers import ...`)."""

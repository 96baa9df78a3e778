"""`python -m core.cli`: the same as the `hvkube` command."""

from core.cli import main

if __name__ == "__main__":
    raise SystemExit(main())

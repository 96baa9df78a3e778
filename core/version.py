"""hvkube's version: the package metadata takes it from here (pyproject.toml)."""

VERSION = "0.1.0"

"""hvkube's HTTP API (`hvkube serve`): FastAPI over the same engine.

Needs the `api` extra (fastapi, uvicorn); `import core` never imports this package.
"""

from __future__ import annotations

from core.api.app import make_api

__all__ = ["make_api"]

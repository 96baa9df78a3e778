"""The earlier Rust hvkube's client types (its `src/api/types.rs` and `tests/e2e.rs`), as
strict pydantic models: what serde would accept, no more.

serde refuses a float for an integer field, `null` for a `String`, and a missing field
that has no `#[serde(default)]`; it ignores fields it does not know. Strict mode does the
same here. `u64`/`u32`/`usize` are non-negative integers; `Option<String>` may be null.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

U64 = Annotated[int, Field(ge=0, le=2**64 - 1)]
U32 = Annotated[int, Field(ge=0, le=2**32 - 1)]
USIZE = U64


class Serde(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")


# -- answers -------------------------------------------------------------------------------


class HealthResponse(Serde):
    status: str
    version: str


class ResumeResponse(Serde):
    vm_id: str
    vm_name: str
    ip_address: str
    mcp_endpoint: str
    resume_time_ms: U64


class ApiError(Serde):
    error: str
    message: str


class ApiSuccess(Serde):
    message: str


class TemplateResponse(Serde):
    id: str
    name: str
    vhdx_path: str
    memory_mb: U64
    cpu_count: U32
    gpu_enabled: bool
    description: str | None
    created_at: str


class PoolResponse(Serde):
    id: str
    name: str
    template_id: str
    desired_count: USIZE
    warm_count: USIZE
    created_at: str


class PoolStatusResponse(Serde):
    id: str
    name: str
    template_id: str
    desired_count: USIZE
    total_vms: USIZE
    running_vms: USIZE
    saved_vms: USIZE
    off_vms: USIZE
    error_vms: USIZE


class VMResponse(Serde):
    id: str
    name: str
    template_id: str | None
    pool_id: str | None
    state: str
    ip_address: str | None
    memory_mb: U64
    cpu_count: U32
    gpu_enabled: bool
    created_at: str
    last_resumed_at: str | None


# -- requests (serialized as the Rust client sends them) -----------------------------------


def create_template(name: str, vhdx_path: str) -> dict[str, object]:
    return {
        "name": name,
        "vhdx_path": vhdx_path,
        "memory_mb": 4096,
        "cpu_count": 2,
        "gpu_enabled": False,
        "description": None,
    }


def create_pool(name: str, template_name: str, desired: int, warm: int) -> dict[str, object]:
    return {
        "name": name,
        "template_name": template_name,
        "desired_count": desired,
        "warm_count": warm,
    }


def acquire(pool_name: str) -> dict[str, object]:
    return {"pool_name": pool_name}


def release(reset: bool) -> dict[str, object]:
    return {"reset": reset}

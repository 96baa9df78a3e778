"""Request and response bodies of the HTTP API.

Responses carry every field the earlier Rust hvkube returned, with its types
(integers where it had integers, strings never null where it had strings), beside
ours; requests accept its field names too. Unknown request fields are ignored so
that such clients keep working.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    computed_field,
    model_validator,
)

from core.api.errors import FieldError
from core.errors import InvalidInput
from core.models import VM, AcquiredVM, Agent, Event, ReleasePolicy, Template
from core.names import MAX_JSON_BYTES, check_json_object, name_problem
from core.readmodel import PoolSummary

MAX_WAIT_S = 3600.0
MAX_LEASE_S = 86400.0
# Agent input and output are capped at MAX_JSON_BYTES of JSON; escaped in a request body
# they may take a few times that. A larger body is refused (413) before it is buffered.
MAX_BODY_BYTES = 4 * MAX_JSON_BYTES


def _valid_name(value: str) -> str:
    problem = name_problem(value)
    if problem is not None:
        raise ValueError(f"name {problem}")
    return value


# A template, pool, VM or workflow name (core.names): checked before anything is read or written.
Name = Annotated[str, Field(min_length=1, max_length=48), AfterValidator(_valid_name)]


class BadText(ValueError):
    """A request text that cannot be stored; `field` is the top-level request field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _check_text(value: Any, where: str) -> None:
    """Strings must be storable as UTF-8 (no lone surrogates) and free of NUL characters."""
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError(f"{where} contains a NUL character")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(f"{where} is not valid UTF-8 text") from None
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_text(key, where)
            _check_text(item, f"{where}.{key}" if isinstance(key, str) else where)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_text(item, f"{where}[{i}]")


class RequestBody(BaseModel):
    """Base of request bodies: unknown fields are ignored, text must be valid UTF-8."""

    model_config = ConfigDict(extra="ignore")

    @model_validator(mode="before")
    @classmethod
    def _text_is_storable(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key, value in data.items():
                try:
                    _check_text(value, str(key))
                except ValueError as exc:
                    raise BadText(str(key), str(exc)) from None
        return data


# -- acquire and leases ------------------------------------------------------------------------


class AcquireRequest(RequestBody):
    pool: Name | None = Field(default=None, description="pool to take a VM from")
    pool_name: Name | None = Field(
        default=None, description="the same as `pool` (field name of the earlier Rust API)"
    )
    wait_seconds: float = Field(
        default=0.0,
        ge=0,
        le=MAX_WAIT_S,
        allow_inf_nan=False,
        description="how long to wait for a free VM; 503 with Retry-After after that",
    )
    lease_seconds: float | None = Field(
        default=None,
        ge=1,
        le=MAX_LEASE_S,
        allow_inf_nan=False,
        description="lease length; renew before it ends or the VM is released by pool policy "
        "(default: the server's --lease-seconds)",
    )
    lease: bool = Field(
        default=True,
        description="false: no lease, the VM is held until released (refused by a server "
        "started with --require-lease)",
    )

    def pool_to_use(self) -> str:
        """The pool, from `pool` or `pool_name`; a FieldError when neither or both differ."""
        if self.pool is None and self.pool_name is None:
            raise FieldError("pool", "pool is required (or pool_name)")
        if self.pool is not None and self.pool_name is not None and self.pool != self.pool_name:
            raise FieldError("pool_name", "pool and pool_name differ; give one of them")
        name = self.pool or self.pool_name
        assert name is not None
        return name


class Lease(BaseModel):
    lease_id: str
    vm_name: str | None
    pool: str | None
    expires_at: datetime
    lease_seconds: float


class AcquireResponse(AcquiredVM):
    """The acquired VM (its `holder` is the lease id) and its lease (null: no lease)."""

    mcp_endpoint: str = Field(default="", description="empty when the template has none")
    lease_id: str | None
    lease_expires_at: datetime | None
    lease_seconds: float | None

    # The earlier Rust API's names for the same values, with its types.
    @computed_field  # type: ignore[prop-decorator]
    @property
    def vm_id(self) -> str:
        return self.name

    @computed_field  # type: ignore[prop-decorator]
    @property
    def vm_name(self) -> str:
        return self.name

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ip_address(self) -> str:
        return self.ip or ""

    @computed_field  # type: ignore[prop-decorator]
    @property
    def resume_time_ms(self) -> int:
        return max(0, round(self.resume_ms))


class RenewRequest(RequestBody):
    lease_seconds: float | None = Field(
        default=None,
        ge=1,
        le=MAX_LEASE_S,
        allow_inf_nan=False,
        description="new lease length from now (default: the lease's current length)",
    )


# -- VMs ---------------------------------------------------------------------------------------


class ReleaseRequest(RequestBody):
    policy: ReleasePolicy | None = Field(
        default=None, description="reset, save or destroy (default: the pool's release policy)"
    )
    reset: bool | None = Field(
        default=None,
        description="earlier Rust API: true means policy reset, false means policy save",
    )
    lease_id: str | None = Field(
        default=None,
        max_length=128,
        description="when given, the release is refused unless this lease holds the VM",
    )

    def chosen(self) -> ReleasePolicy | None:
        """The policy from `policy` or the Rust-era `reset`; None means the pool's own."""
        implied = None
        if self.reset is not None:
            implied = ReleasePolicy.RESET if self.reset else ReleasePolicy.SAVE
        if self.policy is not None and implied is not None and implied is not self.policy:
            raise FieldError("reset", f"policy {self.policy.value} and reset={self.reset} disagree")
        return self.policy or implied


class VMOut(VM):
    mcp_endpoint: str | None = None
    cpu_count: int = Field(description="virtual CPUs (the template's)")
    gpu_enabled: bool = Field(description="has a GPU partition (the template's)")

    # The earlier Rust API's names for the same values.
    @computed_field  # type: ignore[prop-decorator]
    @property
    def id(self) -> str:
        return self.name

    @computed_field  # type: ignore[prop-decorator]
    @property
    def vm_name(self) -> str:
        return self.name

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ip_address(self) -> str | None:
        return self.ip

    @computed_field  # type: ignore[prop-decorator]
    @property
    def template_id(self) -> str:
        return self.template

    @computed_field  # type: ignore[prop-decorator]
    @property
    def pool_id(self) -> str | None:
        return self.pool


class VMActionOut(VMOut):
    """A VM after an action, with a one-line `message` saying what was done."""

    message: str


class ResumeOut(BaseModel):
    """A resumed VM: the earlier Rust API's resume answer, with the VM and a message."""

    vm_id: str
    vm_name: str
    ip_address: str = Field(description="empty when the VM reported none")
    mcp_endpoint: str = Field(description="empty when the template has none")
    resume_time_ms: int
    message: str
    vm: VMOut


class Message(BaseModel):
    """What was done, in one line (the earlier Rust API's success answer)."""

    message: str


class ReleaseResponse(BaseModel):
    name: str
    destroyed: bool
    message: str
    vm: VMOut | None = Field(description="the VM after release; null when destroyed")

    @computed_field  # type: ignore[prop-decorator]
    @property
    def vm_name(self) -> str:
        """The earlier Rust API's name for `name`."""
        return self.name


class PoolOut(PoolSummary):
    """A pool as every view shows it (settings, VMs per state, recent resume figures), with
    the earlier Rust API's flat counts."""

    @computed_field  # type: ignore[prop-decorator]
    @property
    def id(self) -> str:
        return self.name

    @computed_field  # type: ignore[prop-decorator]
    @property
    def template_id(self) -> str:
        return self.template

    @computed_field  # type: ignore[prop-decorator]
    @property
    def total_vms(self) -> int:
        return sum(n for state, n in self.counts.items() if state != "held")

    @computed_field  # type: ignore[prop-decorator]
    @property
    def running_vms(self) -> int:
        return self.counts.get("running", 0)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def saved_vms(self) -> int:
        return self.counts.get("saved", 0)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def off_vms(self) -> int:
        return self.counts.get("off", 0)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def error_vms(self) -> int:
        return self.counts.get("error", 0) + self.counts.get("missing", 0)


EXEC_ENV = (
    "names of the controller's environment variables the agents' exec_command also gets "
    "(values are read when a command starts, never stored)"
)


class PoolCreate(RequestBody):
    name: Name
    template: Name = Field(validation_alias=AliasChoices("template", "template_name"))
    count: int = Field(
        default=3, ge=0, le=1024, validation_alias=AliasChoices("count", "desired_count")
    )
    warm: int = Field(default=1, ge=0, le=1024, validation_alias=AliasChoices("warm", "warm_count"))
    hot: int = Field(default=0, ge=0, le=1024, validation_alias=AliasChoices("hot", "hot_count"))
    release: ReleasePolicy = ReleasePolicy.RESET
    max_per_host: int | None = Field(default=None, ge=1, le=1024)
    exec_env: list[str] = Field(default_factory=list, max_length=64, description=EXEC_ENV)


class PoolEdit(RequestBody):
    count: int | None = Field(
        default=None, ge=0, le=1024, validation_alias=AliasChoices("count", "desired_count")
    )
    warm: int | None = Field(
        default=None, ge=0, le=1024, validation_alias=AliasChoices("warm", "warm_count")
    )
    hot: int | None = Field(
        default=None, ge=0, le=1024, validation_alias=AliasChoices("hot", "hot_count")
    )
    release: ReleasePolicy | None = None
    exec_env: list[str] | None = Field(
        default=None, max_length=64, description=EXEC_ENV + "; replaces the list, [] clears it"
    )


class PoolScale(RequestBody):
    count: int = Field(ge=0, le=1024, description="the pool's new size; VMs are built or removed")


class ProvisionRequest(RequestBody):
    count: int | None = Field(
        default=None,
        ge=1,
        le=1024,
        description="build this many more VMs (the pool grows by as many); without it, build "
        "the VMs the pool misses",
    )


class ProvisionOut(BaseModel):
    pool: str
    requested: int
    created: list[str]
    failed: dict[str, str]
    seconds: float


# -- templates ---------------------------------------------------------------------------------


class TemplateOut(Template):
    # The earlier Rust API's names for the same values.
    @computed_field  # type: ignore[prop-decorator]
    @property
    def id(self) -> str:
        return self.name

    @computed_field  # type: ignore[prop-decorator]
    @property
    def vhdx_path(self) -> str:
        return self.disk_path

    @computed_field  # type: ignore[prop-decorator]
    @property
    def cpu_count(self) -> int:
        return self.cpus

    @computed_field  # type: ignore[prop-decorator]
    @property
    def gpu_enabled(self) -> bool:
        return self.gpu

    @computed_field  # type: ignore[prop-decorator]
    @property
    def description(self) -> str | None:
        return None


class TemplateCreate(RequestBody):
    name: Name
    disk_path: str = Field(
        min_length=1, max_length=1024, validation_alias=AliasChoices("disk_path", "vhdx_path")
    )
    memory_mb: int = Field(default=4096, ge=1, le=24 * 1024 * 1024)
    cpus: int = Field(default=2, ge=1, le=240, validation_alias=AliasChoices("cpus", "cpu_count"))
    gpu: bool = Field(default=False, validation_alias=AliasChoices("gpu", "gpu_enabled"))
    software: list[Annotated[str, Field(max_length=200)]] = Field(
        default_factory=list, max_length=100
    )
    rdp_port: int = Field(default=3389, ge=1, le=65535)
    mcp_endpoint: str | None = Field(default=None, max_length=1024)
    probe: str = Field(
        default="heartbeat", max_length=1024, description="heartbeat, tcp:PORT or http:URL"
    )
    description: str | None = Field(
        default=None, max_length=10_000, description="accepted for the earlier API; not kept"
    )


# -- agents ------------------------------------------------------------------------------------


def _storable(value: dict[str, Any], field: str) -> None:
    """The CLI's rule for agent input and output (depth, size, text), as a 422 on `field`."""
    try:
        check_json_object(value, field)
    except InvalidInput as exc:
        raise BadText(field, exc.message) from None


class AgentSubmit(RequestBody):
    pool: Name
    workflow: Name
    input: dict[str, Any] = Field(default_factory=dict)
    timeout_s: int = Field(default=600, ge=1, le=7 * 86400)
    requires_gpu: bool = False
    exec_command: str | None = Field(
        default=None,
        max_length=8192,
        description="a command the controller runs for the agent; refused unless the server "
        "was started with --allow-exec",
    )
    exec_env: list[str] = Field(
        default_factory=list, max_length=64, description=EXEC_ENV + ", besides its pool's"
    )

    @model_validator(mode="after")
    def _input_storable(self) -> AgentSubmit:
        _storable(self.input, "input")
        return self


class AgentComplete(RequestBody):
    success: bool = True
    output: dict[str, Any] | None = None
    error: str | None = Field(default=None, max_length=10_000)
    exit_code: int | None = Field(default=None, ge=-(2**31), le=2**31)
    duration_ms: float | None = Field(default=None, ge=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _output_storable(self) -> AgentComplete:
        if self.output is not None:
            _storable(self.output, "output")
        return self


AgentOut = Agent


# -- events, health, errors --------------------------------------------------------------------


class EventPage(BaseModel):
    events: list[Event] = Field(description="oldest first")
    last_id: int | None = Field(description="pass as `since` to get the events after these")


class Health(BaseModel):
    status: str
    version: str

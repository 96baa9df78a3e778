"""Errors as JSON: `{"code": ..., "message": ..., "field": ...}` with a fitting status.

The `code` is the engine error's stable `code` (core.errors); bad input names the
request field at fault where it is known.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from core.errors import (
    AlreadyExists,
    BackendError,
    CapacityExceeded,
    Conflict,
    HvkubeError,
    InvalidInput,
    InvalidVMState,
    NotFound,
    NotHeld,
    NoVMAvailable,
    OperationTimeout,
    ReadOnlyMode,
    Unsupported,
)

log = logging.getLogger("hvkube.api")

RETRY_AFTER_S = 5

# The `code` of errors raised as plain HTTP errors (routing, body size) rather than as
# engine errors.
HTTP_CODES = {401: "unauthorized", 404: "not_found", 405: "method_not_allowed", 413: "too_large"}


class FieldError(InvalidInput):
    """Bad input in one request field (422); nothing was changed."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class Forbidden(HvkubeError):
    """This server refuses the request by its configuration (403)."""

    code = "forbidden"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class ClientGone(HvkubeError):
    """The client went away while its request waited; nobody reads the answer."""

    code = "client_gone"


class LeaseExpired(Conflict):
    code = "lease_expired"


class Unauthorized(HvkubeError):
    code = "unauthorized"


# Most specific first: the first class the error is an instance of decides the status.
STATUS: list[tuple[type[HvkubeError], int]] = [
    (FieldError, 422),
    (InvalidInput, 400),
    (Unauthorized, 401),
    (ReadOnlyMode, 403),
    (Forbidden, 403),
    (NotHeld, 403),
    (NotFound, 404),
    (AlreadyExists, 409),
    (Conflict, 409),
    (InvalidVMState, 409),
    (NoVMAvailable, 503),
    (CapacityExceeded, 503),
    (Unsupported, 501),
    (OperationTimeout, 504),
    (BackendError, 502),
    (ClientGone, 499),
]


class ErrorBodyDoc(BaseModel):
    """The body of every error response."""

    code: str = Field(description="stable machine-readable error code")
    message: str
    field: str | None = Field(default=None, description="the request field at fault, if any")


def status_for(exc: HvkubeError) -> int:
    for cls, status in STATUS:
        if isinstance(exc, cls):
            return status
    return 500


def error_response(
    status: int,
    code: str,
    message: str,
    field: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message}
    if field is not None:
        body["field"] = field
    return JSONResponse(body, status_code=status, headers=headers)


def hvkube_error_response(exc: HvkubeError) -> JSONResponse:
    status = status_for(exc)
    headers = {"Retry-After": str(RETRY_AFTER_S)} if status == 503 else None
    if status == 401:
        headers = {"WWW-Authenticate": "Bearer"}
    return error_response(status, exc.code, exc.message, getattr(exc, "field", None), headers)


def _field_of(loc: tuple[Any, ...]) -> str | None:
    parts = [str(p) for p in loc]
    if parts and parts[0] in {"body", "query", "path", "header", "cookie"}:
        parts = parts[1:]
    return ".".join(parts) or None


def validation_response(exc: RequestValidationError) -> JSONResponse:
    errors = list(exc.errors())
    if not errors:
        return error_response(422, InvalidInput.code, "the request is not valid")
    first = errors[0]
    loc = tuple(first.get("loc", ()))
    kind = str(first.get("type", ""))
    if kind == "json_invalid":
        return error_response(422, InvalidInput.code, "the request body is not valid JSON")
    field = _field_of(loc)
    known = getattr((first.get("ctx") or {}).get("error"), "field", None)
    if field is None and isinstance(known, str):
        field = known  # a model-level check that knows its field
    if kind == "missing" and field is None:
        return error_response(422, InvalidInput.code, "the request body is missing")
    message = str(first.get("msg", "is not valid"))
    message = message.removeprefix("Value error, ")
    text = f"{field}: {message}" if field else message
    if len(errors) > 1:
        text += f" (and {len(errors) - 1} more problem(s))"
    return error_response(422, InvalidInput.code, text, field)


def install(app: FastAPI) -> None:
    """Register the handlers that turn every error into the JSON error body."""

    @app.exception_handler(HvkubeError)
    async def _hvkube(request: Request, exc: HvkubeError) -> JSONResponse:
        if status_for(exc) >= 500:
            log.warning("%s %s: %s", request.method, request.url.path, exc.message)
        return hvkube_error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return validation_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = HTTP_CODES.get(exc.status_code, "http_error")
        message = str(exc.detail) if exc.detail else code.replace("_", " ")
        if exc.status_code == 404 and message == "Not Found":
            message = f"no route {request.method} {request.url.path}; see /openapi.json"
        return error_response(exc.status_code, code, message, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        log.exception("%s %s failed", request.method, request.url.path)
        return error_response(
            500, "internal_error", f"internal error: {type(exc).__name__}; see the server log"
        )

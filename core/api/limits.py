"""A cap on request bodies, so that no client can make the server buffer gigabytes.

A declared size over the cap is refused before a byte is read; a body without one
(chunked) is counted as it arrives and refused once it passes the cap. Either way the
answer is 413 with the JSON error body, and nothing was changed: every route reads its
whole body before it acts.

(Starlette's own body limit answers in plain text, outside the API's error contract.)"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.api.errors import HTTP_CODES, error_response
from core.names import MAX_JSON_BYTES


class BodyTooLarge(HTTPException):
    """Raised from `receive` once a body passes the cap. An HTTPException, so that FastAPI
    passes it on from its body parsing and the API's handler answers it as JSON."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            413,
            f"the request body is larger than {limit // 1_000_000} MB; agent input and "
            f"output are limited to {MAX_JSON_BYTES // 1_000_000} MB of JSON",
        )


class BodyLimit:
    """ASGI middleware: 413 for a request body of more than `limit` bytes."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = next((v for k, v in scope["headers"] if k == b"content-length"), b"")
        if declared.isdigit() and int(declared) > self.limit:
            refused = BodyTooLarge(self.limit)
            response = error_response(
                413, HTTP_CODES[413], refused.detail, headers={"Connection": "close"}
            )
            await response(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise BodyTooLarge(self.limit)
            return message

        await self.app(scope, counted, send)

"""Recordings over HTTP: the list, one recording's entries, a frame, an export."""

from __future__ import annotations

import functools
from typing import Annotated, Any, Literal

import anyio.to_thread
from fastapi import APIRouter, Path, Query, Request, Response, Security
from fastapi.security import HTTPBearer

from core.api.errors import ErrorBodyDoc
from core.recording.archive import (
    FOLDER_NAME,
    Archive,
    Entry,
    RecordingInfo,
    check_recording_id,
)
from core.recording.export import export

RecId = Annotated[str, Path(min_length=1, max_length=80, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
Frame = Annotated[str, Path(min_length=10, max_length=16, pattern=r"^\d{6,12}\.png$")]
MEDIA = {"webp": "image/webp", "gif": "image/gif", "mp4": "video/mp4"}

router = APIRouter(
    prefix="/api/v1/recordings",
    dependencies=[Security(HTTPBearer(auto_error=False))],
    responses={
        status: {"model": ErrorBodyDoc, "description": text}
        for status, text in (
            (400, "bad input"),
            (401, "bearer token missing or not valid"),
            (404, "no such recording or frame"),
        )
    },
)


def _archive(request: Request) -> Archive:
    settings = request.app.state.api.engine.settings
    return Archive(settings.state_dir() / FOLDER_NAME)


async def _run(fn: Any, *args: Any) -> Any:
    return await anyio.to_thread.run_sync(functools.partial(fn, *args))


@router.get("", response_model=list[RecordingInfo], summary="every recording")
async def list_recordings(request: Request) -> list[RecordingInfo]:
    found: list[RecordingInfo] = await _run(_archive(request).recordings)
    return found


@router.get(
    "/{rec_id}",
    response_model=list[Entry],
    summary="a recording's entries: time, VM, action and frame of each",
)
async def recording_entries(rec_id: RecId, request: Request) -> list[Entry]:
    entries: list[Entry] = await _run(_archive(request).entries, check_recording_id(rec_id))
    return entries


@router.get(
    "/{rec_id}/frames/{frame}",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}, "description": "the frame as PNG"}},
    summary="one frame of a recording (PNG)",
)
async def recording_frame(rec_id: RecId, frame: Frame, request: Request) -> Response:
    data = await _run(_archive(request).frame, check_recording_id(rec_id), frame)
    return Response(content=data, media_type="image/png")


@router.get(
    "/{rec_id}/export",
    response_class=Response,
    responses={
        200: {
            "content": {media: {} for media in MEDIA.values()},
            "description": "the recording as one animated file",
        }
    },
    summary="a recording as animated WebP, GIF or MP4",
)
async def recording_export(
    rec_id: RecId,
    request: Request,
    format: Annotated[Literal["webp", "gif", "mp4"], Query()] = "webp",
) -> Response:
    data = await _run(export, _archive(request), check_recording_id(rec_id), format)
    return Response(content=data, media_type=MEDIA[format])

"""Tasks: listing, lookup, cancel and deletion, people's corrections of a transcript (speaker
names, a segment's text or speaker) and the task's audio for a player."""

from __future__ import annotations

import mimetypes
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Query, Response
from fastapi import Path as PathParam
from fastapi.responses import FileResponse
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)
from starlette.concurrency import run_in_threadpool

from app.api.deps import SettingsDep, StoreDep, WaiterDep
from app.api.schemas import CancelResponse, DeleteResponse
from app.auth import AUDIO_LINK_SECONDS, Owner, audio_link, check_owner
from app.errors import ERROR_RESPONSES, ErrorResponse, ServiceError, task_not_found
from app.pipeline.formats import MAX_LINE, MAX_LINES, MEDIA_TYPES, render
from app.settings import Settings
from app.store.models import Task, TaskStatus, TaskType
from app.store.tasks import ENDED, UNFINISHED, TaskStore, as_utc, now
from app.store.views import TaskList, TaskResult, corrected, task_result, task_summary
from app.worker.queue import release_input

router = APIRouter(prefix="/task", tags=["Tasks Management"], responses=ERROR_RESPONSES)


def _printable(value: str) -> str:
    if any(not c.isprintable() and c not in "\n\t" for c in value):
        raise ValueError("must not contain control characters")
    return value


Label = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64), AfterValidator(_printable)]  # fmt: skip
"""A speaker as the transcript names it (SPEAKER_00, or a name a profile gave)."""
Name = Annotated[str, StringConstraints(strip_whitespace=True, max_length=100), AfterValidator(_printable)]  # fmt: skip


class SegmentEdit(BaseModel):
    """A person's edit of one segment: its text, its speaker (a label), or both."""

    model_config = ConfigDict(extra="forbid")
    text: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=20_000), AfterValidator(_printable)] | None = None  # fmt: skip
    """The new text; word timings are kept when the word count stays, else spread over the
    segment."""
    speaker: Label | None = None
    """The speaker label the turn belongs to instead."""

    @model_validator(mode="after")
    def _something(self) -> SegmentEdit:
        if self.text is None and self.speaker is None:
            raise ValueError("give `text`, `speaker` or both")
        return self


class Corrections(BaseModel):
    speakers: dict[str, str] = Field(default_factory=dict)
    """Display name of each renamed speaker label."""
    segments: dict[str, SegmentEdit] = Field(default_factory=dict)
    """Edits by segment index (0 = first)."""


class AudioLink(BaseModel):
    url: str | None
    """Where the audio plays without the API key, for `expires_in` seconds (an `<audio>`
    element cannot send a header); null when the audio is no longer kept."""
    expires_in: int | None = None
    message: str | None = None
    """Why there is no audio, when `url` is null."""


NOT_TRANSCRIPT: dict[int | str, dict[str, Any]] = {
    409: {"model": ErrorResponse, "description": "Not a completed transcript"}
}


@router.get("/all", response_model=TaskList)
def list_tasks(
    store: StoreDep,
    owner: Owner,
    limit: Annotated[
        int | None, Query(ge=1, le=1000, description="At most this many tasks.")
    ] = None,
    offset: Annotated[
        int, Query(ge=0, le=1_000_000_000, description="Skip this many (newest first).")
    ] = 0,
    status: Annotated[TaskStatus | None, Query(description="Only tasks in this status.")] = None,
    task_type: Annotated[TaskType | None, Query(description="Only tasks of this type.")] = None,
) -> TaskList:
    """Every task (with API keys: the caller's), newest first, with `total` = how many match
    the filters."""
    tasks, total = store.list_tasks(
        limit=limit, offset=offset, status=status, task_type=task_type, owner=owner
    )
    return TaskList(tasks=[task_summary(t) for t in tasks], total=total)


@router.get(
    "/{identifier}",
    # with format=json the body is the bare result: an object, or a list for a diarization
    response_model=TaskResult | dict[str, Any] | list[dict[str, Any]],
    responses={
        200: {
            "description": "The task; with `format`, the finished result as that file type.",
            "content": {m.split(";")[0]: {} for m in sorted(set(MEDIA_TYPES.values()))},
        },
        409: {"model": ErrorResponse, "description": "`format` asked for a task not completed"},
    },
)
async def get_task(
    identifier: str,
    store: StoreDep,
    waiter: WaiterDep,
    owner: Owner,
    format: Annotated[
        Literal["json", "srt", "vtt", "txt", "tsv", "rttm"] | None,
        Query(
            description="Return only the finished result, as JSON, SRT or WebVTT subtitles (with speakers when diarized), plain text, TSV, or RTTM (speaker turns)."
        ),
    ] = None,
    wait: Annotated[
        float,
        Query(
            ge=0,
            le=600,
            description="Seconds to wait for the task to end before answering (long poll); 0 answers at once.",
        ),
    ] = 0,
    original: Annotated[
        bool,
        Query(description="The machine's transcript, without people's corrections."),
    ] = False,
    max_line_width: Annotated[
        int,
        Query(
            ge=10,
            le=1000,
            description="Characters per subtitle line (srt, vtt); SRT's speaker label counts, but leaves at least half a line for words.",
        ),
    ] = MAX_LINE,
    max_line_count: Annotated[
        int, Query(ge=1, le=10, description="Lines per subtitle cue (srt, vtt).")
    ] = MAX_LINES,
) -> TaskResult | Response:
    """Status, result (once completed), error (once failed) and metadata of one task,
    including its stage, progress, queue position and how it was processed."""
    task = await run_in_threadpool(store.get, identifier)
    if task is None:
        raise task_not_found(identifier)
    check_owner(task, owner)
    if wait and task.status in UNFINISHED:
        await waiter.wait(identifier, wait)
        task = await run_in_threadpool(store.get, identifier)
        if task is None:
            raise task_not_found(identifier)
    if format is not None:
        # seconds for hours of speech: off the event loop
        return await run_in_threadpool(
            _rendered, task, format, original, max_line_width, max_line_count
        )
    # a transcript of hours is megabytes of JSON: made in a thread, not on the event loop
    return await run_in_threadpool(_shown, task, store, original)


def _shown(task: Task, store: TaskStore, original: bool) -> Response:
    view = task_result(task, store.queue_position(task), original)
    return Response(view.model_dump_json(), media_type="application/json")


def _completed(task: Task, then: str) -> None:
    if task.status != TaskStatus.completed:
        message = f"Task {task.identifier} is {task.status}; {then} once it is completed."
        raise ServiceError(409, "TASK_NOT_COMPLETED", message)


def _rendered(task: Task, fmt: str, original: bool, width: int, lines: int) -> Response:
    _completed(task, "formats are available")
    try:
        result = task.result if original else corrected(task.result, task.corrections)
        body, media_type = render(result, fmt, width=width, lines=lines)
    except ValueError as exc:
        raise ServiceError(400, "UNSUPPORTED_FORMAT", str(exc)) from None
    stem = Path(task.file_name or task.identifier).stem or task.identifier
    disposition = f'inline; filename="{stem}.{fmt}"'
    return Response(body, media_type=media_type, headers={"content-disposition": disposition})


@router.post("/{identifier}/cancel", response_model=CancelResponse)
def cancel_task(
    identifier: str, store: StoreDep, settings: SettingsDep, owner: Owner
) -> CancelResponse:
    """Stop a queued or processing task. It ends as `failed` with the error `cancelled: …`
    (a running task stops at its next progress step, within seconds, and frees its worker).
    A task that already ended is a 409."""
    _owned_task(store, identifier, owner)
    before, ended = store.cancel(identifier)
    if before is None:
        raise task_not_found(identifier)
    if before not in UNFINISHED:
        raise ServiceError(409, "TASK_FINISHED", f"Task {identifier} already ended ({before}).")
    if ended is not None:  # it was queued: no worker will touch it, it ended here
        release_input(settings, ended)
    return CancelResponse(identifier=identifier)


@router.delete("/{identifier}/delete", response_model=DeleteResponse)
@router.delete("/{identifier}", response_model=DeleteResponse)
def delete_task(
    identifier: str, store: StoreDep, settings: SettingsDep, owner: Owner
) -> DeleteResponse:
    """Delete a task and its stored input."""
    _owned_task(store, identifier, owner)
    task = store.delete(identifier)
    if task is None:
        raise task_not_found(identifier)
    if task.input_key:
        settings.media_path(task.input_key).unlink(missing_ok=True)
    return DeleteResponse(identifier=identifier)


def _owned_task(store: TaskStore, identifier: str, owner: str | None) -> Task:
    """The task, when it exists and (with API keys) belongs to the caller."""
    task = store.get(identifier)
    if task is None:
        raise task_not_found(identifier)
    check_owner(task, owner)
    return task


@router.patch(
    "/{identifier}/speakers",
    response_model=Corrections,
    response_model_exclude_none=True,
    responses=NOT_TRANSCRIPT,
)
def rename_speakers(
    identifier: str,
    store: StoreDep,
    owner: Owner,
    names: Annotated[
        dict[Label, Name | None],
        Body(
            min_length=1,
            max_length=100,
            examples=[{"SPEAKER_00": "Alice", "SPEAKER_01": "Bob"}],
            description="Speaker label → display name, for all of its turns; an empty name or null gives the label back.",
        ),
    ],
) -> dict[str, Any]:
    """Name speakers of a completed transcript. The names show in the result, the exports
    (`?format=`) and the web page; `?original=true` still gives the machine's labels."""
    task, segments = _transcript(store, identifier, owner)
    known = _labels(segments, task.corrections)
    unknown = sorted(set(names) - known)
    if unknown:
        raise ServiceError(
            404,
            "SPEAKER_NOT_FOUND",
            f"No speaker {', '.join(unknown)} in task {identifier}; its speakers are "
            f"{', '.join(sorted(known)) or 'none'}.",
        )
    return _stored(store.correct(identifier, speakers={k: v or None for k, v in names.items()}), identifier)  # fmt: skip


@router.patch(
    "/{identifier}/segments/{n}",
    response_model=Corrections,
    response_model_exclude_none=True,
    responses=NOT_TRANSCRIPT,
)
def edit_segment(
    identifier: str,
    n: Annotated[int, PathParam(ge=0, le=10_000_000, description="Segment index, 0 = first.")],
    edit: SegmentEdit,
    store: StoreDep,
    owner: Owner,
) -> dict[str, Any]:
    """Correct one segment of a completed transcript: its text, or the speaker of the turn
    (a label; rename labels with PATCH /task/{identifier}/speakers)."""
    _, segments = _transcript(store, identifier, owner)
    count = len(segments)
    if n >= count:
        raise ServiceError(
            404, "SEGMENT_NOT_FOUND", f"Task {identifier} has {count} segments (0..{count - 1})."
        )
    changes = edit.model_dump(exclude_none=True)
    return _stored(store.correct(identifier, segments={str(n): changes}), identifier)


@router.get("/{identifier}/audio-link", response_model=AudioLink)
def task_audio_link(
    identifier: str, store: StoreDep, settings: SettingsDep, owner: Owner
) -> AudioLink:
    """A short-lived signed URL of the task's audio (for a player, which cannot send the API
    key), while MEDIA_RETENTION_SECONDS keeps it; `url` is null once it is gone."""
    task = _owned_task(store, identifier, owner)
    try:
        _kept_audio(task, settings)
    except ServiceError as gone:
        return AudioLink(url=None, message=gone.message)
    return AudioLink(url=audio_link(settings, identifier), expires_in=AUDIO_LINK_SECONDS)


@router.get(
    "/{identifier}/audio",
    response_class=FileResponse,
    responses={
        200: {"content": {"audio/*": {}, "video/*": {}}, "description": "The input file, as uploaded."},
        206: {"description": "The part of it a `Range` header asked for."},
        410: {"model": ErrorResponse, "description": "The audio is no longer kept"},
    },
)  # fmt: skip
def task_audio(identifier: str, store: StoreDep, settings: SettingsDep, owner: Owner) -> FileResponse:  # fmt: skip
    """The task's input as uploaded, while MEDIA_RETENTION_SECONDS keeps it (410 after).
    Answers Range requests, so a player can seek."""
    task = _owned_task(store, identifier, owner)
    path = _kept_audio(task, settings)
    media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return FileResponse(
        path, media_type=media_type, filename=task.file_name or path.name,
        content_disposition_type="inline",
    )  # fmt: skip


def _transcript(
    store: TaskStore, identifier: str, owner: str | None
) -> tuple[Task, list[dict[str, Any]]]:
    """The task and its machine segments, when it is a completed transcript (only those can
    be corrected)."""
    task = _owned_task(store, identifier, owner)
    _completed(task, "it can be corrected")
    segments = task.result.get("segments") if isinstance(task.result, dict) else None
    if not isinstance(segments, list):
        raise ServiceError(
            409, "NOT_A_TRANSCRIPT", f"Task {identifier} has no transcript segments to correct."
        )
    return task, segments


def _labels(segments: list[dict[str, Any]], corrections: dict[str, Any] | None) -> set[str]:
    """Speaker labels of the transcript: the machine's and those turns were reassigned to."""
    labels = {s.get("speaker") for s in segments}
    labels |= {w.get("speaker") for s in segments for w in s.get("words") or []}
    edits = (corrections or {}).get("segments", {})
    labels |= {e.get("speaker") for e in edits.values()}
    return {label for label in labels if isinstance(label, str)}


def _stored(corrections: dict[str, Any] | None, identifier: str) -> dict[str, Any]:
    if corrections is None:  # deleted meanwhile
        raise task_not_found(identifier)
    return corrections


def _kept_audio(task: Task, settings: Settings) -> Path:
    """The task's input file, or a 404/410 saying why there is none."""
    if not task.input_key:
        raise ServiceError(
            404, "NO_AUDIO", f"Task {task.identifier} has no audio input (it was given JSON)."
        )
    ended = as_utc(task.end_time)
    kept = timedelta(seconds=settings.media_retention_seconds)
    path = settings.media_path(task.input_key)
    if (task.status in ENDED and (ended is None or now() - ended > kept)) or not path.is_file():
        raise ServiceError(
            410,
            "AUDIO_GONE",
            f"The audio of task {task.identifier} is no longer kept (MEDIA_RETENTION_SECONDS="
            f"{settings.media_retention_seconds}); the transcript is still here.",
        )
    return path

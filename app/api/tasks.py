"""Task listing, lookup and deletion."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from starlette.concurrency import run_in_threadpool

from app.api.deps import SettingsDep, StoreDep, WaiterDep
from app.api.schemas import CancelResponse, DeleteResponse
from app.auth import Owner, check_owner
from app.errors import ERROR_RESPONSES, ErrorResponse, ServiceError, task_not_found
from app.pipeline.formats import MEDIA_TYPES, render
from app.store.models import Task, TaskStatus, TaskType
from app.store.tasks import UNFINISHED, TaskStore
from app.store.views import TaskList, TaskResult, corrected, task_result, task_summary
from app.worker.queue import release_input

router = APIRouter(prefix="/task", tags=["Tasks Management"], responses=ERROR_RESPONSES)


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
        return _rendered(task, format, original)
    position = await run_in_threadpool(store.queue_position, task)
    return task_result(task, position, original)


def _rendered(task: Task, fmt: str, original: bool = False) -> Response:
    if task.status != TaskStatus.completed:
        raise ServiceError(
            409,
            "TASK_NOT_COMPLETED",
            f"Task {task.identifier} is {task.status}; formats are available once it is completed.",
        )
    try:
        result = task.result if original else corrected(task.result, task.corrections)
        body, media_type = render(result, fmt)
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

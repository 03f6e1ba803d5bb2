"""The queue seam: API processes hand task identifiers to workers (QUEUE=local: the rows are the
queue; QUEUE=celery: a Redis broker carries them). The task row stays the source of truth."""

from __future__ import annotations

import logging
from typing import Any, Protocol

from app.settings import Settings
from app.store.models import Task, TaskType
from app.store.tasks import TaskStore

log = logging.getLogger("app.tasks")


class Queue(Protocol):
    name: str
    """`local` or `celery`, as QUEUE says."""

    def submit(self, identifier: str) -> None:
        """Have a worker run the (queued) task; sending one twice is harmless."""

    def ping(self) -> None:
        """Raise when the broker cannot be reached."""

    def held(self) -> set[str] | None:
        """Identifiers the broker holds now (waiting or being run); None: no broker."""


class LocalQueue:
    """No broker: workers claim the oldest queued row themselves (`TaskStore.claim_next`)."""

    name = "local"

    def submit(self, identifier: str) -> None:
        pass

    def ping(self) -> None:
        pass

    def held(self) -> set[str] | None:
        return None


NAMES_SPEAKERS = (TaskType.full_process, TaskType.diarization)


def make_queue(settings: Settings) -> Queue:
    if settings.queue == "celery":
        from app.worker.celery import CeleryQueue

        return CeleryQueue(settings)
    return LocalQueue()


def submit(
    store: TaskStore, queue: Queue, task_type: TaskType, params: dict[str, Any], **fields: Any
) -> str:
    """The one submission path: store the task (queued), then hand its identifier over. A task
    that diarizes takes a copy of the caller's speaker profiles along, to name the voices (after
    the voices given with the request, in `inputs`, if any)."""
    diarization = params.get("diarization") or {}
    if (
        task_type in NAMES_SPEAKERS
        and diarization.get("diarize", True)
        and diarization.get("identify_speakers", True)
    ):
        inputs = fields.get("inputs") or {}
        profiles = inputs.get("speaker_profiles", []) + [
            {"name": p.name, "embedding": p.embedding, "model": p.model}
            for p in store.profiles(fields.get("owner"))
        ]
        if profiles:
            fields["inputs"] = {**inputs, "speaker_profiles": profiles}
    task = store.create(task_type, params, **fields)
    queue.submit(task.identifier)
    log.info("task %s queued: %s of %s", task.identifier, task_type, fields.get("file_name"))
    return task.identifier


def release_input(settings: Settings, task: Task) -> None:
    """Delete an ended task's input, unless MEDIA_RETENTION_SECONDS keeps it for housekeeping."""
    if task.input_key and not settings.media_retention_seconds:
        settings.media_path(task.input_key).unlink(missing_ok=True)

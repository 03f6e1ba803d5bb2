"""How a task is shown: GET /task/{identifier}, the task list, and webhook bodies."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, Field

from app.net import redact_url
from app.store.models import Task, TaskStatus, TaskType, worker_of
from app.store.tasks import as_utc

UtcDatetime = Annotated[datetime | None, AfterValidator(as_utc)]
"""Stored times are UTC; SQLite returns them without a zone."""
RedactedUrl = Annotated[str | None, AfterValidator(redact_url)]
"""URLs are shown without passwords and token-like query values (presigned links)."""


class _TaskFacts(BaseModel):
    """What the task list and a task's metadata both show."""

    task_type: TaskType
    file_name: str | None
    url: RedactedUrl
    language: str | None
    audio_duration: float | None
    duration: float | None
    """Seconds spent processing."""
    start_time: UtcDatetime
    end_time: UtcDatetime
    created_at: UtcDatetime = None
    stage: str | None = None
    """Current stage: starting, decoding, transcribing, aligning, diarizing, combining, done, failed."""
    progress: float | None = None
    """Percent of the whole task done."""


class TaskSummary(_TaskFacts):
    identifier: str
    status: TaskStatus
    error: str | None
    speakers: int | None = None
    """Speakers the diarization found."""


class TaskList(BaseModel):
    tasks: list[TaskSummary]
    total: int | None = None


class WorkerRef(BaseModel):
    name: str
    host: str
    pid: int | None


class TaskMetadata(_TaskFacts):
    task_params: dict[str, Any]
    callback_url: RedactedUrl
    queue_position: int | None = None
    """1 = next to start; only while queued."""
    worker: Annotated[WorkerRef | None, BeforeValidator(worker_of)] = None
    """The worker that claimed the task (name, host, pid), from the moment it is claimed."""
    partial_text: str | None = None
    """The text transcribed so far, while the task is transcribing (the result has the text)."""
    processing: dict[str, Any] = Field(default_factory=dict)
    """How the result was made: model and its source, device, compute type, aligner, diarizer,
    detected language probability and candidates, seconds per stage, windows dropped as silence."""
    webhook: dict[str, Any] | None = None
    """Outcome of the callback delivery."""
    corrections: dict[str, Any] | None = None
    """People's edits, already applied to `result` (`?original=true` shows the machine's):
    `{"speakers": {label: name}, "segments": {index: {"text", "speaker"}}}`."""


class TaskResult(BaseModel):
    status: TaskStatus
    result: Any | None
    metadata: TaskMetadata
    error: str | None


def task_summary(task: Task) -> TaskSummary:
    speakers = (task.info or {}).get("speakers")
    return TaskSummary.model_validate(task, from_attributes=True).model_copy(
        update={"speakers": speakers if isinstance(speakers, int) else None}
    )


def task_result(
    task: Task, queue_position: int | None = None, original: bool = False
) -> TaskResult:
    metadata = TaskMetadata.model_validate(task, from_attributes=True).model_copy(
        update={"queue_position": queue_position, "processing": task.info or {}}
    )
    result = task.result if original else corrected(task.result, task.corrections)
    return TaskResult(status=task.status, result=result, error=task.error, metadata=metadata)


def corrected(result: Any, corrections: dict[str, Any] | None) -> Any:
    """The transcript as people corrected it: turns reassigned, texts edited, speakers renamed
    (each segment's label stays in `speaker_label`, for editing it again). An edited text
    keeps the word timings when its word count is unchanged, else its words are spread over
    the segment's span by length: no word is lost."""
    if not corrections or not isinstance(result, dict) or not isinstance(result.get("segments"), list):  # fmt: skip
        return result
    names, edits = corrections.get("speakers", {}), corrections.get("segments", {})
    segments = []
    for n, original in enumerate(result["segments"]):
        segment, edit = dict(original), edits.get(str(n), {})
        words = [dict(w) for w in segment.get("words") or []]
        if "text" in edit:
            segment["text"] = edit["text"]
            words = _respaced(words, edit["text"], segment) if words else words
        if "speaker" in edit:
            segment["speaker"] = edit["speaker"]
            for word in words:
                word["speaker"] = edit["speaker"]
        if segment.get("speaker") is not None:
            segment["speaker_label"] = segment["speaker"]
            segment["speaker"] = names.get(segment["speaker"], segment["speaker"])
        for word in words:
            if word.get("speaker") is not None:
                word["speaker"] = names.get(word["speaker"], word["speaker"])
        if "words" in segment:
            segment["words"] = words
        segments.append(segment)
    out = {**result, "segments": segments}
    if "word_segments" in result:
        out["word_segments"] = [w for s in segments for w in s.get("words", [])]
    return out


def _respaced(words: list[dict[str, Any]], text: str, segment: dict[str, Any]) -> list[dict[str, Any]]:  # fmt: skip
    new = text.split()
    if len(new) == len(words):
        return [{**w, "word": t} for w, t in zip(words, new, strict=True)]
    start, end = segment.get("start"), segment.get("end")
    speaker = {"speaker": segment["speaker"]} if segment.get("speaker") is not None else {}
    if start is None or end is None:
        return [{"word": t, **speaker} for t in new]
    out, at, total = [], float(start), sum(len(t) for t in new)
    for t in new:
        step = (float(end) - float(start)) * len(t) / total
        out.append({"word": t, "start": round(at, 3), "end": round(at + step, 3), **speaker})
        at += step
    return out

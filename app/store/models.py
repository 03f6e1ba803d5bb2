"""The one table: a task, its inputs, its progress and its result."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, DateTime, Float, Index, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class TaskStatus(StrEnum):
    queued = "queued"
    processing = "processing"
    completed = "completed"
    failed = "failed"


class TaskType(StrEnum):
    full_process = "full_process"
    transcription = "transcription"
    transcription_alignment = "transcription_alignment"
    diarization = "diarization"
    combine = "combine_transcript&diarization"


class Base(DeclarativeBase):
    pass


class Task(Base):
    __tablename__ = "tasks"

    identifier: Mapped[str] = mapped_column(String(36), primary_key=True)
    status: Mapped[TaskStatus] = mapped_column(String(16), index=True)
    task_type: Mapped[TaskType] = mapped_column(String(40))
    task_params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    file_name: Mapped[str | None] = mapped_column(String(512))
    url: Mapped[str | None] = mapped_column(Text)
    callback_url: Mapped[str | None] = mapped_column(Text)
    input_path: Mapped[str | None] = mapped_column(Text)
    """Media file the worker reads; owned by the task and deleted when it ends."""
    inputs: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    """JSON inputs of /service/align and /service/combine (transcript, diarization)."""
    language: Mapped[str | None] = mapped_column(String(16))
    audio_duration: Mapped[float | None] = mapped_column(Float)
    """Seconds of audio."""
    result: Mapped[Any | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    info: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    """How the result was produced: model, source, device, compute type, aligner, diarizer,
    detected language probability, per-stage seconds."""
    stage: Mapped[str | None] = mapped_column(String(32))
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    """Percent of the whole task done, 0-100."""
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    start_time: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    end_time: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    duration: Mapped[float | None] = mapped_column(Float)
    """Seconds from start to end of processing."""
    webhook: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    """Outcome of the callback delivery: status, attempts, last error."""

    __table_args__ = (Index("ix_tasks_status_created", "status", "created_at"),)

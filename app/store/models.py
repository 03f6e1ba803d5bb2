"""The one table: a task, its inputs, its progress and its result."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, Float, Index, Integer, String, Text
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

    identifier: Mapped[str] = mapped_column(
        String(36), primary_key=True, comment="Task id (UUID) given to the client."
    )
    status: Mapped[TaskStatus] = mapped_column(
        String(16), index=True, comment="queued, processing, completed or failed."
    )
    task_type: Mapped[TaskType] = mapped_column(
        String(40),
        comment="full_process, transcription, transcription_alignment, diarization, combine_transcript&diarization.",
    )
    task_params: Mapped[dict[str, Any]] = mapped_column(
        JSON,
        default=dict,
        comment="Request options, grouped: model, asr, vad, alignment, diarization.",
    )
    file_name: Mapped[str | None] = mapped_column(
        String(512), comment="Name of the uploaded or downloaded file."
    )
    url: Mapped[str | None] = mapped_column(
        Text, comment="Source URL of /speech-to-text-url tasks."
    )
    callback_url: Mapped[str | None] = mapped_column(
        Text, comment="Where the finished task is POSTed."
    )
    input_path: Mapped[str | None] = mapped_column(
        Text, comment="Media file the worker reads; owned by the task and deleted when it ends."
    )
    inputs: Mapped[dict[str, Any] | None] = mapped_column(
        JSON,
        comment="JSON inputs of /service/align and /service/combine (transcript, diarization).",
    )
    language: Mapped[str | None] = mapped_column(
        String(16), comment="Requested, else detected, language (ISO 639-1)."
    )
    audio_duration: Mapped[float | None] = mapped_column(Float, comment="Seconds of audio.")
    result: Mapped[Any | None] = mapped_column(
        JSON, comment="whisperX-shaped result once completed."
    )
    error: Mapped[str | None] = mapped_column(Text, comment="Readable reason once failed.")
    info: Mapped[dict[str, Any]] = mapped_column(
        JSON,
        default=dict,
        comment="How the result was produced: model, source, device, compute type, aligner, diarizer, detected language probability, per-stage seconds.",
    )
    stage: Mapped[str | None] = mapped_column(
        String(32),
        comment="Current stage: decoding, transcribing, aligning, diarizing, combining, done, failed.",
    )
    progress: Mapped[float] = mapped_column(
        Float, default=0.0, comment="Percent of the whole task done, 0-100."
    )
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), index=True, comment="When the task was submitted (UTC)."
    )
    start_time: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), comment="When a worker claimed it (UTC)."
    )
    end_time: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), comment="When it completed or failed (UTC)."
    )
    duration: Mapped[float | None] = mapped_column(
        Float, comment="Seconds from start to end of processing."
    )
    cancel_requested: Mapped[bool] = mapped_column(
        Boolean,
        default=False,
        comment="Set by a cancel while processing; the worker stops at its next progress step.",
    )
    webhook: Mapped[dict[str, Any] | None] = mapped_column(
        JSON, comment="Outcome of the callback delivery: status, attempts, last error."
    )
    attempts: Mapped[int] = mapped_column(
        Integer,
        default=0,
        server_default="0",
        comment="Times a worker started the task; a task the service died running too often is failed, not retried forever.",
    )
    worker: Mapped[str | None] = mapped_column(
        String(128),
        comment="Process running the task (host:pid:instance); recovery after a restart leaves the tasks of live processes alone.",
    )
    heartbeat_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True),
        comment="Last sign of life of its worker while processing (UTC).",
    )
    owner: Mapped[str | None] = mapped_column(
        String(64),
        index=True,
        comment="Fingerprint (SHA-256 prefix) of the API key that submitted the task; empty when auth is off. Never the key itself.",
    )

    __table_args__ = (Index("ix_tasks_status_created", "status", "created_at"),)

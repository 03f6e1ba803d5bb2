"""The tables: tasks (the source of truth), the workers that run them, webhook deliveries, leases."""

from __future__ import annotations

import os
import secrets
import socket
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Index, Integer, String, Text
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
    speaker_enrolment = "speaker_enrolment"
    language_detection = "language_detection"


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
    input_key: Mapped[str | None] = mapped_column(
        Text,
        comment="Media file the worker reads, relative to MEDIA_DIR (a volume every machine shares); owned by the task and deleted when it ends.",
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
        comment="Name of the worker running the task (see workers); a task whose worker falls silent is taken over.",
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
    corrections: Mapped[dict[str, Any] | None] = mapped_column(
        JSON,
        comment='People\'s edits of a completed transcript, kept beside the machine result: {"speakers": {label: name}, "segments": {index: {"text", "speaker"}}}.',
    )
    partial_text: Mapped[str | None] = mapped_column(
        Text,
        comment="Text transcribed so far while the task runs; empty once it has ended (the result holds the text).",
    )

    __table_args__ = (Index("ix_tasks_status_created", "status", "created_at"),)


def worker_name() -> str:
    """A worker's name, unique per process life (pids repeat across containers and restarts)."""
    return f"w{os.getpid()}-{secrets.token_hex(3)}@{socket.gethostname()}"


def worker_of(name: Any) -> Any:
    """`{"name", "host", "pid"}` read from a worker name (other values pass through)."""
    if not isinstance(name, str) or "@" not in name:
        return name if isinstance(name, dict) else None
    process, host = name.rsplit("@", 1)
    pid = process.lstrip("w").partition("-")[0]
    return {"name": name, "host": host, "pid": int(pid) if pid.isdigit() else None}


class Worker(Base):
    """A live worker process, as it last reported itself (every few seconds)."""

    __tablename__ = "workers"

    name: Mapped[str] = mapped_column(
        String(128), primary_key=True, comment="Unique per process life: w<pid>-<random>@<host>."
    )
    host: Mapped[str] = mapped_column(String(255), comment="Host name of the machine.")
    pid: Mapped[int] = mapped_column(Integer, comment="Process id on that host.")
    queue: Mapped[str] = mapped_column(String(16), comment="local or celery.")
    state: Mapped[str] = mapped_column(String(16), comment="warming, idle or busy.")
    task: Mapped[str | None] = mapped_column(String(36), comment="Task it is running, if busy.")
    device: Mapped[str | None] = mapped_column(String(16), comment="cuda or cpu.")
    models: Mapped[list[dict[str, Any]]] = mapped_column(
        JSON, default=list, comment="Models loaded now: kind, name, device, compute type."
    )
    stats: Mapped[dict[str, Any]] = mapped_column(
        JSON, default=dict, comment="Counters since it started: model_loads, model_releases."
    )
    started_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), comment="When it started (UTC)."
    )
    heartbeat_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True),
        index=True,
        comment="Last report (UTC); silent for long means dead.",
    )


class SpeakerProfile(Base):
    """A voice known by name: its embedding (never the audio) and the model that made it."""

    __tablename__ = "speaker_profiles"

    identifier: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(
        String(200), comment="Shown instead of SPEAKER_XX where the voice matches."
    )
    owner: Mapped[str | None] = mapped_column(
        String(64),
        index=True,
        comment="Fingerprint of the API key it belongs to; each key sees and uses only its own.",
    )
    embedding: Mapped[list[float]] = mapped_column(JSON, comment="Unit-norm voice embedding.")
    model: Mapped[str] = mapped_column(
        String(128), comment="Embedding model that made it; matched only with the same model."
    )
    seconds: Mapped[float] = mapped_column(Float, comment="Seconds of speech it was made from.")
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), comment="When it was enrolled (UTC)."
    )


class Delivery(Base):
    """One webhook delivery per ended task: durable, retried with backoff by any worker."""

    __tablename__ = "deliveries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    task: Mapped[str] = mapped_column(
        String(36),
        ForeignKey("tasks.identifier", ondelete="CASCADE"),
        index=True,
        comment="The ended task whose body is POSTed.",
    )
    state: Mapped[str] = mapped_column(String(16), comment="pending, delivered, failed or refused.")
    attempts: Mapped[int] = mapped_column(Integer, default=0, comment="Attempts made so far.")
    due_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), comment="When the next attempt may start (UTC)."
    )
    claimed_by: Mapped[str | None] = mapped_column(String(128), comment="Worker sending it now.")
    claimed_until: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), comment="Another worker may take it over after this (UTC)."
    )

    __table_args__ = (Index("ix_deliveries_state_due", "state", "due_at"),)


class Lease(Base):
    """Cluster-wide duties (recovery, housekeeping) held by one process at a time."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128), comment="Worker holding it.")
    expires_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), comment="Free for others after this (UTC)."
    )

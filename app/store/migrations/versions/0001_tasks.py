"""The tasks table as the first release created it.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tasks",
        sa.Column(
            "identifier",
            sa.String(36),
            primary_key=True,
            comment="Task id (UUID) given to the client.",
        ),
        sa.Column(
            "status",
            sa.String(16),
            nullable=False,
            comment="queued, processing, completed or failed.",
        ),
        sa.Column(
            "task_type",
            sa.String(40),
            nullable=False,
            comment="full_process, transcription, transcription_alignment, diarization, combine_transcript&diarization.",
        ),
        sa.Column(
            "task_params",
            sa.JSON,
            nullable=False,
            comment="Request options, grouped: model, asr, vad, alignment, diarization.",
        ),
        sa.Column("file_name", sa.String(512), comment="Name of the uploaded or downloaded file."),
        sa.Column("url", sa.Text, comment="Source URL of /speech-to-text-url tasks."),
        sa.Column("callback_url", sa.Text, comment="Where the finished task is POSTed."),
        sa.Column(
            "input_path",
            sa.Text,
            comment="Media file the worker reads; owned by the task and deleted when it ends.",
        ),
        sa.Column(
            "inputs",
            sa.JSON,
            comment="JSON inputs of /service/align and /service/combine (transcript, diarization).",
        ),
        sa.Column(
            "language", sa.String(16), comment="Requested, else detected, language (ISO 639-1)."
        ),
        sa.Column("audio_duration", sa.Float, comment="Seconds of audio."),
        sa.Column("result", sa.JSON, comment="whisperX-shaped result once completed."),
        sa.Column("error", sa.Text, comment="Readable reason once failed."),
        sa.Column(
            "info",
            sa.JSON,
            nullable=False,
            comment="How the result was produced: model, source, device, compute type, aligner, diarizer, detected language probability, per-stage seconds.",
        ),
        sa.Column(
            "stage",
            sa.String(32),
            comment="Current stage: decoding, transcribing, aligning, diarizing, combining, done, failed.",
        ),
        sa.Column(
            "progress", sa.Float, nullable=False, comment="Percent of the whole task done, 0-100."
        ),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            nullable=False,
            comment="When the task was submitted (UTC).",
        ),
        sa.Column(
            "start_time", sa.DateTime(timezone=True), comment="When a worker claimed it (UTC)."
        ),
        sa.Column(
            "end_time", sa.DateTime(timezone=True), comment="When it completed or failed (UTC)."
        ),
        sa.Column("duration", sa.Float, comment="Seconds from start to end of processing."),
        sa.Column(
            "cancel_requested",
            sa.Boolean,
            nullable=False,
            comment="Set by a cancel while processing; the worker stops at its next progress step.",
        ),
        sa.Column(
            "webhook",
            sa.JSON,
            comment="Outcome of the callback delivery: status, attempts, last error.",
        ),
    )
    op.create_index("ix_tasks_status", "tasks", ["status"])
    op.create_index("ix_tasks_created_at", "tasks", ["created_at"])
    op.create_index("ix_tasks_status_created", "tasks", ["status", "created_at"])


def downgrade() -> None:
    op.drop_table("tasks")

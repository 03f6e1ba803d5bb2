"""Workers in their own processes and machines: inputs addressed by a key relative to
MEDIA_DIR, the workers table, durable webhook deliveries and cluster-wide leases.

Revision ID: 0005
Revises: 0004
"""

import os

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

UTC_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.alter_column(
            "input_path",
            new_column_name="input_key",
            existing_type=sa.Text(),
            comment="Media file the worker reads, relative to MEDIA_DIR (a volume every machine shares); owned by the task and deleted when it ends.",
        )
        batch.alter_column(
            "worker",
            existing_type=sa.String(128),
            comment="Name of the worker running the task (see workers); a task whose worker falls silent is taken over.",
        )
    # inputs were stored as paths of files directly inside MEDIA_DIR: keep the file name
    tasks = sa.table("tasks", sa.column("identifier", sa.String), sa.column("input_key", sa.Text))
    conn = op.get_bind()
    for identifier, path in conn.execute(sa.select(tasks).where(tasks.c.input_key.is_not(None))):
        key = os.path.basename(path)
        if key != path:
            conn.execute(
                tasks.update().where(tasks.c.identifier == identifier).values(input_key=key)
            )
    op.create_table(
        "workers",
        sa.Column("name", sa.String(128), primary_key=True, comment="Unique per process life: w<pid>-<random>@<host>."),
        sa.Column("host", sa.String(255), nullable=False, comment="Host name of the machine."),
        sa.Column("pid", sa.Integer, nullable=False, comment="Process id on that host."),
        sa.Column("queue", sa.String(16), nullable=False, comment="local or celery."),
        sa.Column("state", sa.String(16), nullable=False, comment="warming, idle or busy."),
        sa.Column("task", sa.String(36), comment="Task it is running, if busy."),
        sa.Column("device", sa.String(16), comment="cuda or cpu."),
        sa.Column("models", sa.JSON, nullable=False, comment="Models loaded now: kind, name, device, compute type."),
        sa.Column("stats", sa.JSON, nullable=False, comment="Counters since it started: model_loads, model_releases."),
        sa.Column("started_at", UTC_TIME, nullable=False, comment="When it started (UTC)."),
        sa.Column("heartbeat_at", UTC_TIME, nullable=False, comment="Last report (UTC); silent for long means dead."),
    )  # fmt: skip
    op.create_index("ix_workers_heartbeat_at", "workers", ["heartbeat_at"])
    op.create_table(
        "deliveries",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("task", sa.String(36), sa.ForeignKey("tasks.identifier", ondelete="CASCADE"), nullable=False, comment="The ended task whose body is POSTed."),
        sa.Column("state", sa.String(16), nullable=False, comment="pending, delivered, failed or refused."),
        sa.Column("attempts", sa.Integer, nullable=False, comment="Attempts made so far."),
        sa.Column("due_at", UTC_TIME, nullable=False, comment="When the next attempt may start (UTC)."),
        sa.Column("claimed_by", sa.String(128), comment="Worker sending it now."),
        sa.Column("claimed_until", UTC_TIME, comment="Another worker may take it over after this (UTC)."),
    )  # fmt: skip
    op.create_index("ix_deliveries_task", "deliveries", ["task"])
    op.create_index("ix_deliveries_state_due", "deliveries", ["state", "due_at"])
    op.create_table(
        "leases",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("holder", sa.String(128), nullable=False, comment="Worker holding it."),
        sa.Column("expires_at", UTC_TIME, nullable=False, comment="Free for others after this (UTC)."),
    )  # fmt: skip


def downgrade() -> None:
    op.drop_table("leases")
    op.drop_table("deliveries")
    op.drop_table("workers")
    with op.batch_alter_table("tasks") as batch:
        batch.alter_column("input_key", new_column_name="input_path", existing_type=sa.Text())

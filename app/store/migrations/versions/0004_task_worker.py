"""Record which process runs a task and when it last showed life, so one instance's restart
does not take over the tasks another live instance is running.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(
            sa.Column(
                "worker",
                sa.String(128),
                comment="Process running the task (host:pid:instance); recovery after a restart leaves the tasks of live processes alone.",
            )
        )
        batch.add_column(
            sa.Column(
                "heartbeat_at",
                sa.DateTime(timezone=True),
                comment="Last sign of life of its worker while processing (UTC).",
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("heartbeat_at")
        batch.drop_column("worker")

"""Count how often a worker started a task, so a task that kills the service is not retried
forever after restarts.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(
            sa.Column(
                "attempts",
                sa.Integer,
                nullable=False,
                server_default="0",
                comment="Times a worker started the task; a task the service died running too often is failed, not retried forever.",
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("attempts")

"""Tasks belong to the API key that submitted them (auth).

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(
            sa.Column(
                "owner",
                sa.String(64),
                comment="Fingerprint (SHA-256 prefix) of the API key that submitted the task; empty when auth is off. Never the key itself.",
            )
        )
        batch.create_index("ix_tasks_owner", ["owner"])


def downgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.drop_index("ix_tasks_owner")
        batch.drop_column("owner")

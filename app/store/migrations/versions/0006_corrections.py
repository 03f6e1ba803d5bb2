"""People's corrections of a transcript (speaker names, segment text and speaker), kept beside
the machine result.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(
            sa.Column(
                "corrections",
                sa.JSON,
                comment='People\'s edits of a completed transcript, kept beside the machine result: {"speakers": {label: name}, "segments": {index: {"text", "speaker"}}}.',
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("corrections")

"""The text a running task has transcribed so far (streamed answers send it as it grows).

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

COMMENT = "Text transcribed so far while the task runs; empty once it has ended (the result holds the text)."


def upgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("partial_text", sa.Text, comment=COMMENT))


def downgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("partial_text")

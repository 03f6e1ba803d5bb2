"""Speaker profiles: voices known by name across recordings.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "speaker_profiles",
        sa.Column("identifier", sa.String(36), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, comment="Shown instead of SPEAKER_XX where the voice matches."),
        sa.Column("owner", sa.String(64), comment="Fingerprint of the API key it belongs to; each key sees and uses only its own."),
        sa.Column("embedding", sa.JSON, nullable=False, comment="Unit-norm voice embedding."),
        sa.Column("model", sa.String(128), nullable=False, comment="Embedding model that made it; matched only with the same model."),
        sa.Column("seconds", sa.Float, nullable=False, comment="Seconds of speech it was made from."),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, comment="When it was enrolled (UTC)."),
    )  # fmt: skip
    op.create_index("ix_speaker_profiles_owner", "speaker_profiles", ["owner"])


def downgrade() -> None:
    op.drop_table("speaker_profiles")

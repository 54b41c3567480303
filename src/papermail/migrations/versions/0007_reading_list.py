"""reading list: papers a reader saved from a digest (issue 13 item 4)

Revision ID: 0007_reading_list
Revises: 0006_named_interests
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0007_reading_list"
down_revision: str | None = "0006_named_interests"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "savedpaper",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("paper_id", sa.String(length=64), nullable=False),
        sa.Column("topic_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["subscriber_id"], ["subscriber.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["paper_id"], ["paper.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["topic_id"], ["topic.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("subscriber_id", "paper_id"),
    )
    op.create_index("ix_savedpaper_subscriber_id", "savedpaper", ["subscriber_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_savedpaper_subscriber_id", table_name="savedpaper")
    op.drop_table("savedpaper")

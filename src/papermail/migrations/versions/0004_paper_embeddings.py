"""paper embeddings: stored sentence vectors for the optional dense signal (issue 11)

Revision ID: 0004_paper_embeddings
Revises: 0003_paper_details
Create Date: 2026-12-02 04:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0004_paper_embeddings"
down_revision: str | None = "0003_paper_details"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "paperembedding",
        sa.Column("paper_id", sa.String(length=64), nullable=False),
        sa.Column("model", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("text_hash", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["paper_id"], ["paper.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("paper_id"),
    )


def downgrade() -> None:
    op.drop_table("paperembedding")

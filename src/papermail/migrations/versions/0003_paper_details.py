"""paper details: links, code, summaries and arXiv metadata (issue 12)

Revision ID: 0003_paper_details
Revises: 0002
Create Date: 2026-12-02 04:05:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0003_paper_details"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_URLS = ("pdf_url", "hf_url", "code_url", "project_url", "thumbnail_url")


def upgrade() -> None:
    with op.batch_alter_table("paper", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("arxiv_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True)
        )
        for name in _URLS:
            batch_op.add_column(
                sa.Column(name, sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True)
            )
        batch_op.add_column(sa.Column("code_stars", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("ai_summary", sa.Text(), nullable=True))
        batch_op.add_column(
            sa.Column("ai_keywords", sa.JSON(), server_default="[]", nullable=False)
        )
        batch_op.add_column(
            sa.Column("affiliations", sa.JSON(), server_default="{}", nullable=False)
        )
        batch_op.add_column(sa.Column("comments_count", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column(
                "primary_category", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True
            )
        )
        batch_op.add_column(sa.Column("comments", sa.Text(), nullable=True))
        batch_op.add_column(
            sa.Column("journal_ref", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True)
        )
    # Rows stored before get their details when their source is ingested again; until then
    # digests read the arXiv id from the paper's key when it is one.


def downgrade() -> None:
    with op.batch_alter_table("paper", schema=None) as batch_op:
        for name in (
            "journal_ref",
            "comments",
            "primary_category",
            "comments_count",
            "affiliations",
            "ai_keywords",
            "ai_summary",
            "code_stars",
            *reversed(_URLS),
            "arxiv_id",
        ):
            batch_op.drop_column(name)

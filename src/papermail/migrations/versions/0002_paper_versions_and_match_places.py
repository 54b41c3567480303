"""paper versions and match places

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 12:23:19.886143
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("digestitem", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("matched_where", sa.JSON(), server_default="[]", nullable=False)
        )
        batch_op.add_column(sa.Column("paper_version", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column("revised", sa.Boolean(), server_default=sa.false(), nullable=False)
        )

    with op.batch_alter_table("paper", schema=None) as batch_op:
        batch_op.add_column(sa.Column("version", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column("revised_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True)
        )
        batch_op.create_index(batch_op.f("ix_paper_revised_at"), ["revised_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("paper", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_paper_revised_at"))
        batch_op.drop_column("revised_at")
        batch_op.drop_column("version")

    with op.batch_alter_table("digestitem", schema=None) as batch_op:
        batch_op.drop_column("revised")
        batch_op.drop_column("paper_version")
        batch_op.drop_column("matched_where")

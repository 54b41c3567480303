"""operator side (issue 14): bounce and complaint reports, operator accounts, job runs

Bounce reports that arrive after the SMTP session are stored once (`bounceevent`, unique
fingerprint); a subscriber gains a decaying bounce score. Operators log in to /admin
(`operator`); each pipeline stage records when it ran (`jobrun`). Nothing existing changes
but the two new subscriber columns, which start at 0 / NULL.

Revision ID: 0008_operator_side
Revises: 0007_reading_list
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0008_operator_side"
down_revision: str | None = "0007_reading_list"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("subscriber") as batch_op:
        batch_op.add_column(
            sa.Column("bounce_score", sa.Float(), server_default="0", nullable=False)
        )
        batch_op.add_column(sa.Column("last_bounce_on", sa.Date(), nullable=True))
    op.create_table(
        "bounceevent",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("fingerprint", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("recipient", sqlmodel.sql.sqltypes.AutoString(length=320), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=True),
        sa.Column("message_id", sqlmodel.sql.sqltypes.AutoString(length=250), nullable=True),
        sa.Column("status_code", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("action", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("received_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["subscriber_id"], ["subscriber.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("fingerprint"),
    )
    op.create_index("ix_bounceevent_recipient", "bounceevent", ["recipient"], unique=False)
    op.create_index("ix_bounceevent_subscriber_id", "bounceevent", ["subscriber_id"], unique=False)
    op.create_index("ix_bounceevent_received_at", "bounceevent", ["received_at"], unique=False)
    op.create_table(
        "operator",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("password_hash", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("role", sa.String(length=10), nullable=False),
        sa.Column("totp_secret", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("totp_last_step", sa.Integer(), nullable=True),
        sa.Column("failed_logins", sa.Integer(), nullable=False),
        sa.Column("locked_until", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("last_login_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("username"),
    )
    op.create_table(
        "jobrun",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("stage", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column("started_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("finished_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("ok", sa.Boolean(), nullable=True),
        sa.Column("counts", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_jobrun_stage", "jobrun", ["stage"], unique=False)
    op.create_index("ix_jobrun_started_at", "jobrun", ["started_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_jobrun_started_at", table_name="jobrun")
    op.drop_index("ix_jobrun_stage", table_name="jobrun")
    op.drop_table("jobrun")
    op.drop_table("operator")
    op.drop_index("ix_bounceevent_received_at", table_name="bounceevent")
    op.drop_index("ix_bounceevent_subscriber_id", table_name="bounceevent")
    op.drop_index("ix_bounceevent_recipient", table_name="bounceevent")
    op.drop_table("bounceevent")
    with op.batch_alter_table("subscriber") as batch_op:
        batch_op.drop_column("last_bounce_on")
        batch_op.drop_column("bounce_score")

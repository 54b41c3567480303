"""subscriber link nonces; SQLite never reuses subscriber ids (issue 15.1)

Every link token now carries a random nonce stored with the subscriber, so a token only ever
opens the row it was made for. Rows that exist when this runs get a nonce and
``legacy_links = true``: their links mailed before (tokens without a nonce) keep working. A row
created afterwards never accepts a token without its nonce, so an old link whose subscriber was
deleted cannot open a new subscriber who got the same id.

On SQLite the table is rebuilt with AUTOINCREMENT (batch mode), so ids are never handed out
twice from now on. ``papermail.migrate`` runs SQLite migrations with foreign keys off: dropping
the old table would otherwise cascade into interests, digests and ratings.

Revision ID: 0005_subscriber_link_nonces
Revises: 0004_paper_embeddings
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

from papermail.models import new_link_nonce

revision: str = "0005_subscriber_link_nonces"
down_revision: str | None = "0004_paper_embeddings"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _refuse_cascading_rebuild() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite" and bind.exec_driver_sql("PRAGMA foreign_keys").scalar():
        raise RuntimeError(
            "rebuilding the subscriber table with SQLite foreign keys on would delete every "
            "subscriber's interests and history: run it through `papermail db upgrade`"
        )


def upgrade() -> None:
    _refuse_cascading_rebuild()
    with op.batch_alter_table("subscriber", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("link_nonce", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True)
        )
        batch_op.add_column(
            sa.Column("legacy_links", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
    bind = op.get_bind()
    subscriber = sa.table(
        "subscriber",
        sa.column("id", sa.Integer),
        sa.column("link_nonce", sa.String),
        sa.column("legacy_links", sa.Boolean),
    )
    ids = bind.execute(sa.select(subscriber.c.id)).scalars().all()
    for subscriber_id in ids:
        bind.execute(
            subscriber.update()
            .where(subscriber.c.id == subscriber_id)
            .values(link_nonce=new_link_nonce(), legacy_links=True)
        )
    with op.batch_alter_table(
        "subscriber",
        schema=None,
        recreate="always" if bind.dialect.name == "sqlite" else "auto",
        table_kwargs={"sqlite_autoincrement": True},
    ) as batch_op:
        batch_op.alter_column(
            "link_nonce", existing_type=sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False
        )


def downgrade() -> None:
    _refuse_cascading_rebuild()
    with op.batch_alter_table("subscriber", schema=None) as batch_op:
        batch_op.drop_column("legacy_links")
        batch_op.drop_column("link_nonce")

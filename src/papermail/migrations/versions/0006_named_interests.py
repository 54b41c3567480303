"""named interests: topics with keywords, seed papers and followed authors (issue 13)

A subscriber's keywords now belong to a named interest (`topic`); seed papers and followed
authors belong to one too. Ratings and digest items record the interest they were shown under,
and digest items their section heading and the followed author who wrote them.

Every existing subscriber gets one interest, named after their first keyword, holding all their
keywords and exclusions, with their papers-per-digest as its share; their ratings and digest
items point at it. Nothing is deleted. The interest table's unique constraint moves from
(subscriber, phrase, negative) to (topic, phrase, negative): two interests may share a keyword.

Revision ID: 0006_named_interests
Revises: 0005_subscriber_link_nonces
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0006_named_interests"
down_revision: str | None = "0005_subscriber_link_nonces"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Names an unnamed constraint the way batch mode can find it on SQLite.
_CONVENTION = {"uq": "uq_%(table_name)s_%(column_0_N_name)s"}
DEFAULT_NAME = "My interests"
NAME_CHARS = 100


def _drop_unique(table: str, columns: list[str]) -> None:
    """Drops the unique constraint on `columns`, named or not (a downgrade names the one it
    recreates, the first schema did not): found by reflection, so a round trip works."""
    bind = op.get_bind()
    names = [
        u["name"]
        for u in sa.inspect(bind).get_unique_constraints(table)
        if u["column_names"] == columns
    ]
    if bind.dialect.name == "postgresql":
        for name in names:
            op.drop_constraint(name, table, type_="unique")
        return
    with op.batch_alter_table(table, naming_convention=_CONVENTION) as batch_op:
        for name in names:
            batch_op.drop_constraint(name or f"uq_{table}_{'_'.join(columns)}", type_="unique")


def upgrade() -> None:
    op.create_table(
        "topic",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("max_papers", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["subscriber_id"], ["subscriber.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("subscriber_id", "name"),
    )
    op.create_index("ix_topic_subscriber_id", "topic", ["subscriber_id"], unique=False)
    op.create_table(
        "seedpaper",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("topic_id", sa.Integer(), nullable=False),
        sa.Column("given", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
        sa.Column("arxiv_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("title", sa.Text(), nullable=True),
        sa.Column("paper_id", sa.String(length=64), nullable=True),
        sa.Column("found", sa.Boolean(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["paper_id"], ["paper.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["topic_id"], ["topic.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("topic_id", "given"),
    )
    op.create_index("ix_seedpaper_topic_id", "seedpaper", ["topic_id"], unique=False)
    op.create_index("ix_seedpaper_paper_id", "seedpaper", ["paper_id"], unique=False)
    op.create_table(
        "followedauthor",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("topic_id", sa.Integer(), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("normalized", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.ForeignKeyConstraint(["topic_id"], ["topic.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("topic_id", "normalized"),
    )
    op.create_index("ix_followedauthor_topic_id", "followedauthor", ["topic_id"], unique=False)

    _drop_unique("interest", ["subscriber_id", "phrase", "negative"])
    with op.batch_alter_table("interest") as batch_op:
        batch_op.add_column(sa.Column("topic_id", sa.Integer(), nullable=True))
        batch_op.create_index("ix_interest_topic_id", ["topic_id"], unique=False)
        batch_op.create_foreign_key(
            "fk_interest_topic_id", "topic", ["topic_id"], ["id"], ondelete="CASCADE"
        )
        batch_op.create_unique_constraint(
            "interest_topic_id_phrase_negative_key", ["topic_id", "phrase", "negative"]
        )
    with op.batch_alter_table("rating") as batch_op:
        batch_op.add_column(sa.Column("topic_id", sa.Integer(), nullable=True))
        batch_op.create_index("ix_rating_topic_id", ["topic_id"], unique=False)
        batch_op.create_foreign_key(
            "fk_rating_topic_id", "topic", ["topic_id"], ["id"], ondelete="SET NULL"
        )
    with op.batch_alter_table("digestitem") as batch_op:
        batch_op.add_column(sa.Column("topic_id", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column("section", sa.String(length=200), server_default="", nullable=False)
        )
        batch_op.add_column(
            sa.Column("followed", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True)
        )
        batch_op.create_index("ix_digestitem_topic_id", ["topic_id"], unique=False)
        batch_op.create_foreign_key(
            "fk_digestitem_topic_id", "topic", ["topic_id"], ["id"], ondelete="SET NULL"
        )
    _one_interest_each()


def _one_interest_each() -> None:
    """Every subscriber's keywords become one interest named after their first keyword."""
    bind = op.get_bind()
    subscriber = sa.table("subscriber", sa.column("id"), sa.column("max_papers"))
    interest = sa.table(
        "interest",
        sa.column("id"),
        sa.column("subscriber_id"),
        sa.column("phrase"),
        sa.column("negative"),
        sa.column("topic_id"),
    )
    topic = sa.table(
        "topic",
        sa.column("subscriber_id"),
        sa.column("name"),
        sa.column("max_papers"),
        sa.column("position"),
        sa.column("created_at", sqlmodel.sql.sqltypes.UTCDateTime()),
        sa.column("id"),
    )
    first: dict[int, str] = {}
    rows = bind.execute(
        sa.select(interest.c.subscriber_id, interest.c.phrase, interest.c.negative).order_by(
            interest.c.negative, interest.c.id
        )
    )
    for sid, phrase, _negative in rows:
        first.setdefault(sid, " ".join(phrase.split())[:NAME_CHARS] or DEFAULT_NAME)
    now = datetime.now(UTC)
    topics = [
        {
            "subscriber_id": sid,
            "name": first.get(sid, DEFAULT_NAME),
            "max_papers": max_papers,
            "position": 0,
            "created_at": now,
        }
        for sid, max_papers in bind.execute(sa.select(subscriber.c.id, subscriber.c.max_papers))
    ]
    if topics:
        bind.execute(topic.insert(), topics)
    own = (
        sa.select(topic.c.id)
        .where(topic.c.subscriber_id == interest.c.subscriber_id)
        .scalar_subquery()
    )
    bind.execute(interest.update().values(topic_id=own))
    rating = sa.table("rating", sa.column("subscriber_id"), sa.column("topic_id"))
    bind.execute(
        rating.update().values(
            topic_id=sa.select(topic.c.id)
            .where(topic.c.subscriber_id == rating.c.subscriber_id)
            .scalar_subquery()
        )
    )
    digest = sa.table("digest", sa.column("id"), sa.column("subscriber_id"))
    item = sa.table("digestitem", sa.column("digest_id"), sa.column("topic_id"))
    bind.execute(
        item.update().values(
            topic_id=sa.select(topic.c.id)
            .select_from(digest.join(topic, topic.c.subscriber_id == digest.c.subscriber_id))
            .where(digest.c.id == item.c.digest_id)
            .scalar_subquery()
        )
    )


def downgrade() -> None:
    bind = op.get_bind()
    # A keyword two interests shared is kept once.
    bind.exec_driver_sql(
        "DELETE FROM interest WHERE id NOT IN (SELECT MIN(id) FROM interest "
        "GROUP BY subscriber_id, phrase, negative)"
    )
    with op.batch_alter_table("digestitem") as batch_op:
        batch_op.drop_constraint("fk_digestitem_topic_id", type_="foreignkey")
        batch_op.drop_index("ix_digestitem_topic_id")
        batch_op.drop_column("followed")
        batch_op.drop_column("section")
        batch_op.drop_column("topic_id")
    with op.batch_alter_table("rating") as batch_op:
        batch_op.drop_constraint("fk_rating_topic_id", type_="foreignkey")
        batch_op.drop_index("ix_rating_topic_id")
        batch_op.drop_column("topic_id")
    with op.batch_alter_table("interest") as batch_op:
        batch_op.drop_constraint("interest_topic_id_phrase_negative_key", type_="unique")
        batch_op.drop_constraint("fk_interest_topic_id", type_="foreignkey")
        batch_op.drop_index("ix_interest_topic_id")
        batch_op.drop_column("topic_id")
        batch_op.create_unique_constraint(
            "interest_subscriber_id_phrase_negative_key", ["subscriber_id", "phrase", "negative"]
        )
    op.drop_index("ix_followedauthor_topic_id", table_name="followedauthor")
    op.drop_table("followedauthor")
    op.drop_index("ix_seedpaper_paper_id", table_name="seedpaper")
    op.drop_index("ix_seedpaper_topic_id", table_name="seedpaper")
    op.drop_table("seedpaper")
    op.drop_index("ix_topic_subscriber_id", table_name="topic")
    op.drop_table("topic")

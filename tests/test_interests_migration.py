"""Issue 13: the migration to named interests keeps every subscriber's keywords, exclusions,
ratings and sent digests, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from sqlalchemy import create_engine, text

from papermail.migrate import downgrade, upgrade

BEFORE = "0005_subscriber_link_nonces"
NOW = datetime(2026, 12, 1, 7, tzinfo=UTC)


@pytest.fixture
def bare_engine(database_url):
    engine = create_engine(database_url)
    yield engine
    engine.dispose()


def _seed_old_schema(engine) -> None:
    with engine.begin() as c:
        for sid, email, max_papers in ((1, "ada@example.org", 7), (2, "bob@example.org", 10)):
            c.execute(
                text(
                    "INSERT INTO subscriber (id, email, confirmed, timezone, send_hour, "
                    "frequency, weekly_day, max_papers, token_version, link_nonce, legacy_links, "
                    "hard_bounces, created_at) "
                    "VALUES (:id, :email, true, 'UTC', 7, 'daily', 0, :mp, 0, 'n', false, 0, :now)"
                ),
                {"id": sid, "email": email, "mp": max_papers, "now": NOW},
            )
        for phrase, negative in (("linear attention", False), ("MoE", False), ("survey", True)):
            c.execute(
                text(
                    "INSERT INTO interest (subscriber_id, phrase, weight, negative) "
                    "VALUES (1, :p, 1.0, :n)"
                ),
                {"p": phrase, "n": negative},
            )
        for pid in ("2401.00001", "2401.00002"):
            c.execute(
                text(
                    "INSERT INTO paper (id, title, abstract, authors, source, first_seen_at, "
                    "updated_at, ai_keywords, affiliations) VALUES (:id, 'T', 'A', '[]', 'hf', "
                    ":now, :now, '[]', '{}')"
                ),
                {"id": pid, "now": NOW},
            )
        c.execute(
            text(
                "INSERT INTO rating (subscriber_id, paper_id, value, created_at) "
                "VALUES (1, '2401.00001', 1, :now), (1, '2401.00002', -1, :now)"
            ),
            {"now": NOW},
        )
        c.execute(
            text(
                "INSERT INTO digest (id, subscriber_id, issue_date, scanned, covered_until, "
                "created_at) VALUES (10, 1, :day, 5, :now, :now)"
            ),
            {"day": date(2026, 12, 1), "now": NOW},
        )
        c.execute(
            text(
                "INSERT INTO digestitem (digest_id, paper_id, rank, score, matched, matched_where,"
                " revised) VALUES (10, '2401.00001', 1, 0.5, '[\"MoE\"]', '[\"title\"]', false)"
            )
        )
        c.execute(
            text(
                "INSERT INTO delivery (digest_id, message_id, status, attempts, updated_at, "
                "sent_at) VALUES (10, '<m@x>', 'sent', 1, :now, :now)"
            ),
            {"now": NOW},
        )


def test_every_subscriber_gets_one_interest_and_keeps_everything(bare_engine):
    upgrade(bare_engine, BEFORE)
    _seed_old_schema(bare_engine)
    upgrade(bare_engine)
    with bare_engine.connect() as c:
        topics = c.execute(
            text("SELECT id, subscriber_id, name, max_papers, position FROM topic ORDER BY id")
        ).all()
        assert [(t.subscriber_id, t.name, t.max_papers, t.position) for t in topics] == [
            (1, "linear attention", 7, 0),
            (2, "My interests", 10, 0),
        ]
        ada = topics[0].id
        keywords = c.execute(
            text("SELECT phrase, negative, topic_id FROM interest ORDER BY id")
        ).all()
        assert [(k.phrase, bool(k.negative), k.topic_id) for k in keywords] == [
            ("linear attention", False, ada),
            ("MoE", False, ada),
            ("survey", True, ada),
        ]
        ratings = c.execute(text("SELECT paper_id, value, topic_id FROM rating ORDER BY id")).all()
        assert [tuple(r) for r in ratings] == [("2401.00001", 1, ada), ("2401.00002", -1, ada)]
        item = c.execute(text("SELECT paper_id, topic_id, section, followed FROM digestitem")).one()
        assert tuple(item) == ("2401.00001", ada, "", None)
        assert c.execute(text("SELECT status FROM delivery")).scalar() == "sent"
        assert c.execute(text("SELECT count(*) FROM digest")).scalar() == 1
    # Two interests may now share a keyword.
    with bare_engine.begin() as c:
        c.execute(
            text(
                "INSERT INTO topic (subscriber_id, name, max_papers, position, created_at) "
                "VALUES (1, 'second', 5, 1, :now)"
            ),
            {"now": NOW},
        )
        second = c.execute(text("SELECT id FROM topic WHERE name = 'second'")).scalar()
        c.execute(
            text(
                "INSERT INTO interest (subscriber_id, topic_id, phrase, weight, negative) "
                "VALUES (1, :t, 'MoE', 1.0, false)"
            ),
            {"t": second},
        )
    downgrade(bare_engine, BEFORE)
    with bare_engine.connect() as c:
        assert c.execute(text("SELECT count(*) FROM interest")).scalar() == 3
        assert c.execute(text("SELECT count(*) FROM rating")).scalar() == 2

"""Parallel workers racing over the same day: the database keeps one digest and one email each."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime

from sqlmodel import Session, func, select

from papermail.db import make_engine, session_scope
from papermail.models import Delivery, DeliveryStatus, Digest
from papermail.services import digests
from papermail.services.ingest import ingest_paths
from papermail.services.subscriptions import Preferences, add_subscriber

DAY = date(2026, 11, 23)
NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
KEYWORDS = ["linear attention", "mixture of experts", "segmentation", "diffusion", "reasoning"]


def test_racing_scorers_and_senders_make_one_digest_and_one_mail_each(engine, settings, seeds_dir):
    ingest_paths(engine, [seeds_dir / "daily-papers-1.txt"], now=datetime(2026, 11, 23, tzinfo=UTC))
    with session_scope(engine) as session:
        for i in range(40):
            prefs = Preferences(keywords=(KEYWORDS[i % len(KEYWORDS)],), max_papers=3)
            add_subscriber(session, email=f"user{i}@example.org", prefs=prefs, confirmed=True)

    engines = [make_engine(settings) for _ in range(4)]
    try:
        with ThreadPoolExecutor(4) as pool:
            reports = list(
                pool.map(lambda e: digests.score_day(e, settings, issue_date=DAY, now=NOW), engines)
            )
        with Session(engine) as session:
            assert session.exec(select(func.count()).select_from(Digest)).one() == 40
            ids = list(session.exec(select(Delivery.digest_id)))
        assert sum(len(r.to_send) for r in reports) == len(ids)

        with ThreadPoolExecutor(4) as pool:
            sends = list(pool.map(lambda e: digests.send_digests(e, settings, ids), engines))
    finally:
        for e in engines:
            e.dispose()
    assert sum(r.sent for r in sends) == len(ids)
    assert sum(r.skipped for r in sends) == 3 * len(ids)
    emls = list(settings.resolved_outbox_dir.glob("*.eml"))
    assert len(emls) == len(ids)
    with Session(engine) as session:
        statuses = set(session.exec(select(Delivery.status)))
    assert statuses == {DeliveryStatus.sent}

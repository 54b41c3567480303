"""Scoring a day into stored digests and sending them, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from sqlmodel import Session, select

from papermail.db import session_scope
from papermail.models import Delivery, DeliveryStatus, Digest, DigestItem, Paper
from papermail.services import digests
from papermail.services.ingest import ingest_paths
from papermail.services.subscriptions import Preferences, add_subscriber

DAY = date(2026, 11, 23)
NOW = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


def subscribe(engine, email: str, *keywords: str, excluded: tuple[str, ...] = (), **kw) -> int:
    with session_scope(engine) as session:
        prefs = Preferences(keywords=keywords, excluded=excluded, **kw)
        sub = add_subscriber(session, email=email, prefs=prefs, confirmed=True)
        return sub.id


def seed(engine, seeds_dir, when: datetime = NOW - timedelta(hours=1)) -> None:
    reports = ingest_paths(engine, sorted(seeds_dir.glob("*.txt")), now=when)
    assert all(r.ok for r in reports)


def digest_titles(engine, subscriber_id: int, day: date = DAY) -> list[str]:
    with Session(engine) as session:
        rows = session.exec(
            select(Paper.title)
            .join(DigestItem, DigestItem.paper_id == Paper.id)
            .join(Digest, Digest.id == DigestItem.digest_id)
            .where(Digest.subscriber_id == subscriber_id, Digest.issue_date == day)
            .order_by(DigestItem.rank)
        )
        return list(rows)


def test_score_day_ranks_linear_attention_and_honours_exclusions(engine, settings, seeds_dir):
    seed(engine, seeds_dir)
    linear = subscribe(engine, "ada@example.org", "linear attention")
    no_diffusion = subscribe(
        engine, "bob@example.org", "linear attention", excluded=("diffusion",), max_papers=30
    )
    report = digests.score_day(engine, settings, issue_date=DAY, now=NOW)
    assert len(report.to_send) == 2 and report.already == 0

    top = digest_titles(engine, linear)
    with Session(engine) as session:
        abstracts = {p.title: p.abstract for p in session.exec(select(Paper))}
    assert len(top) == 10
    assert all("linear attention" in (t + " " + abstracts[t]).lower() for t in top[:5]), top[:5]
    excluded = digest_titles(engine, no_diffusion)
    assert excluded, "the excluding subscriber still gets papers"
    assert not [t for t in excluded if "diffusion" in (t + abstracts[t]).lower()]
    assert any("diffusion" in (t + abstracts[t]).lower() for t in top)

    with Session(engine) as session:
        item = session.exec(select(DigestItem).order_by(DigestItem.id)).first()
        assert item is not None and item.matched, "each ranked paper says why it matched"


def test_one_digest_per_subscriber_and_day(engine, settings, seeds_dir):
    seed(engine, seeds_dir)
    subscribe(engine, "ada@example.org", "linear attention")
    first = digests.score_day(engine, settings, issue_date=DAY, now=NOW)
    second = digests.score_day(engine, settings, issue_date=DAY, now=NOW)
    assert len(first.to_send) == 1 and second.to_send == []
    with Session(engine) as session:
        assert len(session.exec(select(Digest)).all()) == 1


def test_no_matching_papers_means_no_email(engine, settings, seeds_dir):
    seed(engine, seeds_dir)
    subscribe(engine, "eve@example.org", "zebrafish", "hydrology")
    report = digests.score_day(engine, settings, issue_date=DAY, now=NOW)
    assert report.to_send == [] and report.empty == 1
    with Session(engine) as session:
        assert session.exec(select(Delivery)).all() == []
    sent = digests.send_digests(engine, settings, report.to_send)
    assert sent.sent == 0
    assert not list(settings.resolved_outbox_dir.glob("*.eml"))


def test_next_day_never_resends_a_paper(engine, settings, seeds_dir):
    seed(engine, seeds_dir)
    sid = subscribe(engine, "ada@example.org", "linear attention", max_papers=5)
    digests.score_day(engine, settings, issue_date=DAY, now=NOW)
    first = set(digest_titles(engine, sid))
    # The next day brings no new papers: nothing to send, nothing repeated.
    tomorrow = DAY + timedelta(days=1)
    report = digests.score_day(engine, settings, issue_date=tomorrow, now=NOW + timedelta(days=1))
    assert report.to_send == [] and report.papers_scanned == 0
    assert first and not set(digest_titles(engine, sid, tomorrow)) & first


def test_send_to_outbox_once_even_when_asked_twice(engine, settings, seeds_dir):
    seed(engine, seeds_dir)
    subscribe(engine, "ada@example.org", "linear attention")
    report = digests.score_day(engine, settings, issue_date=DAY, now=NOW)
    first = digests.send_digests(engine, settings, report.to_send)
    second = digests.send_digests(engine, settings, report.to_send)
    assert (first.sent, second.sent, second.skipped) == (1, 0, 1)
    emls = list(settings.resolved_outbox_dir.glob("*.eml"))
    htmls = list(settings.resolved_outbox_dir.glob("*.html"))
    assert len(emls) == 1 and len(htmls) == 1
    with Session(engine) as session:
        delivery = session.exec(select(Delivery)).one()
        assert delivery.status == DeliveryStatus.sent and delivery.attempts == 1


def test_delivery_over_real_smtp(engine, settings, seeds_dir, smtp_server):
    smtp = settings.model_copy(
        update={
            "mail_backend": "smtp",
            "smtp_host": smtp_server.host,
            "smtp_port": smtp_server.port,
        }
    )
    seed(engine, seeds_dir)
    for name in ("ada", "grace", "alan"):
        subscribe(engine, f"{name}@example.org", "linear attention", "mixture of experts")
    report = digests.score_day(engine, smtp, issue_date=DAY, now=NOW)
    result = digests.send_digests(engine, smtp, report.to_send)
    assert result.sent == 3
    received = smtp_server.messages
    assert sorted(m.rcpt_tos[0] for m in received) == [
        "ada@example.org",
        "alan@example.org",
        "grace@example.org",
    ]
    message = received[0].message
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "https://papermail.test/unsubscribe/" in message["List-Unsubscribe"]
    html = message.get_body(("html",)).get_content()
    text = message.get_body(("plain",)).get_content()
    assert "https://papermail.test/manage/" in html and "https://papermail.test/manage/" in text


def test_smtp_down_keeps_digest_pending_then_delivers(engine, settings, seeds_dir, smtp_server):
    from tests.conftest import free_port

    seed(engine, seeds_dir)
    subscribe(engine, "ada@example.org", "linear attention")
    report = digests.score_day(engine, settings, issue_date=DAY, now=NOW)
    down = settings.model_copy(
        update={
            "mail_backend": "smtp",
            "smtp_host": "127.0.0.1",
            "smtp_port": free_port(),
            "smtp_timeout": 2,
        }
    )
    try:
        digests.send_digests(engine, down, report.to_send)
    except Exception as exc:  # the connection cannot even open: a clear, temporary error
        assert "127.0.0.1" in str(exc)
    with Session(engine) as session:
        assert session.exec(select(Delivery)).one().status == DeliveryStatus.pending
    up = settings.model_copy(
        update={
            "mail_backend": "smtp",
            "smtp_host": smtp_server.host,
            "smtp_port": smtp_server.port,
        }
    )
    assert digests.send_digests(engine, up, report.to_send).sent == 1
    assert len(smtp_server.messages) == 1

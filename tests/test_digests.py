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


def test_days_without_a_digest_are_caught_up_once_and_say_what_they_covered(
    engine, settings, seeds_dir
):
    """Ada misses three days (sources failed for her slot, or she was away); her next digest
    covers all three days' new papers and nothing she already had. Bob gets one every day.
    A day that brings nothing new mails nobody."""
    start = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)
    ada = subscribe(engine, "ada@example.org", "language models", max_papers=100)
    bob = subscribe(engine, "bob@example.org", "language models", max_papers=100)

    def ingest(n: int) -> set[str]:
        before = paper_ids(engine)
        path = seeds_dir / f"daily-papers-{n}.txt"
        ingest_paths(engine, [path], now=start + timedelta(days=n))
        return paper_ids(engine) - before

    def issue(n: int, *who: int) -> digests.ScoreReport:
        day, now = DAY + timedelta(days=n), start + timedelta(days=n, hours=2)
        return digests.score_day(engine, settings, issue_date=day, subscriber_ids=who, now=now)

    new = [ingest(0)]
    issue(0, ada, bob)
    for n in (1, 2, 3):
        new.append(ingest(n))
        issue(n, bob)  # Ada has no digest on these days
    assert all(new), "each seed page brings papers not seen before"
    issue(4, ada, bob)  # nothing new was ingested on day 4

    by_day = digest_rows(engine)
    assert by_day[ada, DAY].scanned == len(new[0])
    catch_up = by_day[ada, DAY + timedelta(days=4)]
    assert catch_up.scanned == len(new[1] | new[2] | new[3]), "the three missed days, once"
    ada_items = items_of(engine, ada)
    assert len(ada_items) == len(set(ada_items)), "no paper twice"
    assert set(items_of(engine, ada, DAY + timedelta(days=4))) <= new[1] | new[2] | new[3]
    assert {(ada, DAY + timedelta(days=n)) for n in (1, 2, 3)}.isdisjoint(by_day)

    for n in (1, 2, 3):
        assert by_day[bob, DAY + timedelta(days=n)].scanned == len(new[n])
    bob_items = items_of(engine, bob)
    assert len(bob_items) == len(set(bob_items))
    quiet = by_day[bob, DAY + timedelta(days=4)]
    assert quiet.scanned == 0 and not items_of(engine, bob, DAY + timedelta(days=4))
    with Session(engine) as session:  # the quiet day stored its digest but mails nothing
        assert session.exec(select(Delivery).where(Delivery.digest_id == quiet.id)).first() is None
        mail = digests.compose_stored_digest(session, settings, catch_up.id)
    text = mail.data.decode("utf-8", errors="replace")
    count = len(items_of(engine, ada, DAY + timedelta(days=4)))
    assert f"{count} papers for you, from {catch_up.scanned} new papers scanned" in text


def paper_ids(engine) -> set[str]:
    with Session(engine) as session:
        return set(session.exec(select(Paper.id)))


def digest_rows(engine) -> dict[tuple[int, date], Digest]:
    with Session(engine) as session:
        return {(d.subscriber_id, d.issue_date): d for d in session.exec(select(Digest))}


def items_of(engine, subscriber_id: int, day: date | None = None) -> list[str]:
    with Session(engine) as session:
        query = (
            select(DigestItem.paper_id)
            .join(Digest, Digest.id == DigestItem.digest_id)
            .where(Digest.subscriber_id == subscriber_id)
        )
        if day is not None:
            query = query.where(Digest.issue_date == day)
        return list(session.exec(query))

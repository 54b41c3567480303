"""services.bounces.record_reports on SQLite and PostgreSQL: hard bounces suspend, soft ones
score (Mailman's rule), complaints unsubscribe, each report is acted on once, and a report that
names nobody we know, or a forged VERP token, changes nothing."""

from __future__ import annotations

import dataclasses
import threading
from datetime import UTC, date, datetime, timedelta

from sqlmodel import Session, select

from papermail.bounces import BounceReport, fingerprint, parse_report, verp_address
from papermail.db import session_scope
from papermail.models import (
    BounceEvent,
    BounceKind,
    Delivery,
    DeliveryStatus,
    Digest,
    Subscriber,
)
from papermail.services.bounces import record_reports
from papermail.services.today import TodayKind, resume_after_bounces, today_of
from tests.bounces_support import DOMAIN, SAMPLES, sent_digest, subscribe, subscriber

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
YESTERDAY = NOW.date() - timedelta(days=1)


def pending_digest(engine, subscriber_id: int, day: date = NOW.date()) -> int:
    """A scored digest still waiting to be sent today."""
    with session_scope(engine) as session:
        digest = Digest(subscriber_id=subscriber_id, issue_date=day, covered_until=NOW)
        session.add(digest)
        session.flush()
        session.add(Delivery(digest_id=digest.id, message_id=f"<d{digest.id}@papermail.test>"))
        return digest.id


def delivery_status(engine, digest_id: int) -> str:
    with Session(engine) as session:
        return session.exec(select(Delivery.status).where(Delivery.digest_id == digest_id)).one()


def events(engine) -> list[BounceEvent]:
    with Session(engine) as session:
        return list(session.exec(select(BounceEvent).order_by(BounceEvent.id)))


def report(kind: BounceKind, recipient: str, key: str, **extra) -> BounceReport:
    """A relay's report (signed webhook): its address alone names the subscriber."""
    return BounceReport(
        kind=kind,
        recipient=recipient,
        source=extra.pop("source", "ses"),
        fingerprint=fingerprint("test", key, recipient, kind),
        **extra,
    )


def sample(name: str, settings, **replace: bytes) -> list[BounceReport]:
    data = (SAMPLES / name).read_bytes()
    for old, new in replace.items():
        data = data.replace(old.encode(), new)
    return parse_report(data, secret=settings.secret_key.get_secret_value(), bounce_domain=DOMAIN)


def test_a_hard_bounce_suspends_at_once_and_cancels_the_pending_digest(engine, settings):
    ada, other = subscribe(engine, "former.student@uni.example", "ada@example.org")
    sent_digest(engine, ada, "postfix_5.1.1.eml", YESTERDAY)  # the digest that bounced
    waiting, untouched = pending_digest(engine, ada), pending_digest(engine, other)
    [event] = record_reports(engine, settings, sample("postfix_5.1.1.eml", settings), now=NOW)

    assert (event.action, event.subscriber_id, event.kind) == ("suspended", ada, "hard")
    assert event.status_code == "5.1.1" and "User unknown" in event.detail
    assert event.message_id == "<digest-20261201-3.a7b8c9@papermail.test>"
    row = subscriber(engine, ada)
    assert row.suspended_at is not None and row.bounce_score == 1.0
    assert row.last_bounce_on == NOW.date() and not row.active
    assert delivery_status(engine, waiting) == DeliveryStatus.cancelled
    assert delivery_status(engine, untouched) == DeliveryStatus.pending
    assert subscriber(engine, other).suspended_at is None
    for moment in (NOW, NOW + timedelta(days=1)):  # today's digest was cancelled; tomorrow
        with Session(engine) as session:
            today = today_of(session, session.get(Subscriber, ada), moment)
        assert today.kind == TodayKind.suspended and "bounc" in today.text and today.can_resume
    with session_scope(engine) as session:  # cancelled, not suspended: still says cancelled
        row = session.exec(select(Delivery).where(Delivery.digest_id == untouched)).one()
        row.status = DeliveryStatus.cancelled
        session.add(row)
    with Session(engine) as session:
        assert today_of(session, session.get(Subscriber, other), NOW).kind == TodayKind.cancelled
    with session_scope(engine) as session:  # the reader resumes: the score starts over too
        resume_after_bounces(session, session.get(Subscriber, ada))
    row = subscriber(engine, ada)
    assert row.suspended_at is None and row.bounce_score == 0 and row.last_bounce_on is None


def test_soft_bounces_score_once_a_day_go_stale_and_suspend_at_the_limit(engine, settings):
    (bob,) = subscribe(engine, "full.box@example.net")
    day = NOW.date()

    def soft(key: str, days: int) -> str:
        now = NOW + timedelta(days=days)
        [event] = record_reports(
            engine, settings, [report(BounceKind.soft, "full.box@example.net", key)], now=now
        )
        return event.action

    assert soft("a", 0) == "scored" and subscriber(engine, bob).bounce_score == 0.5
    assert soft("b", 0) == "noted" and subscriber(engine, bob).bounce_score == 0.5
    assert soft("c", 1) == "scored" and subscriber(engine, bob).bounce_score == 1.0
    # Eight days without one: the score is stale and starts over.
    assert soft("d", 9) == "scored"
    row = subscriber(engine, bob)
    assert row.bounce_score == 0.5 and row.last_bounce_on == day + timedelta(days=9)
    # Nine more days in a row reach BOUNCE_SCORE_LIMIT (5.0): suspended on the last one.
    actions = [soft(f"e{n}", 10 + n) for n in range(9)]
    assert actions == ["scored"] * 8 + ["suspended"]
    row = subscriber(engine, bob)
    assert row.bounce_score == 5.0 and row.suspended_at == NOW + timedelta(days=18)


def test_the_soft_limit_follows_the_setting(engine, settings):
    (bob,) = subscribe(engine, "full.box@example.net")
    strict = settings.model_copy(update={"bounce_score_limit": 1.0, "bounce_stale_days": 2})
    digest = pending_digest(engine, bob, NOW.date() + timedelta(days=1))
    sent_digest(engine, bob, "soft_4.2.2_mailbox_full.eml", YESTERDAY)
    first = record_reports(engine, strict, sample("soft_4.2.2_mailbox_full.eml", strict), now=NOW)
    assert [e.action for e in first] == ["scored"] and first[0].status_code == "4.2.2"
    again = report(BounceKind.soft, "full.box@example.net", "next day")
    [event] = record_reports(engine, strict, [again], now=NOW + timedelta(days=1))
    assert event.action == "suspended"
    assert delivery_status(engine, digest) == DeliveryStatus.cancelled


def test_a_complaint_unsubscribes_at_once(engine, settings):
    (dave,) = subscribe(engine, "dave@yahoo.com")
    sent_digest(engine, dave, "yahoo_arf.eml", YESTERDAY)
    waiting = pending_digest(engine, dave)
    [event] = record_reports(engine, settings, sample("yahoo_arf.eml", settings), now=NOW)
    assert (event.action, event.kind, event.source) == ("unsubscribed", "complaint", "arf")
    row = subscriber(engine, dave)
    assert row.unsubscribed_at == NOW and row.suspended_at is None
    assert delivery_status(engine, waiting) == DeliveryStatus.cancelled
    # A second complaint about another digest is stored, and changes nothing more.
    other = report(BounceKind.complaint, "dave@yahoo.com", "another digest")
    assert [e.action for e in record_reports(engine, settings, [other], now=NOW)] == ["noted"]


def test_an_aol_complaint_with_the_address_redacted_finds_the_reader_by_verp(engine, settings):
    ids = subscribe(engine, *(f"reader{n}@aol.com" for n in range(1, 8)))
    assert ids[6] == 7  # the sample's token names subscriber 7
    [event] = record_reports(engine, settings, sample("aol_arf_redacted.eml", settings), now=NOW)
    assert (event.action, event.subscriber_id, event.recipient) == (
        "unsubscribed",
        7,
        "reader7@aol.com",
    )
    assert [subscriber(engine, i).unsubscribed_at is not None for i in ids] == [False] * 6 + [True]


def test_duplicate_reports_are_counted_once(engine, settings):
    (bob,) = subscribe(engine, "full.box@example.net")
    sent_digest(engine, bob, "soft_4.2.2_mailbox_full.eml", YESTERDAY)
    reports = sample("soft_4.2.2_mailbox_full.eml", settings)
    assert len(record_reports(engine, settings, reports, now=NOW)) == 1
    # The same report again, the next day (the MTA delivered it twice): nothing at all.
    assert record_reports(engine, settings, reports, now=NOW + timedelta(days=1)) == []
    assert record_reports(engine, settings, reports + reports, now=NOW) == []
    assert len(events(engine)) == 1 and subscriber(engine, bob).bounce_score == 0.5


def test_the_same_report_from_four_threads_at_once_is_stored_and_acted_on_once(engine, settings):
    (ada,) = subscribe(engine, "ada@example.org")
    one = report(BounceKind.soft, "ada@example.org", "raced")
    stored: list[int] = []
    start = threading.Barrier(4)

    def worker() -> None:
        start.wait()
        stored.append(len(record_reports(engine, settings, [one], now=NOW)))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(stored) == [0, 0, 0, 1]
    assert len(events(engine)) == 1 and subscriber(engine, ada).bounce_score == 0.5


def test_an_unknown_recipient_is_stored_and_changes_nothing(engine, settings):
    (ada,) = subscribe(engine, "ada@example.org")
    waiting = pending_digest(engine, ada)
    reports = sample("gmail_5.1.1.eml", settings)  # names subscriber 1 (ada) by its VERP token
    unknown = dataclasses.replace(reports[0], subscriber_id=None)  # as if the token were gone
    [event] = record_reports(engine, settings, [unknown], now=NOW)
    assert (event.action, event.subscriber_id) == ("ignored", None)
    assert event.recipient == "ghost.reader@gmail.com"
    row = subscriber(engine, ada)
    assert row.active and row.bounce_score == 0 and row.last_bounce_on is None
    assert delivery_status(engine, waiting) == DeliveryStatus.pending
    garbage = report(BounceKind.hard, "not an address", "junk")
    assert [e.action for e in record_reports(engine, settings, [garbage], now=NOW)] == ["ignored"]


def test_a_forged_verp_token_is_not_trusted(engine, settings):
    (ada,) = subscribe(engine, "ada@example.org")
    assert ada == 1
    forged = sample(
        "gmail_5.1.1.eml", settings, **{"1-1-tgmsvj5nlqnw5hyz": b"1-1-aaaaaaaaaaaaaaaa"}
    )
    [event] = record_reports(engine, settings, forged, now=NOW)
    assert event.action == "ignored" and subscriber(engine, ada).active


def test_a_verified_verp_token_wins_over_the_address_that_bounced(engine, settings):
    """Forwarding: the digest went to ada's address, the old mailbox it forwards to bounced."""
    (ada,) = subscribe(engine, "ada@example.org")
    [hard] = sample("gmail_5.1.1.eml", settings)
    assert hard.subscriber_id == ada and hard.recipient == "ghost.reader@gmail.com"
    [event] = record_reports(engine, settings, [hard], now=NOW)
    assert (event.action, event.subscriber_id) == ("suspended", ada)
    assert subscriber(engine, ada).suspended_at == NOW
    assert (
        verp_address("test-secret-key", DOMAIN, 1, 1) in (SAMPLES / "gmail_5.1.1.eml").read_text()
    )


def test_a_mailed_report_must_name_a_digest_we_sent_to_that_subscriber(engine, settings):
    """Anyone can mail the bounce address: naming a subscriber's address is not enough."""
    dave, eve = subscribe(engine, "dave@yahoo.com", "eve@example.org")
    sent_digest(engine, eve, "yahoo_arf.eml", YESTERDAY)  # that Message-ID went to eve
    [event] = record_reports(engine, settings, sample("yahoo_arf.eml", settings), now=NOW)
    assert (event.action, event.subscriber_id, event.recipient) == (
        "unverified",
        None,
        "dave@yahoo.com",
    )
    forged = report(BounceKind.hard, "dave@yahoo.com", "no original", source="dsn")
    [event] = record_reports(engine, settings, [forged], now=NOW)
    assert event.action == "unverified"
    assert subscriber(engine, dave).active and subscriber(engine, eve).active
    # A signed relay's report (SES, SendGrid, Postmark) is believed on its address.
    relay = report(BounceKind.complaint, "dave@yahoo.com", "relay event", source="postmark")
    [event] = record_reports(engine, settings, [relay], now=NOW)
    assert (event.action, event.subscriber_id) == ("unsubscribed", dave)

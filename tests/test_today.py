""" "Why no digest today?" (issue 13 item 6): the pure state function for every state, the
manage page and its resume button, and `papermail status EMAIL`, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from html import unescape

import pytest
from sqlmodel import Session

from papermail.db import session_scope
from papermail.models import Delivery, DeliveryStatus, Digest, Frequency, Subscriber
from papermail.services.today import TodayKind, next_send, why_no_digest
from papermail.tokens import Purpose
from tests.test_cli import run
from tests.test_web_support import add_confirmed, client_for, csrf_of, token_for

# 05:30 UTC = 06:30 in Berlin (winter): before a 07:00 send.
EARLY = datetime(2026, 12, 2, 5, 30, tzinfo=UTC)
LATE = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)  # 10:00 Berlin, a Wednesday


def reader(**changes) -> Subscriber:
    values = dict(
        id=1, email="ada@example.org", confirmed=True, timezone="Europe/Berlin", send_hour=7
    )
    values.update(changes)
    return Subscriber(**values)


def digest(scanned: int = 42) -> Digest:
    return Digest(
        id=1, subscriber_id=1, issue_date=date(2026, 12, 2), scanned=scanned, covered_until=LATE
    )


def delivery(status: DeliveryStatus, **changes) -> Delivery:
    return Delivery(digest_id=1, message_id="<m@x>", status=status, **changes)


def test_not_yet_time_says_the_next_send():
    today = why_no_digest(reader(), now=EARLY)
    assert today.kind is TodayKind.not_yet
    assert today.text == "Not yet time: next send 07:00 Europe/Berlin."
    assert today.next_send == datetime(2026, 12, 2, 7, tzinfo=today.next_send.tzinfo)


def test_sent_at_local_time():
    sent = delivery(DeliveryStatus.sent, sent_at=datetime(2026, 12, 2, 6, 2, tzinfo=UTC))
    today = why_no_digest(reader(), now=LATE, digest=digest(), delivery=sent)
    assert today.kind is TodayKind.sent
    assert today.text.startswith("Sent today at 07:02 Europe/Berlin.")
    assert "Next send: Thu 2026-12-03 07:00 Europe/Berlin" in today.text


def test_nothing_new_matched_counts_the_scanned_papers():
    today = why_no_digest(reader(), now=LATE, digest=digest(scanned=57))
    assert today.kind is TodayKind.nothing
    assert "Nothing new matched today (57 new papers scanned)." in today.text


def test_paused_snoozed_suspended_weekly_and_retrying():
    assert why_no_digest(reader(frequency=Frequency.paused), now=LATE).kind is TodayKind.paused
    snoozed = why_no_digest(reader(snoozed_until=date(2026, 12, 20)), now=LATE)
    assert snoozed.kind is TodayKind.snoozed
    assert "Snoozed until 2026-12-20. Next send: Sun 2026-12-20 07:00" in snoozed.text
    bounced = reader(suspended_at=LATE - timedelta(days=3), hard_bounces=3)
    suspended = why_no_digest(bounced, now=LATE)
    assert suspended.kind is TodayKind.suspended and suspended.can_resume
    assert "Suspended after bounces since 2026-11-29" in suspended.text
    reported = why_no_digest(reader(suspended_at=LATE, bounce_score=1.0), now=LATE)
    assert reported.can_resume and "after bounces" in reported.text  # a report that came later
    by_operator = why_no_digest(reader(suspended_at=LATE - timedelta(days=3)), now=LATE)
    assert by_operator.kind is TodayKind.suspended and not by_operator.can_resume
    assert "Suspended by the operator since 2026-11-29" in by_operator.text
    weekly = why_no_digest(reader(frequency=Frequency.weekly, weekly_day=0), now=LATE)
    assert weekly.kind is TodayKind.not_today
    assert "weekly digests come on Monday. Next send: Mon 2026-12-07 07:00" in weekly.text
    retry = delivery(DeliveryStatus.pending, attempts=2, last_error="421 try later")
    retrying = why_no_digest(reader(), now=LATE, digest=digest(), delivery=retry)
    assert retrying.kind is TodayKind.retrying
    assert "Delivery retrying" in retrying.text and "421 try later" in retrying.text
    assert why_no_digest(reader(), now=LATE).kind is TodayKind.due
    assert why_no_digest(reader(confirmed=False), now=LATE).kind is TodayKind.unconfirmed
    assert why_no_digest(reader(unsubscribed_at=LATE), now=LATE).kind is TodayKind.unsubscribed


def test_next_send_skips_a_sent_today():
    after = next_send(reader(), EARLY, skip_today=True)
    assert after is not None and after.date() == date(2026, 12, 3)
    assert next_send(reader(frequency=Frequency.paused), EARLY) is None


@pytest.fixture
def ada(engine) -> Subscriber:
    return add_confirmed(engine, "ada@example.org", "linear attention")


def test_manage_page_says_why_and_resumes_after_bounces(settings, engine, ada):
    with session_scope(engine) as session:
        row = session.get(Subscriber, ada.id)
        row.suspended_at = datetime.now(UTC)
        row.hard_bounces = 3
        session.add(row)
    path = f"/manage/{token_for(settings, Purpose.manage, ada)}"
    with client_for(settings, engine) as client:
        page = client.get(path)
        text = unescape(page.text)
        assert "Today’s digest" in text and 'data-today="suspended"' in text
        assert "Suspended after bounces since" in text and "Resume digests" in text
        done = client.post(
            path + "/resume", data={"csrf": csrf_of(page.text)}, follow_redirects=True
        )
        assert done.status_code == 200
        assert "Resumed: digests are sent to this address again." in unescape(done.text)
        assert "Resume digests" not in done.text
        refused = client.post(path + "/resume", data={"csrf": "forged"})
        assert refused.status_code == 403
    with Session(engine) as session:
        row = session.get(Subscriber, ada.id)
        assert row.suspended_at is None and row.hard_bounces == 0


def test_a_reader_cannot_lift_the_operators_suspension(settings, engine, ada):
    with session_scope(engine) as session:
        row = session.get(Subscriber, ada.id)
        row.suspended_at = datetime.now(UTC)  # no bounces: the operator suspended them
        session.add(row)
    path = f"/manage/{token_for(settings, Purpose.manage, ada)}"
    with client_for(settings, engine) as client:
        page = client.get(path)
        text = unescape(page.text)
        assert "Suspended by the operator since" in text and "Resume digests" not in text
        done = client.post(
            path + "/resume", data={"csrf": csrf_of(page.text)}, follow_redirects=True
        )
        assert "only they can resume them" in unescape(done.text)
    with Session(engine) as session:
        assert session.get(Subscriber, ada.id).suspended_at is not None


def test_manage_page_and_status_email_agree_on_a_sent_digest(settings, engine, ada, tmp_path):
    now = datetime.now(UTC)
    with session_scope(engine) as session:
        row = Digest(subscriber_id=ada.id, issue_date=now.date(), scanned=12, covered_until=now)
        session.add(row)
        session.flush()
        session.add(
            Delivery(
                digest_id=row.id,
                message_id="<x@papermail.test>",
                status=DeliveryStatus.sent,
                sent_at=now,
            )
        )
    expected = f"Sent today at {now:%H:%M} UTC."
    path = f"/manage/{token_for(settings, Purpose.manage, ada)}"
    with client_for(settings, engine) as client:
        assert expected in unescape(client.get(path).text)
    env = {"DATABASE_URL": settings.database_url}
    result = run(["status", "ADA@example.org"], tmp_path, **env)
    assert result.returncode == 0, result.stderr
    assert expected in result.stdout and "ada@example.org" in result.stdout
    as_json = run(["status", "ada@example.org", "--json"], tmp_path, **env)
    data = json.loads(as_json.stdout)
    assert data["kind"] == "sent" and data["text"].startswith(expected)
    by_date = run(["status", now.date().isoformat(), "--json"], tmp_path, **env)
    assert json.loads(by_date.stdout)["counts"]["sent"] == 1, "status DATE still works"
    missing = run(["status", "nobody@example.org"], tmp_path, **env)
    assert missing.returncode != 0 and "no subscriber" in missing.stdout + missing.stderr

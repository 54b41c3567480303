"""The delivery state machine against a real SMTP server that answers as told, on SQLite and
PostgreSQL: bounces, failures, temporary errors, suspension, lease recovery, status."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from email import message_from_bytes, policy
from pathlib import Path
from threading import Lock

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import update
from sqlmodel import Session, select

from papermail.db import session_scope
from papermail.models import Delivery, DeliveryStatus, Digest, Subscriber
from papermail.services import delivery, digests
from papermail.services.ingest import ingest_paths
from papermail.services.schedule import due_groups
from papermail.services.status import day_status
from papermail.services.subscriptions import Preferences, add_subscriber
from tests.conftest import free_port

DAY = date(2026, 11, 23)
NOW = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
PAPERMAIL = Path(sys.executable).with_name("papermail")


@dataclass
class ScriptedHandler:
    """Accepts mail, except for the recipients it was told to refuse, and how."""

    rcpt: dict[str, str] = field(default_factory=dict)  # recipient -> reply to RCPT
    data: dict[str, str] = field(default_factory=dict)  # recipient -> reply to DATA
    received: list[tuple[str, str]] = field(default_factory=list)  # (recipient, Message-ID)
    lock: Lock = field(default_factory=Lock)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options) -> str:
        if address in self.rcpt:
            return self.rcpt[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope) -> str:
        recipient = envelope.rcpt_tos[0]
        if recipient in self.data:
            return self.data[recipient]
        message = message_from_bytes(envelope.content, policy=policy.default)
        with self.lock:
            self.received.append((recipient, str(message["Message-ID"])))
        return "250 accepted"

    def recipients(self) -> list[str]:
        with self.lock:
            return sorted(r for r, _ in self.received)


@pytest.fixture
def scripted():
    handler = ScriptedHandler()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield handler, controller.port
    finally:
        controller.stop()


@pytest.fixture
def smtp_settings(settings, scripted):
    _, port = scripted
    return settings.model_copy(
        update={"mail_backend": "smtp", "smtp_host": "127.0.0.1", "smtp_port": port}
    )


def seed(engine, seeds_dir, when: datetime = NOW - timedelta(hours=1)) -> None:
    """One sample page (74 papers): enough for every digest here, and quick to rank."""
    assert all(r.ok for r in ingest_paths(engine, [seeds_dir / "daily-papers-1.txt"], now=when))


def subscribe(engine, *emails: str, keywords=("language models",)) -> list[int]:
    with session_scope(engine) as session:
        return [
            add_subscriber(
                session, email=e, prefs=Preferences(keywords=keywords), confirmed=True
            ).id
            for e in emails
        ]


def deliveries(engine) -> dict[str, Delivery]:
    with Session(engine) as session:
        rows = session.exec(
            select(Subscriber.email, Delivery)
            .join(Digest, Digest.subscriber_id == Subscriber.id)
            .join(Delivery, Delivery.digest_id == Digest.id)
        )
        return {email: d for email, d in rows}


def score(engine, settings, day: date = DAY, now: datetime = NOW) -> list[int]:
    return digests.score_day(engine, settings, issue_date=day, now=now).to_send


def test_recipient_550_is_a_bounce_with_the_reason_and_the_others_are_sent(
    engine, smtp_settings, scripted, seeds_dir, caplog
):
    handler, _ = scripted
    handler.rcpt["bob@example.org"] = "550 5.1.1 <bob@example.org>: no such user"
    seed(engine, seeds_dir)
    subscribe(engine, "ada@example.org", "bob@example.org", "cy@example.org")
    caplog.set_level(logging.INFO, logger="papermail")
    report = delivery.send_digests(engine, smtp_settings, score(engine, smtp_settings))

    assert (report.sent, report.bounced, report.failed, report.retry) == (2, 1, 0, 0)
    assert handler.recipients() == ["ada@example.org", "cy@example.org"]
    rows = deliveries(engine)
    bounced = rows["bob@example.org"]
    assert bounced.status == DeliveryStatus.bounced
    assert "550 5.1.1 <bob@example.org>: no such user" in bounced.last_error
    assert {rows[e].status for e in ("ada@example.org", "cy@example.org")} == {"sent"}
    with Session(engine) as session:
        bob = session.exec(select(Subscriber).where(Subscriber.email == "bob@example.org")).one()
        assert bob.hard_bounces == 1 and bob.suspended_at is None
    # One structured line per event, with the fields log tools filter on.
    line = next(r.getMessage() for r in caplog.records if "event=delivery.bounced" in r.message)
    assert f"digest_id={bounced.digest_id} subscriber_id={bob.id} attempt=1" in line
    assert "status=bounced" in line and 'error="' in line and "no such user" in line


def test_hard_bounces_in_a_row_suspend_and_a_delivered_digest_resets_the_count(
    engine, smtp_settings, scripted, seeds_dir
):
    handler, _ = scripted
    settings = smtp_settings.model_copy(update={"bounce_limit": 2, "send_empty_digests": True})
    seed(engine, seeds_dir)
    (bob,) = subscribe(engine, "bob@example.org")
    refused = "550 5.1.1 mailbox unavailable"

    def day(n: int, refuse: bool) -> DeliveryStatus:
        if refuse:
            handler.rcpt["bob@example.org"] = refused
        else:
            handler.rcpt.pop("bob@example.org", None)
        issue, now = DAY + timedelta(days=n), NOW + timedelta(days=n)
        delivery.send_digests(engine, settings, score(engine, settings, issue, now))
        with Session(engine) as session:
            return session.exec(
                select(Delivery.status).join(Digest).where(Digest.issue_date == issue)
            ).one()

    def bounces() -> tuple[int, datetime | None]:
        with Session(engine) as session:
            sub = session.get(Subscriber, bob)
            return sub.hard_bounces, sub.suspended_at

    assert day(0, refuse=True) == DeliveryStatus.bounced and bounces() == (1, None)
    assert day(1, refuse=False) == DeliveryStatus.sent and bounces() == (0, None)
    assert day(2, refuse=True) == DeliveryStatus.bounced and bounces() == (1, None)
    assert day(3, refuse=True) == DeliveryStatus.bounced
    count, suspended_at = bounces()
    assert count == 2 and suspended_at is not None
    # Suspended: never due again, never scored again, nothing more is sent.
    handler.rcpt.clear()
    later = NOW + timedelta(days=4)
    with Session(engine) as session:
        assert due_groups(session, later) == {}
    assert score(engine, settings, DAY + timedelta(days=4), later) == []
    assert handler.recipients() == ["bob@example.org"]  # day 1 only


def test_other_permanent_refusals_fail_without_counting_as_bounces(
    engine, smtp_settings, scripted, seeds_dir
):
    handler, _ = scripted
    handler.data["ada@example.org"] = "554 5.7.1 message content rejected"
    seed(engine, seeds_dir)
    (ada,) = subscribe(engine, "ada@example.org")
    report = delivery.send_digests(engine, smtp_settings, score(engine, smtp_settings))
    assert (report.failed, report.bounced, report.sent) == (1, 0, 0)
    row = deliveries(engine)["ada@example.org"]
    assert row.status == DeliveryStatus.failed and "554 5.7.1 message content rejected" in (
        row.last_error or ""
    )
    with Session(engine) as session:
        assert session.get(Subscriber, ada).hard_bounces == 0


def test_a_temporary_refusal_ends_the_batch_and_the_rest_is_retried_once(
    engine, smtp_settings, scripted, seeds_dir
):
    handler, _ = scripted
    seed(engine, seeds_dir)
    subscribe(engine, "a@example.org", "b@example.org", "c@example.org")
    handler.rcpt["b@example.org"] = "451 4.7.1 try again later"
    ids = score(engine, smtp_settings)
    first = delivery.send_digests(engine, smtp_settings, ids)
    assert (first.sent, first.retry) == (1, 1) and first.retry_ids == ids[1:]
    rows = deliveries(engine)
    assert rows["b@example.org"].status == DeliveryStatus.pending
    assert "451 4.7.1 try again later" in rows["b@example.org"].last_error
    assert rows["c@example.org"].status == DeliveryStatus.pending  # not tried at all

    handler.rcpt.clear()
    again = delivery.send_digests(engine, smtp_settings, ids)  # a duplicate of the first, too
    assert (again.sent, again.skipped) == (2, 1)
    assert handler.recipients() == ["a@example.org", "b@example.org", "c@example.org"]
    assert deliveries(engine)["b@example.org"].attempts == 2


def test_retry_delays_grow_exponentially_with_jitter_and_a_cap(settings):
    s = settings.model_copy(update={"send_retry_backoff": 2.0, "send_retry_backoff_max": 60.0})
    for retries, ceiling in [(0, 2), (1, 4), (3, 16), (5, 60), (12, 60)]:
        delays = [delivery.retry_delay(s, retries) for _ in range(50)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 1


def _age(engine, digest_id: int, status: DeliveryStatus, seconds: float, claim: int = 0) -> None:
    """Pretend a delivery has sat in `status` for `seconds` (say, its worker died then);
    `claim=1` also counts the attempt a worker's claim would have counted."""
    with session_scope(engine) as session:
        session.exec(
            update(Delivery)
            .where(Delivery.digest_id == digest_id)
            .values(
                status=status,
                updated_at=datetime.now(UTC) - timedelta(seconds=seconds),
                attempts=Delivery.attempts + claim,
            )
        )


def test_a_sending_delivery_past_its_lease_is_reclaimed_and_sent_once(
    engine, smtp_settings, scripted, seeds_dir
):
    handler, _ = scripted
    settings = smtp_settings.model_copy(update={"send_lease_seconds": 60})
    seed(engine, seeds_dir)
    subscribe(engine, "dead@example.org", "slow@example.org", "lost@example.org")
    dead, slow, lost = score(engine, settings)
    _age(engine, dead, DeliveryStatus.sending, 120, claim=1)  # claimed, then the worker was killed
    _age(engine, slow, DeliveryStatus.sending, 10, claim=1)  # a live worker still sending
    _age(engine, lost, DeliveryStatus.pending, 120)  # its task vanished with Redis

    recovered = delivery.recover_stalled(engine, settings)
    assert (recovered.reclaimed, recovered.requeued) == ([dead], [lost])
    assert delivery.recover_stalled(engine, settings).digest_ids == []  # touched: not again yet
    rows = deliveries(engine)
    assert rows["dead@example.org"].status == DeliveryStatus.pending
    assert "lease expired" in rows["dead@example.org"].last_error
    assert rows["slow@example.org"].status == DeliveryStatus.sending

    report = delivery.send_digests(engine, settings, [dead, slow, lost])
    assert (report.sent, report.skipped) == (2, 1)
    assert handler.recipients() == ["dead@example.org", "lost@example.org"]
    assert rows["dead@example.org"].message_id == deliveries(engine)["dead@example.org"].message_id


def test_a_worker_finishing_after_its_lease_ran_out_still_prevents_the_resend(
    engine, smtp_settings, scripted, seeds_dir
):
    """The slow worker's mail went out; recovery had already put the row back to pending.
    Recording `sent` from pending stops the resend that would otherwise follow."""
    handler, _ = scripted
    seed(engine, seeds_dir)
    subscribe(engine, "ada@example.org")
    (digest_id,) = score(engine, smtp_settings)

    class ReclaimWhileSending:
        def __init__(self, inner):
            self.inner = inner

        def send(self, mail):
            self.inner.send(mail)  # the server accepted it...
            _age(engine, digest_id, DeliveryStatus.sending, 3600)  # ...but the lease ran out
            assert delivery.recover_stalled(engine, smtp_settings).reclaimed == [digest_id]

    class Mailer:
        def __init__(self, inner):
            self.inner = inner

        def connection(self):
            from contextlib import contextmanager

            @contextmanager
            def wrap():
                with self.inner.connection() as conn:
                    yield ReclaimWhileSending(conn)

            return wrap()

    from papermail.mailer import SMTPMailer

    first = delivery.send_digests(
        engine, smtp_settings, [digest_id], mailer=Mailer(SMTPMailer(smtp_settings))
    )
    assert first.sent == 1
    assert deliveries(engine)["ada@example.org"].status == DeliveryStatus.sent
    assert delivery.send_digests(engine, smtp_settings, [digest_id]).skipped == 1
    assert handler.recipients() == ["ada@example.org"]


def test_a_subscriber_who_leaves_before_the_send_gets_nothing(
    engine, smtp_settings, scripted, seeds_dir
):
    handler, _ = scripted
    seed(engine, seeds_dir)
    (ada,) = subscribe(engine, "ada@example.org")
    ids = score(engine, smtp_settings)
    with session_scope(engine) as session:
        session.get(Subscriber, ada).unsubscribed_at = NOW
    report = delivery.send_digests(engine, smtp_settings, ids)
    assert (report.sent, report.failed, report.cancelled) == (0, 0, 1)
    assert handler.recipients() == []
    row = deliveries(engine)["ada@example.org"]
    assert row.status == DeliveryStatus.cancelled and "subscriber left" in row.last_error
    with Session(engine) as session:
        status = day_status(session, DAY)
    assert status.counts["cancelled"] == 1 and status.counts["failed"] == 0
    assert status.problems == [], "a subscriber who left is no failure to look into"


def test_status_counts_the_day_and_lists_failures_with_reasons(
    engine, smtp_settings, scripted, seeds_dir
):
    handler, _ = scripted
    handler.rcpt["bob@example.org"] = "550 5.1.1 no such user"
    handler.data["eve@example.org"] = "554 5.7.1 spam"
    seed(engine, seeds_dir)
    subscribe(engine, "ada@example.org", "bob@example.org", "eve@example.org", "zed@example.org")
    subscribe(engine, "nomatch@example.org", keywords=("zebrafish hydrology",))
    ids = score(engine, smtp_settings)
    delivery.send_digests(engine, smtp_settings, ids[:3])  # zed stays queued
    with Session(engine) as session:
        report = day_status(session, DAY)
    assert report.counts == {
        "pending": 1,
        "sending": 0,
        "sent": 1,
        "failed": 1,
        "bounced": 1,
        "cancelled": 0,
    }
    assert (report.digests, report.empty) == (5, 1)
    reasons = {p.email: (p.status, p.error) for p in report.problems}
    assert (
        reasons["bob@example.org"][0] == "bounced"
        and "no such user" in reasons["bob@example.org"][1]
    )
    assert reasons["eve@example.org"][0] == "failed" and "spam" in reasons["eve@example.org"][1]
    data = report.as_dict()
    assert json.loads(json.dumps(data))["counts"]["bounced"] == 1


def test_status_command_prints_a_table_or_json(tmp_path, seeds_dir):
    """`papermail status` as an operator runs it."""
    from papermail.db import create_tables, make_engine
    from tests.conftest import make_settings

    settings = make_settings(tmp_path)  # SQLite in VAR_DIR, where the command looks too
    engine = make_engine(settings)
    create_tables(engine)
    seed(engine, seeds_dir)
    subscribe(engine, "ada@example.org", "bob@example.org")
    ada, bob = score(engine, settings)
    delivery.send_digests(engine, settings, [ada])
    with session_scope(engine) as session:
        session.exec(
            update(Delivery)
            .where(Delivery.digest_id == bob)
            .values(status=DeliveryStatus.bounced, last_error="550 5.1.1 no such user")
        )
    engine.dispose()
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(VAR_DIR=str(settings.var_dir), COLUMNS="200")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        command = [str(PAPERMAIL), "status", DAY.isoformat(), *args]
        return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)

    table = run()
    assert table.returncode == 0, table.stderr
    for text in ("queued (pending)", "sent", "bounced", "bob@example.org", "no such user"):
        assert text in table.stdout, text
    data = json.loads(run("--json").stdout)
    assert data["issue_date"] == DAY.isoformat()
    assert data["counts"] == {
        "pending": 0,
        "sending": 0,
        "sent": 1,
        "failed": 0,
        "bounced": 1,
        "cancelled": 0,
    }
    assert data["problems"][0]["error"] == "550 5.1.1 no such user"

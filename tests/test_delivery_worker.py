"""Scheduled delivery with real parts: `celery -A workers.app worker` subprocesses on a real
Redis, PostgreSQL or SQLite, and aiosmtpd servers. A simulated day for 1,000 subscribers, a
worker killed mid-batch, an SMTP server that is down and comes back."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock
from email import message_from_bytes, policy
from threading import Lock
from zoneinfo import ZoneInfo

import pytest
from aiosmtpd.controller import Controller
from celery.result import AsyncResult
from sqlalchemy import insert
from sqlmodel import Session, select

from papermail.db import create_tables, make_engine, session_scope
from papermail.models import Delivery, DeliveryStatus, Digest, Frequency, Interest, Subscriber
from papermail.services.ingest import ingest_paths
from tests.conftest import free_port, make_settings
from tests.test_celery_worker import running_worker

pytestmark = pytest.mark.slow

START = datetime(2026, 11, 23, 0, 0, tzinfo=UTC)  # a Monday
STEP = timedelta(minutes=30)
SEEDS = ["daily-papers-0.txt", "daily-papers-1.txt", "daily-papers-3.txt", "daily-papers-4.txt"]
PHRASES = [
    "language models",
    "diffusion",
    "reinforcement learning",
    "reasoning",
    "video generation",
    "multimodal",
    "attention",
    "image generation",
]  # each matches papers of SEEDS: every digest has something to send
ZONES = [
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "America/Los_Angeles",
    "Asia/Tokyo",
    "Asia/Kolkata",  # +05:30
    "Asia/Kathmandu",  # +05:45: due at a quarter past, sent at the next half-hour step
    "Australia/Adelaide",  # +10:30 (summer time)
    "Pacific/Chatham",  # +13:45
]


@dataclass
class Received:
    recipient: str
    message_id: str
    at: float


@dataclass
class RecordingHandler:
    """Keeps (recipient, Message-ID, time) of each accepted message; `delay` makes the server
    slow to accept DATA, as a busy relay is (the message counts only once it answers 250)."""

    delay: float = 0.0
    messages: list[Received] = field(default_factory=list)
    lock: Lock = field(default_factory=Lock)

    async def handle_DATA(self, server, session, envelope) -> str:
        if self.delay:
            await asyncio.sleep(self.delay)
        message = message_from_bytes(envelope.content, policy=policy.default)
        with self.lock:
            for rcpt in envelope.rcpt_tos:
                self.messages.append(Received(rcpt, str(message["Message-ID"]), time.monotonic()))
        return "250 accepted"

    def received(self) -> list[Received]:
        with self.lock:
            return list(self.messages)


class MailServer:
    def __init__(self, handler: RecordingHandler, port: int | None = None) -> None:
        self.handler, self.port = handler, port or free_port()
        self.controller: Controller | None = None

    def start(self) -> MailServer:
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)
        self.controller.start()
        return self

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


@pytest.fixture
def mail_server():
    servers: list[MailServer] = []

    def make(delay: float = 0.0, *, started: bool = True) -> MailServer:
        server = MailServer(RecordingHandler(delay=delay))
        servers.append(server.start() if started else server)
        return server

    yield make
    for server in servers:
        server.stop()


def worker_settings(tmp_path, redis_url: str, database_url: str, port: int, **overrides):
    values = {
        "database_url": database_url,
        "redis_url": redis_url,
        "mail_backend": "smtp",
        "smtp_host": "127.0.0.1",
        "smtp_port": port,
        "smtp_timeout": 5,
        "send_retry_backoff": 0.5,
        "send_retry_backoff_max": 2.0,
    }
    values.update(overrides)
    return make_settings(tmp_path, **values)


def ready_database(settings, seeds_dir, *, papers_at: datetime):
    engine = make_engine(settings)
    create_tables(engine)
    reports = ingest_paths(engine, [seeds_dir / name for name in SEEDS], now=papers_at)
    assert all(r.ok for r in reports)
    return engine


def add_subscribers(engine, rows: list[dict], rng: random.Random) -> list[int]:
    """Bulk INSERTs (one statement per table), with one or two interests each."""
    values = [Subscriber(**row).model_dump(exclude={"id"}) for row in rows]
    with session_scope(engine) as session:
        ids = list(
            session.scalars(
                insert(Subscriber).returning(Subscriber.id, sort_by_parameter_order=True),
                values,
            )
        )
        interests = [
            {"subscriber_id": sid, "phrase": phrase, "weight": 1.0, "negative": False}
            for sid in ids
            for phrase in rng.sample(PHRASES, rng.choice((1, 2)))
        ]
        session.execute(insert(Interest), interests)
    return ids


def run_dispatcher(now: datetime) -> dict:
    """One beat tick at simulated time `now`, through the worker; waits for its scoring."""
    from workers import tasks

    result = tasks.send_due.delay(now=now.isoformat()).get(timeout=60)
    for task_id in result["scoring"]:
        AsyncResult(task_id).get(timeout=120)
    return result


def wait_until_settled(engine, timeout: float) -> dict[str, int]:
    """Until no delivery is pending or sending; returns the count per status."""
    deadline = time.monotonic() + timeout
    while True:
        with Session(engine) as session:
            counts = Counter(str(s) for s in session.exec(select(Delivery.status)))
        if not counts.keys() & {"pending", "sending"} or time.monotonic() > deadline:
            return dict(counts)
        time.sleep(0.3)


def sending(engine) -> bool:
    """Whether some delivery is claimed right now."""
    with engine.connect() as conn:
        query = select(Delivery.id).where(Delivery.status == "sending").limit(1)
        return conn.execute(query).first() is not None


def due_moment(zone: str, hour: int) -> tuple[datetime, bool]:
    """The one moment in [START, START + 24h) when the local clock shows `hour`:00, and
    whether that day's issue was already sent before START (the local time had passed)."""
    tz = ZoneInfo(zone)
    local = START.astimezone(tz)
    served = (local.hour, local.minute) > (hour, 0)
    day = local.date() + timedelta(days=served)
    return datetime.combine(day, clock(hour), tzinfo=tz).astimezone(UTC), served


def first_step_at_or_after(moment: datetime) -> datetime:
    steps = -(-(moment - START) // STEP)  # ceiling division
    return START + steps * STEP


def test_a_simulated_day_for_1000_subscribers_sends_each_one_digest_at_their_hour(
    tmp_path, redis_url, pg_database_url, seeds_dir, mail_server
):
    smtp = mail_server()
    settings = worker_settings(tmp_path, redis_url, pg_database_url, smtp.port, send_chunk_size=25)
    engine = ready_database(settings, seeds_dir, papers_at=START - timedelta(hours=2))
    rng = random.Random(20261123)
    rows: list[dict] = []
    expect: dict[str, datetime] = {}  # email -> the step that must send its digest
    served_before: list[tuple[str, date]] = []
    for i in range(1000):
        zone, hour = rng.choice(ZONES), rng.randrange(24)
        email = f"reader{i:04d}@example.org"
        row = {"email": email, "confirmed": True, "timezone": zone, "send_hour": hour}
        row["max_papers"] = 5
        due, served = due_moment(zone, hour)
        due_day = due.astimezone(ZoneInfo(zone)).date()
        if i < 880:  # daily readers: exactly one digest, at the first step at/after their hour
            expect[email] = first_step_at_or_after(due)
            if served:
                served_before.append((email, due_day - timedelta(days=1)))
        elif i < 910:  # weekly, on the weekday of their due day
            row.update(frequency=Frequency.weekly, weekly_day=due_day.weekday())
            expect[email] = first_step_at_or_after(due)
        elif i < 930:  # weekly on another day: nothing today or tomorrow
            row.update(frequency=Frequency.weekly, weekly_day=(due_day.weekday() + 3) % 7)
        elif i < 944:
            row["frequency"] = Frequency.paused
        elif i < 958:
            row["unsubscribed_at"] = START - timedelta(days=3)
        elif i < 972:
            row["confirmed"] = False
        elif i < 986:
            row["suspended_at"] = START - timedelta(days=3)
        else:
            row["snoozed_until"] = START.date() + timedelta(days=5)
        rows.append(row)
    ids = dict(zip([r["email"] for r in rows], add_subscribers(engine, rows, rng), strict=True))
    earlier = START - timedelta(hours=3)  # yesterday's issue, for those whose hour had passed
    with session_scope(engine) as session:
        session.add_all(
            Digest(subscriber_id=ids[email], issue_date=day, covered_until=earlier)
            for email, day in served_before
        )

    started = time.monotonic()
    with running_worker(settings, tmp_path, concurrency=2) as worker:
        ticks = [run_dispatcher(START + n * STEP) for n in range(48)]
        assert run_dispatcher(START + 47 * STEP)["due"] == 0  # the same slot again: nobody
        counts = wait_until_settled(engine, timeout=120)
        log = worker.log()
    elapsed = time.monotonic() - started

    assert counts == {"sent": len(expect)}, counts
    assert sum(t["due"] for t in ticks) == len(expect)
    row_of = {row["email"]: row for row in rows}
    with Session(engine) as session:
        made = session.exec(
            select(Digest, Subscriber)
            .join(Subscriber, Subscriber.id == Digest.subscriber_id)
            .where(Digest.covered_until != earlier)
        ).all()
    issues: dict[str, list[Digest]] = defaultdict(list)
    for digest, sub in made:
        issues[sub.email].append(digest)
    assert set(issues) == set(expect), "only active readers, on their day, got a digest"
    for email, (digest,) in issues.items():  # exactly one each
        made_at = digest.covered_until  # the simulated time of the tick that made it
        local = made_at.astimezone(ZoneInfo(row_of[email]["timezone"]))
        assert made_at == expect[email], (email, made_at, expect[email])
        assert local.hour >= row_of[email]["send_hour"], (email, local)  # never early
        assert local.date() == digest.issue_date
    received = Counter(m.recipient for m in smtp.handler.received())
    assert received == Counter(dict.fromkeys(expect, 1))
    assert "event=delivery.sent" in log and "event=dispatch" in log
    print(f"\n1000 subscribers, 49 ticks, {len(expect)} digests sent in {elapsed:.1f} s")


def test_a_worker_killed_mid_batch_leaves_everyone_with_one_digest(
    tmp_path, redis_url, pg_database_url, seeds_dir, mail_server
):
    """SIGKILL the worker (and its pool) while it sends through a slow relay, start another:
    recovery re-queues what was lost, and each reader has one digest, under one Message-ID.

    The relay takes 50 ms to answer DATA and, like a real MTA, keeps a message whose final
    "." it has read even if the sender dies before hearing "250". Each pool process claims a
    whole chunk at once and records `sent` SEND_RECORD_BATCH at a time, so the kill catches
    up to a chunk per process in `sending`: the unsent rest of it, and the messages the relay
    took whose `sent` was not committed yet. Only those can arrive twice, under the same
    Message-ID (at-least-once at the SMTP edge): at most SEND_RECORD_BATCH per pool process,
    never a second digest."""
    smtp = mail_server(delay=0.05)
    settings = worker_settings(
        tmp_path,
        redis_url,
        pg_database_url,
        smtp.port,
        send_chunk_size=15,
        send_record_batch=4,
        send_lease_seconds=3,
        broker_visibility_timeout=8,
    )
    engine = ready_database(settings, seeds_dir, papers_at=START - timedelta(hours=2))
    rows = [
        {"email": f"r{i:03d}@example.org", "confirmed": True, "send_hour": 7, "max_papers": 3}
        for i in range(150)
    ]
    add_subscribers(engine, rows, random.Random(1))
    slot = START + timedelta(hours=7)

    with running_worker(settings, tmp_path, name="first", concurrency=2) as worker:
        assert run_dispatcher(slot)["due"] == 150
        deadline = time.monotonic() + 60
        while len(smtp.handler.received()) < 50 and time.monotonic() < deadline:
            time.sleep(0.005)
        while time.monotonic() < deadline:  # kill at a moment a delivery is claimed
            worker.freeze()
            if sending(engine):
                break
            worker.freeze(False)
            time.sleep(0.003)
        worker.kill()
    with Session(engine) as session:
        at_kill = {d.message_id: d.status for d in session.exec(select(Delivery))}
    in_flight = {mid for mid, status in at_kill.items() if status == DeliveryStatus.sending}
    statuses = Counter(str(status) for status in at_kill.values())
    assert 50 - 2 * 4 <= statuses["sent"] < 150 and statuses["pending"] > 0, statuses
    assert 1 <= len(in_flight) <= 2 * 15, statuses  # one claimed chunk per pool process

    with running_worker(settings, tmp_path, name="second"):
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:  # beat's ticks: recovery once the lease is out
            run_dispatcher(slot)
            counts = wait_until_settled(engine, timeout=1)
            if counts == {"sent": 150}:
                break
    assert counts == {"sent": 150}, counts

    received = smtp.handler.received()
    ids_per_reader: dict[str, set[str]] = defaultdict(set)
    for m in received:
        ids_per_reader[m.recipient].add(m.message_id)
    assert sorted(ids_per_reader) == sorted(r["email"] for r in rows)
    assert all(len(mids) == 1 for mids in ids_per_reader.values()), "one digest per reader"
    copies = Counter(m.message_id for m in received)
    duplicates = {mid for mid, n in copies.items() if n > 1}
    assert duplicates <= in_flight, "only a send the kill caught with the relay can repeat"
    assert len(duplicates) <= 2 * 4, "at most SEND_RECORD_BATCH unrecorded sends per process"
    assert all(n <= 2 for n in copies.values())
    with Session(engine) as session:
        stored = {d.message_id: d.attempts for d in session.exec(select(Delivery))}
    assert set(stored) == set(copies)
    assert all(stored[mid] == 2 for mid in in_flight), "reclaimed after the lease, sent again"
    print(f"\nat the kill: {dict(statuses)}; second copies at the SMTP edge: {len(duplicates)}")


def test_smtp_down_then_back_delivers_every_digest_once_at_the_rate_limit(
    tmp_path, redis_url, seeds_dir, mail_server
):
    """SQLite, two worker processes: sends retry with backoff while the relay is down; once it
    is back each digest arrives once, no faster than SMTP_RATE_LIMIT across both processes."""
    smtp = mail_server(started=False)
    settings = worker_settings(
        tmp_path,
        redis_url,
        f"sqlite:///{tmp_path / 'papermail.db'}",
        smtp.port,
        send_chunk_size=10,
        send_max_retries=20,
        smtp_rate_limit=10,
    )
    engine = ready_database(settings, seeds_dir, papers_at=START - timedelta(hours=2))
    rows = [
        {"email": f"d{i:02d}@example.org", "confirmed": True, "send_hour": 7, "max_papers": 3}
        for i in range(30)
    ]
    add_subscribers(engine, rows, random.Random(2))

    with running_worker(settings, tmp_path) as worker:
        assert run_dispatcher(START + timedelta(hours=7))["due"] == 30
        time.sleep(3)  # the relay is down: every chunk fails and backs off
        with Session(engine) as session:
            waiting = Counter(str(d.status) for d in session.exec(select(Delivery)))
            errors = {d.last_error for d in session.exec(select(Delivery)) if d.last_error}
        assert waiting == {"pending": 30}
        assert any("cannot reach SMTP server" in e for e in errors), errors
        smtp.start()
        counts = wait_until_settled(engine, timeout=60)
        log = worker.log()
    assert counts == {"sent": 30}, counts
    received = smtp.handler.received()
    assert Counter(m.recipient for m in received) == Counter({r["email"]: 1 for r in rows})
    assert "event=delivery.pending" in log and "Retry in" in log
    stamps = sorted(m.at for m in received)
    for i, t in enumerate(stamps):  # a burst of 10, then 10 a second, over both processes
        assert i + 1 <= 10 + 10 * (t - stamps[0]) + 1, (i, t - stamps[0])
    with Session(engine) as session:
        assert max(d.attempts for d in session.exec(select(Delivery))) >= 2

"""Who is due when: each subscriber's own clock and frequency."""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta

import pytest
from celery.schedules import crontab
from sqlmodel import Session, func, select

from papermail.db import session_scope
from papermail.errors import PapermailError
from papermail.models import Digest, Frequency, Subscriber
from papermail.services.ingest import ingest_paths
from papermail.services.schedule import due_groups, group_due, local_issue_date
from papermail.services.subscriptions import Preferences, add_subscriber
from tests.conftest import make_settings
from workers.schedule import build_schedule


def sub(sid: int, tz: str, hour: int, **kw) -> Subscriber:
    return Subscriber(
        id=sid, email=f"s{sid}@example.org", confirmed=True, timezone=tz, send_hour=hour, **kw
    )


def test_local_send_hour_in_several_time_zones():
    now = datetime(2026, 11, 23, 7, 30, tzinfo=UTC)  # UTC
    assert local_issue_date(sub(1, "UTC", 7), now) == date(2026, 11, 23)
    assert local_issue_date(sub(2, "UTC", 8), now) is None
    # 08:30 in Berlin: due at 8, not at 9.
    assert local_issue_date(sub(3, "Europe/Berlin", 8), now) == date(2026, 11, 23)
    assert local_issue_date(sub(4, "Europe/Berlin", 9), now) is None
    # 02:30 in New York.
    assert local_issue_date(sub(5, "America/New_York", 7), now) is None
    # 16:30 in Tokyo, still the 23rd there; at 20:00 UTC Tokyo is on the 24th.
    assert local_issue_date(sub(6, "Asia/Tokyo", 7), now) == date(2026, 11, 23)
    late = datetime(2026, 11, 23, 22, 0, tzinfo=UTC)
    assert local_issue_date(sub(7, "Asia/Tokyo", 7), late) == date(2026, 11, 24)
    assert local_issue_date(sub(8, "America/Los_Angeles", 7), late) == date(2026, 11, 23)


def test_weekly_and_paused():
    monday = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    assert local_issue_date(sub(1, "UTC", 7, frequency=Frequency.weekly, weekly_day=0), monday)
    assert not local_issue_date(sub(2, "UTC", 7, frequency=Frequency.weekly, weekly_day=1), monday)
    assert local_issue_date(sub(3, "UTC", 7, frequency=Frequency.paused), monday) is None


def test_group_due_by_local_date():
    now = datetime(2026, 11, 23, 20, 0, tzinfo=UTC)
    groups = group_due([sub(1, "UTC", 7), sub(2, "Asia/Tokyo", 0), sub(3, "UTC", 21)], now)
    assert groups == {date(2026, 11, 23): [1], date(2026, 11, 24): [2]}


# --- The dispatcher's query, the beat schedule, dispatching twice --------------------------

ZONES = [
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "America/Los_Angeles",
    "Asia/Tokyo",
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "Australia/Adelaide",
    "Pacific/Chatham",
]


def population(n: int, seed: int = 7) -> list[Subscriber]:
    """Subscribers in every state the dispatcher must tell apart."""
    rng = random.Random(seed)
    subs = []
    for i in range(1, n + 1):
        kind = rng.random()
        sub = Subscriber(
            id=i,
            email=f"s{i}@example.org",
            confirmed=kind > 0.05,
            timezone=rng.choice(ZONES),
            send_hour=rng.randrange(24),
            frequency=rng.choice([Frequency.daily] * 6 + [Frequency.weekly, Frequency.paused]),
            weekly_day=rng.randrange(7),
        )
        if 0.05 < kind < 0.1:
            sub.unsubscribed_at = datetime(2026, 11, 1, tzinfo=UTC)
        elif 0.1 < kind < 0.15:
            sub.suspended_at = datetime(2026, 11, 1, tzinfo=UTC)
        elif 0.15 < kind < 0.25:
            sub.snoozed_until = date(2026, 11, 22) + timedelta(days=rng.randrange(4))
        subs.append(sub)
    return subs


def test_due_groups_query_agrees_with_the_local_clock_rules(engine):
    subs = population(400)
    with session_scope(engine) as session:
        session.add_all(s.model_copy() for s in subs)
    served = {s.id for s in subs[::9]}  # already have today's issue (at 12:00 UTC)
    noon = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    with session_scope(engine) as session:
        for s in subs:
            day = local_issue_date(s, noon)
            if s.id in served and day is not None:
                session.add(Digest(subscriber_id=s.id, issue_date=day, covered_until=noon))
    active = [s for s in subs if s.active]
    moments = [noon + timedelta(minutes=m) for m in range(-12 * 60, 36 * 60, 45)]
    with Session(engine) as session:
        for now in moments:
            expected = group_due(active, now)
            for day, ids in list(expected.items()):
                kept = [
                    i
                    for i in ids
                    if not (i in served and local_issue_date(subs[i - 1], noon) == day)
                ]
                expected[day] = kept
            expected = {day: ids for day, ids in expected.items() if ids}
            assert due_groups(session, now) == expected, now


def add_three_zones(engine) -> None:
    """Three confirmed subscribers wanting "language models" at 08:00: in UTC, Tokyo, New York."""
    with session_scope(engine) as session:
        for i, zone in enumerate(["UTC", "Asia/Tokyo", "America/New_York"]):
            prefs = Preferences(keywords=("language models",), timezone=zone, send_hour=8)
            add_subscriber(session, email=f"u{i}@example.org", prefs=prefs, confirmed=True)


@contextmanager
def in_process_tasks(settings) -> Iterator[None]:
    """Celery tasks run in-process on this test's database and outbox for a block; afterwards the
    app goes back to the default settings."""
    from workers.app import celery_app, configure

    configure(celery_app, settings)
    try:
        yield
    finally:
        configure(celery_app, make_settings(settings.var_dir.parent))


def test_dispatching_twice_for_the_same_slot_sends_nothing_twice(engine, settings, seeds_dir):
    from workers import tasks

    ingest_paths(engine, [seeds_dir / "daily-papers-1.txt"], now=datetime(2026, 11, 23, tzinfo=UTC))
    add_three_zones(engine)
    with in_process_tasks(settings):
        slot = "2026-11-23T09:00:00+00:00"  # 09:00 UTC and 18:00 Tokyo, 04:00 New York
        first = tasks.send_due.apply(kwargs={"now": slot}).get()
        second = tasks.send_due.apply(kwargs={"now": slot}).get()
        later = tasks.send_due.apply(kwargs={"now": "2026-11-23T09:05:00+00:00"}).get()
    assert (first["due"], second["due"], later["due"]) == (2, 0, 0)
    assert len(list(settings.resolved_outbox_dir.glob("*.eml"))) == 2
    with Session(engine) as session:
        assert session.exec(select(func.count()).select_from(Digest)).one() == 2


def test_beat_schedule_comes_from_settings_and_each_job_can_be_disabled(tmp_path):
    schedule = build_schedule(make_settings(tmp_path))
    assert set(schedule) == {"ingest-daily", "send-due"}
    assert schedule["send-due"]["schedule"] == 300.0
    cron = schedule["ingest-daily"]["schedule"]
    assert isinstance(cron, crontab) and cron.hour == {1} and cron.minute == {30}
    custom = make_settings(tmp_path, ingest_cron="15 6 * * 1-5", dispatch_every_minutes=2)
    built = build_schedule(custom)
    assert built["ingest-daily"]["schedule"].day_of_week == {1, 2, 3, 4, 5}
    assert built["send-due"]["schedule"] == 120.0
    assert build_schedule(make_settings(tmp_path, ingest_cron="", dispatch_every_minutes=0)) == {}
    with pytest.raises(PapermailError, match="5 fields"):
        build_schedule(make_settings(tmp_path, ingest_cron="every day"))
    with pytest.raises(PapermailError, match="not a crontab"):
        build_schedule(make_settings(tmp_path, ingest_cron="99 * * * *"))


def test_the_app_requeues_killed_workers_tasks(tmp_path):
    from workers.app import create_app

    conf = create_app(make_settings(tmp_path, broker_visibility_timeout=60, task_events=True)).conf
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1
    assert conf.broker_transport_options["visibility_timeout"] == 60
    assert conf.broker_transport_options["unacked_restore_interval"] == 6
    assert conf.worker_send_task_events and conf.task_send_sent_event

"""Who is due for a digest right now, by each subscriber's own clock, and what to queue for it.

The dispatcher runs every few minutes (Celery beat), so finding nobody must cost next to
nothing: one query over the distinct time zones, then one query that returns only subscribers
whose local send hour has come on a local day they have no digest for yet. Running it twice for
the same slot finds nobody the second time; if two runs race, the database still allows one
digest per (subscriber, issue date) and one claim per delivery, so nothing is sent twice.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import and_, exists
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, or_, select

from papermail.db import session_scope
from papermail.logfmt import log_event
from papermail.models import Digest, Frequency, Subscriber
from papermail.services.delivery import Recovered, recover_stalled
from papermail.settings import Settings

log = logging.getLogger(__name__)


def local_issue_date(subscriber: Subscriber, now: datetime) -> date | None:
    """The local date whose issue is due at `now` (aware), or None if not yet or not today."""
    if subscriber.frequency == Frequency.paused:
        return None
    local = now.astimezone(ZoneInfo(subscriber.timezone))
    if local.hour < subscriber.send_hour:
        return None
    if subscriber.snoozed_until and local.date() < subscriber.snoozed_until:
        return None
    if subscriber.frequency == Frequency.weekly and local.weekday() != subscriber.weekly_day:
        return None
    return local.date()


def group_due(subscribers: Iterable[Subscriber], now: datetime) -> dict[date, list[int]]:
    """`local_issue_date` over loaded subscribers: the reference `due_groups` must agree with."""
    groups: dict[date, list[int]] = defaultdict(list)
    for subscriber in subscribers:
        issue_date = local_issue_date(subscriber, now)
        if issue_date is not None and subscriber.id is not None:
            groups[issue_date].append(subscriber.id)
    return dict(groups)


def _receiving() -> list:
    """Confirmed, subscribed, not suspended, not paused (snoozes depend on the day)."""
    return [
        col(Subscriber.confirmed).is_(True),
        col(Subscriber.unsubscribed_at).is_(None),
        col(Subscriber.suspended_at).is_(None),
        Subscriber.frequency != Frequency.paused,
    ]


def _local_clocks(zones: Iterable[str], now: datetime) -> dict[tuple[date, int], list[str]]:
    """Time zones grouped by their local (date, hour) at `now`; unknown zone names are logged."""
    slots: dict[tuple[date, int], list[str]] = defaultdict(list)
    for zone in zones:
        try:
            local = now.astimezone(ZoneInfo(zone))
        except (ZoneInfoNotFoundError, ValueError):
            log_event(log, "schedule.unknown_timezone", logging.WARNING, timezone=zone)
            continue
        slots[(local.date(), local.hour)].append(zone)
    return dict(slots)


def due_groups(session: Session, now: datetime) -> dict[date, list[int]]:
    """Subscribers whose local send hour has come at `now` and who have no digest for that
    local day yet, grouped by that day (their issue date)."""
    zones = session.exec(select(Subscriber.timezone).where(*_receiving()).distinct()).all()
    slots = _local_clocks(zones, now)
    if not slots:
        return {}
    day_of_zone = {zone: day for (day, _), zones in slots.items() for zone in zones}
    clauses = [
        and_(
            col(Subscriber.timezone).in_(zones),
            Subscriber.send_hour <= hour,
            or_(Subscriber.frequency == Frequency.daily, Subscriber.weekly_day == day.weekday()),
            or_(col(Subscriber.snoozed_until).is_(None), Subscriber.snoozed_until <= day),
            ~exists().where(Digest.subscriber_id == Subscriber.id, Digest.issue_date == day),
        )
        for (day, hour), zones in slots.items()
    ]
    rows = session.exec(
        select(Subscriber.id, Subscriber.timezone)
        .where(*_receiving(), or_(*clauses))
        .order_by(col(Subscriber.id))
    )
    groups: dict[date, list[int]] = defaultdict(list)
    for subscriber_id, zone in rows:
        groups[day_of_zone[zone]].append(subscriber_id)  # type: ignore[arg-type]
    return dict(groups)


@dataclass
class Dispatch:
    """What one dispatcher tick found: scoring batches and stalled deliveries to queue again."""

    now: datetime
    batches: list[tuple[date, list[int]]] = field(default_factory=list)
    recovered: Recovered = field(default_factory=Recovered)

    @property
    def due(self) -> int:
        return sum(len(ids) for _, ids in self.batches)


def plan_dispatch(engine: Engine, settings: Settings, *, now: datetime) -> Dispatch:
    """Who is due at `now`, in scoring batches of at most SCORE_BATCH_SIZE per issue date, and
    which deliveries stalled. Leases run on the real clock, whatever `now` pretends."""
    with session_scope(engine) as session:
        groups = due_groups(session, now)
    plan = Dispatch(now=now, recovered=recover_stalled(engine, settings))
    size = settings.score_batch_size
    for issue_date, ids in sorted(groups.items()):
        plan.batches.extend((issue_date, ids[i : i + size]) for i in range(0, len(ids), size))
    if plan.due or plan.recovered.digest_ids:
        log_event(
            log,
            "dispatch",
            now=now.isoformat(),
            due=plan.due,
            batches=len(plan.batches),
            reclaimed=len(plan.recovered.reclaimed),
            requeued=len(plan.recovered.requeued),
        )
    return plan

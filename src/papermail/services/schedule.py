"""Who is due for a digest right now, by each subscriber's own clock."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import date, datetime
from zoneinfo import ZoneInfo

from sqlmodel import Session, col, select

from papermail.models import Frequency, Subscriber


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
    groups: dict[date, list[int]] = defaultdict(list)
    for subscriber in subscribers:
        issue_date = local_issue_date(subscriber, now)
        if issue_date is not None and subscriber.id is not None:
            groups[issue_date].append(subscriber.id)
    return dict(groups)


def due_groups(session: Session, now: datetime) -> dict[date, list[int]]:
    """Active subscribers grouped by the issue date due for them at `now`.

    Whether that issue already exists is checked when digests are stored (the database allows
    one per subscriber and day), so running this twice for the same slot sends nothing twice.
    """
    subscribers = session.exec(
        select(Subscriber).where(
            col(Subscriber.confirmed).is_(True),
            col(Subscriber.unsubscribed_at).is_(None),
            col(Subscriber.suspended_at).is_(None),
            Subscriber.frequency != Frequency.paused,
        )
    )
    return group_due(subscribers, now)

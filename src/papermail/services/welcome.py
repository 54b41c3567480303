"""The welcome digest (issue 13 item 5): right after a reader confirms, their first digest goes
out at once with the best papers of the last LOOKBACK_DAYS, instead of waiting for the next send
time. It is the ordinary issue of their local today, scored, stored and sent through the normal
digest/delivery path: one digest per (subscriber, day) and one claim per delivery keep it
exactly-once, and `papermail status` and the manage page show it like any other."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy.engine import Engine

from papermail.db import session_scope
from papermail.models import Subscriber, utcnow
from papermail.services import digests
from papermail.settings import Settings


def send_welcome_digest(
    engine: Engine, settings: Settings, subscriber_id: int, *, now: datetime | None = None
) -> int | None:
    """Score and send the subscriber's digest for their local today; the digest id, or None
    when nothing matched, they are not receiving, or today's issue exists already."""
    now = now or utcnow()
    with session_scope(engine) as session:
        subscriber = session.get(Subscriber, subscriber_id)
        if subscriber is None or not subscriber.active:
            return None
        try:
            day = now.astimezone(ZoneInfo(subscriber.timezone)).date()
        except (ValueError, KeyError):
            day = now.date()
    report = digests.score_day(
        engine, settings, issue_date=day, subscriber_ids=[subscriber_id], now=now
    )
    if not report.to_send:
        return None
    digests.send_digests(engine, settings, report.to_send)
    return report.to_send[0]

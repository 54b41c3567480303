"""Celery beat schedule, built from settings; each job can be switched off there.

- `ingest-daily` (INGEST_CRON, UTC): fetch the day's papers from DAILY_SOURCES. It sends
  nothing itself: the dispatcher mails each subscriber at their own local hour.
- `send-due` (every DISPATCH_EVERY_MINUTES): score and queue the digests whose local send time
  has come, and queue again deliveries that stalled (a worker died, Redis lost its tasks).
- `poll-bounces` (every BOUNCE_POLL_MINUTES, only with BOUNCE_IMAP_HOST): record the bounce
  and complaint reports that arrived in the bounce mailbox.
"""

from __future__ import annotations

from typing import Any

from celery.schedules import crontab

from papermail.errors import PapermailError
from papermail.settings import Settings


def parse_cron(expression: str) -> crontab:
    """`minute hour day-of-month month day-of-week`, as in crontab(5)."""
    fields = expression.split()
    if len(fields) != 5:
        raise PapermailError(f"INGEST_CRON needs 5 fields (m h dom mon dow): {expression!r}")
    minute, hour, day_of_month, month, day_of_week = fields
    try:
        return crontab(
            minute=minute,
            hour=hour,
            day_of_month=day_of_month,
            month_of_year=month,
            day_of_week=day_of_week,
        )
    except ValueError as exc:
        raise PapermailError(f"INGEST_CRON is not a crontab: {expression!r}: {exc}") from None


def build_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    schedule: dict[str, dict[str, Any]] = {}
    if settings.ingest_cron.strip():
        schedule["ingest-daily"] = {
            "task": "workers.tasks.ingest_daily",
            "schedule": parse_cron(settings.ingest_cron),
        }
    if settings.dispatch_every_minutes > 0:
        every = settings.dispatch_every_minutes * 60
        schedule["send-due"] = {
            "task": "workers.tasks.send_due",
            "schedule": every,
            "options": {"expires": every},  # a tick still queued when the next is due is moot
        }
    if settings.bounce_imap_host and settings.bounce_poll_minutes > 0:
        every = settings.bounce_poll_minutes * 60
        schedule["poll-bounces"] = {
            "task": "workers.tasks.poll_bounces",
            "schedule": every,
            "options": {"expires": every},
        }
    return schedule

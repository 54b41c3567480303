"""Who is due when: each subscriber's own clock and frequency."""

from __future__ import annotations

from datetime import UTC, date, datetime

from papermail.models import Frequency, Subscriber
from papermail.services.schedule import group_due, local_issue_date


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

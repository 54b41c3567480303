""" "Why no digest today?" (issue 13 item 6): one subscriber's mail for their local today.

`why_no_digest` is pure: it gets the subscriber, the clock, and today's digest and delivery
(if any) and says which state applies, in the words the manage page and `papermail status
EMAIL` both show. `today_of` loads those rows and calls it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from sqlmodel import Session, select

from papermail.models import Delivery, DeliveryStatus, Digest, Frequency, Subscriber

WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


class TodayKind(StrEnum):
    sent = "sent"
    sending = "sending"
    retrying = "retrying"
    failed = "failed"
    bounced = "bounced"
    cancelled = "cancelled"
    nothing = "nothing"  # scored, nothing new matched
    unconfirmed = "unconfirmed"
    unsubscribed = "unsubscribed"
    suspended = "suspended"
    paused = "paused"
    snoozed = "snoozed"
    not_today = "not_today"  # weekly, another weekday
    not_yet = "not_yet"  # today's send hour has not come
    due = "due"  # the send hour has come: the dispatcher picks it up within minutes


@dataclass(frozen=True)
class Today:
    kind: TodayKind
    text: str
    local_date: date
    next_send: datetime | None = None  # local, aware
    can_resume: bool = False  # suspended after bounces: the reader may resume

    def as_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["kind"] = str(self.kind)
        data["local_date"] = self.local_date.isoformat()
        data["next_send"] = self.next_send.isoformat() if self.next_send else None
        return data


def _zone(subscriber: Subscriber) -> ZoneInfo:
    try:
        return ZoneInfo(subscriber.timezone)
    except (ValueError, KeyError, OSError):
        return ZoneInfo("UTC")


def next_send(
    subscriber: Subscriber, now: datetime, *, skip_today: bool = False
) -> datetime | None:
    """The next local send time from `now` on: the send hour of a day that is not snoozed and,
    for weekly digests, the weekly day. None when paused."""
    if subscriber.frequency == Frequency.paused:
        return None
    zone = _zone(subscriber)
    local = now.astimezone(zone)
    for ahead in range(0, 400):
        day = local.date() + timedelta(days=ahead)
        if ahead == 0 and (skip_today or local.hour >= subscriber.send_hour):
            continue
        if subscriber.snoozed_until and day < subscriber.snoozed_until:
            continue
        if subscriber.frequency == Frequency.weekly and day.weekday() != subscriber.weekly_day:
            continue
        return datetime(day.year, day.month, day.day, subscriber.send_hour, tzinfo=zone)
    return None


def _when(moment: datetime | None, zone: str) -> str:
    if moment is None:
        return ""
    return f"{moment.strftime('%a %Y-%m-%d')} {moment:%H:%M} {zone}"


def why_no_digest(
    subscriber: Subscriber,
    *,
    now: datetime,
    digest: Digest | None = None,
    delivery: Delivery | None = None,
) -> Today:
    """What happened (or will) to the subscriber's digest for their local today, and why."""
    zone = _zone(subscriber)
    tz = subscriber.timezone
    today = now.astimezone(zone).date()
    upcoming = next_send(subscriber, now, skip_today=digest is not None)
    then = f" Next send: {_when(upcoming, tz)}." if upcoming else ""

    def state(kind: TodayKind, text: str, **extra: object) -> Today:
        return Today(kind, text, today, upcoming, **extra)  # type: ignore[arg-type]

    if subscriber.unsubscribed_at is not None:
        return state(TodayKind.unsubscribed, "Unsubscribed: nothing is sent.")
    if not subscriber.confirmed:
        return state(TodayKind.unconfirmed, "Not confirmed yet: the confirmation link starts it.")
    if digest is not None:
        if delivery is None:
            return state(
                TodayKind.nothing,
                f"Nothing new matched today ({digest.scanned} new papers scanned).{then}",
            )
        status = DeliveryStatus(delivery.status)
        if status == DeliveryStatus.sent:
            sent = (delivery.sent_at or delivery.updated_at).astimezone(zone)
            return state(TodayKind.sent, f"Sent today at {sent:%H:%M} {tz}.{then}")
        if status == DeliveryStatus.pending and delivery.attempts:
            reason = f" ({delivery.last_error})" if delivery.last_error else ""
            return state(
                TodayKind.retrying,
                f"Delivery retrying: the mail server did not take it yet after "
                f"{delivery.attempts} attempt{'s' if delivery.attempts != 1 else ''}{reason}.",
            )
        if status in (DeliveryStatus.pending, DeliveryStatus.sending):
            return state(TodayKind.sending, "Being sent now.")
        if status == DeliveryStatus.bounced:
            return state(
                TodayKind.bounced,
                f"Bounced: the mail server refused the address ({delivery.last_error or '?'}).",
            )
        if status == DeliveryStatus.cancelled and subscriber.suspended_at is None:
            return state(TodayKind.cancelled, "Cancelled before sending.")
        if status != DeliveryStatus.cancelled:
            return state(
                TodayKind.failed, f"Delivery failed: {delivery.last_error or 'no reason given'}."
            )
        # cancelled because a bounce report suspended the address: say that, below
    if subscriber.suspended_at is not None and suspended_for_bounces(subscriber):
        return state(
            TodayKind.suspended,
            f"Suspended after bounces since {subscriber.suspended_at:%Y-%m-%d}: "
            "mail to this address kept bouncing.",
            can_resume=True,
        )
    if subscriber.suspended_at is not None:
        return state(
            TodayKind.suspended,
            f"Suspended by the operator since {subscriber.suspended_at:%Y-%m-%d}: "
            "they can resume it.",
        )
    if subscriber.frequency == Frequency.paused:
        return state(TodayKind.paused, "Paused: no digests until you choose daily or weekly.")
    if subscriber.snoozed_until and today < subscriber.snoozed_until:
        return state(
            TodayKind.snoozed,
            f"Snoozed until {subscriber.snoozed_until.isoformat()}.{then}",
        )
    if subscriber.frequency == Frequency.weekly and today.weekday() != subscriber.weekly_day:
        return state(
            TodayKind.not_today,
            f"Not today: weekly digests come on {WEEKDAYS[subscriber.weekly_day]}.{then}",
        )
    if now.astimezone(zone).hour < subscriber.send_hour:
        return state(
            TodayKind.not_yet, f"Not yet time: next send {subscriber.send_hour:02d}:00 {tz}."
        )
    return state(TodayKind.due, "Due now: today's digest is being prepared.")


def today_of(session: Session, subscriber: Subscriber, now: datetime) -> Today:
    """`why_no_digest` with the subscriber's digest and delivery for their local today."""
    local_day = now.astimezone(_zone(subscriber)).date()
    row = session.exec(
        select(Digest, Delivery)
        .outerjoin(Delivery, Delivery.digest_id == Digest.id)  # type: ignore[arg-type]
        .where(Digest.subscriber_id == subscriber.id, Digest.issue_date == local_day)
    ).first()
    digest, delivery = row if row else (None, None)
    return why_no_digest(subscriber, now=now, digest=digest, delivery=delivery)


def suspended_for_bounces(subscriber: Subscriber) -> bool:
    """Whether bounces (in the SMTP session or reported later) stopped the digests, rather
    than the operator: only then may the reader resume them."""
    return subscriber.hard_bounces > 0 or subscriber.bounce_score > 0


def resume_after_bounces(session: Session, subscriber: Subscriber) -> bool:
    """The reader says the address works again: digests resume, the bounce count restarts.
    A suspension by the operator is theirs to lift: False, nothing changes."""
    if subscriber.suspended_at is not None and not suspended_for_bounces(subscriber):
        return False
    clear_suspension(session, subscriber)
    return True


def clear_suspension(session: Session, subscriber: Subscriber) -> None:
    """Digests resume and the bounce history is forgotten (the operator's resume, too)."""
    subscriber.suspended_at = None
    subscriber.hard_bounces = 0
    subscriber.bounce_score = 0.0  # the reports that arrived later (services.bounces) too
    subscriber.last_bounce_on = None
    session.add(subscriber)

"""Act on bounce and complaint reports (issue 14): store each once, then suspend, score or
unsubscribe the subscriber it names.

Every way a report comes in (`papermail bounces process|serve|poll`, the relay webhooks) ends
here, in `record_reports`. Each report is its own transaction: the `BounceEvent` row (unique
`fingerprint`) is inserted first, so a report seen twice, even by two processes at once, is
acted on once; the second insert fails and changes nothing. Anyone can mail the bounce
address: a mailed report counts only when a VERP token or the quoted Message-ID of one of our
digests ties it to the subscriber (see `_subscriber`).

The rule is Mailman's: a hard bounce suspends at once; soft bounces add 0.5 to a score at most
once a day, the score starts over when the last counted bounce is older than BOUNCE_STALE_DAYS,
and reaching BOUNCE_SCORE_LIMIT suspends. A complaint unsubscribes at once. Suspending or
unsubscribing cancels the digests still waiting to be sent.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from papermail import metrics
from papermail.bounces import BounceReport, parse_report
from papermail.db import session_scope
from papermail.logfmt import log_event
from papermail.models import (
    BounceEvent,
    BounceKind,
    Delivery,
    DeliveryStatus,
    Digest,
    Subscriber,
    utcnow,
)
from papermail.services import subscriptions
from papermail.settings import Settings

log = logging.getLogger(__name__)

HARD_WEIGHT = 1.0
SOFT_WEIGHT = 0.5
SUSPENDED_REASON = "not sent: the subscriber was suspended after bounces"
MAIL_SOURCES = frozenset({"dsn", "arf"})  # reports anyone can mail us (the rest are signed)


class Action:
    """What one report did (`BounceEvent.action`)."""

    suspended = "suspended"  # hard bounce, or the soft score reached the limit
    unsubscribed = "unsubscribed"  # a complaint
    scored = "scored"  # a soft bounce counted toward the score
    noted = "noted"  # stored only: already counted today, already suspended or unsubscribed
    ignored = "ignored"  # names no known subscriber
    unverified = "unverified"  # mail naming a subscriber's address, but no digest of ours


def _subscriber(session: Session, report: BounceReport) -> tuple[Subscriber | None, bool]:
    """Who the report is about, and whether that is proven.

    The verified VERP id first (forwarding can make the address that bounced another one),
    else the address the report names. Anyone can mail the bounce address, so a report that
    came as mail (DSN, ARF) without a verified token counts only if it names the Message-ID of
    a digest we sent to that very subscriber (the original the report quotes); otherwise it is
    stored `unverified` and changes nothing. Relay webhooks are signed: their address is enough.
    """
    if report.subscriber_id is not None:
        found = session.get(Subscriber, report.subscriber_id, with_for_update=True)
        if found is not None:
            return found, True
    if not report.recipient:
        return None, False
    try:
        email = subscriptions.normalize_email(report.recipient)
    except subscriptions.InvalidInput:  # not an address anyone could have subscribed with
        return None, False
    found = session.exec(
        select(Subscriber).where(Subscriber.email == email).with_for_update()
    ).first()
    if found is None or report.source not in MAIL_SOURCES:
        return found, found is not None
    return found, bool(report.message_id) and _sent_to(session, found.id, report.message_id)


def _sent_to(session: Session, subscriber_id: int | None, message_id: str | None) -> bool:
    """Whether a digest with this Message-ID went to this subscriber."""
    return (
        session.exec(
            select(Delivery.id)
            .join(Digest, col(Digest.id) == Delivery.digest_id)
            .where(Delivery.message_id == message_id, Digest.subscriber_id == subscriber_id)
        ).first()
        is not None
    )


def _cancel_pending(session: Session, subscriber_id: int, reason: str) -> None:
    waiting = select(Digest.id).where(Digest.subscriber_id == subscriber_id)
    session.exec(  # type: ignore[call-overload]
        update(Delivery)
        .where(col(Delivery.digest_id).in_(waiting), Delivery.status == DeliveryStatus.pending)
        .values(status=DeliveryStatus.cancelled, last_error=reason, updated_at=utcnow())
    )


def _suspend(session: Session, subscriber: Subscriber, now: datetime) -> str:
    if subscriber.suspended_at is not None or subscriber.unsubscribed_at is not None:
        return Action.noted
    subscriber.suspended_at = now
    session.add(subscriber)
    _cancel_pending(session, subscriber.id, SUSPENDED_REASON)  # type: ignore[arg-type]
    return Action.suspended


def _act(
    session: Session, settings: Settings, subscriber: Subscriber, kind: BounceKind, now: datetime
) -> str:
    today = now.date()
    if kind == BounceKind.complaint:
        if subscriber.unsubscribed_at is not None:
            return Action.noted
        subscriptions.unsubscribe(session, subscriber, now=now)
        return Action.unsubscribed
    last = subscriber.last_bounce_on
    if last is not None and (today - last).days > settings.bounce_stale_days:
        subscriber.bounce_score = 0.0  # the earlier bounces are stale: start over
    if kind == BounceKind.hard:
        subscriber.bounce_score += HARD_WEIGHT
        subscriber.last_bounce_on = today
        session.add(subscriber)
        return _suspend(session, subscriber, now)
    if last == today:  # soft: counted at most once a day
        session.add(subscriber)
        return Action.noted
    subscriber.bounce_score += SOFT_WEIGHT
    subscriber.last_bounce_on = today
    session.add(subscriber)
    if subscriber.bounce_score >= settings.bounce_score_limit:
        return _suspend(session, subscriber, now)
    return Action.scored


def _record_one(
    engine: Engine, settings: Settings, report: BounceReport, now: datetime
) -> BounceEvent | None:
    """Store and act on one report in one transaction; None when it was stored before."""
    with session_scope(engine) as session:
        if session.exec(
            select(BounceEvent.id).where(BounceEvent.fingerprint == report.fingerprint)
        ).first():
            return None
        subscriber, proven = _subscriber(session, report)
        action = Action.ignored if subscriber is None else Action.unverified
        subscriber = subscriber if proven else None  # `action` is set below when proven
        event = BounceEvent(
            fingerprint=report.fingerprint,
            source=report.source[:20],
            kind=report.kind,
            recipient=(report.recipient or (subscriber.email if subscriber else ""))[:320],
            subscriber_id=subscriber.id if subscriber else None,
            message_id=(report.message_id or None) and report.message_id[:250],
            status_code=(report.status_code or None) and report.status_code[:20],
            detail=report.detail,
            action=action,
            received_at=now,
        )
        session.add(event)
        session.flush()  # the unique fingerprint claims the report before anything is changed
        if subscriber is not None:
            event.action = _act(session, settings, subscriber, BounceKind(report.kind), now)
            session.add(event)
        return event


def record_reports(
    engine: Engine,
    settings: Settings,
    reports: Iterable[BounceReport],
    *,
    now: datetime | None = None,
) -> list[BounceEvent]:
    """Store each report once and act on it; returns the events stored by this call (a report
    whose fingerprint is known already changes nothing and is not in the list)."""
    now = now or utcnow()
    stored: list[BounceEvent] = []
    for report in reports:
        try:
            event = _record_one(engine, settings, report, now)
        except IntegrityError:  # another process stored the same report a moment ago
            event = None
        if event is None:
            log_event(log, "bounce.duplicate", fingerprint=report.fingerprint[:16])
            continue
        quiet = (Action.ignored, Action.unverified, Action.noted)
        level = logging.INFO if event.action in quiet else logging.WARNING
        log_event(
            log,
            "bounce.recorded",
            level,
            kind=str(event.kind),
            source=event.source,
            subscriber_id=event.subscriber_id,
            status=event.status_code,
            action=event.action,
        )
        stored.append(event)
    metrics.count_bounce_events(stored)  # every way in: mail, SMTP/LMTP, IMAP, webhooks
    return stored


@dataclass(frozen=True)
class Intake:
    """What one incoming mail came to: the reports found in it and the events stored."""

    reports: list[BounceReport]
    events: list[BounceEvent]

    @property
    def summary(self) -> str:
        """One line for the MTA log or the operator."""
        if not self.reports:
            return "not a bounce or complaint report: ignored"
        parts = []
        for event in self.events:
            who = event.recipient or f"subscriber {event.subscriber_id}"
            code = f" {event.status_code}" if event.status_code else ""
            parts.append(f"{event.kind}{code} {who}: {event.action}")
        duplicates = len(self.reports) - len(self.events)
        if duplicates:
            parts.append(f"{duplicates} already recorded")
        return "; ".join(parts)


def process_message(
    engine: Engine,
    settings: Settings,
    data: bytes,
    *,
    envelope_recipients: Iterable[str] = (),
    now: datetime | None = None,
) -> Intake:
    """Parse one incoming mail and record what it reports (the MTA pipe, the SMTP/LMTP
    endpoint and the IMAP poller all come here). Database errors propagate: the caller asks
    the sender to try again later."""
    reports = parse_report(
        data,
        secret=settings.secret_key.get_secret_value(),
        bounce_domain=settings.bounce_domain,
        envelope_recipients=envelope_recipients,
    )
    if not reports:
        log_event(log, "bounce.not_a_report", size=len(data))
    return Intake(reports, record_reports(engine, settings, reports, now=now))

"""Subscribers as the operator sees them: one state each, search and filter, one subscriber's
history, suspend and resume, and the CSV export (which never holds a link token or nonce).

The state is worked out in one place (`state_of` for a row, `state_where` for a query), so the
filter and the badge never disagree.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import and_, func
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Session, col, select

from papermail.models import (
    BounceEvent,
    Delivery,
    DeliveryStatus,
    Digest,
    DigestItem,
    Frequency,
    Interest,
    SavedPaper,
    Subscriber,
    Topic,
)
from papermail.services import feedback as feedback_service
from papermail.services import interests as interests_service
from papermail.services.console import Page, events_of, page_bounds
from papermail.services.today import Today, clear_suspension, today_of


class State(StrEnum):
    active = "active"
    unconfirmed = "unconfirmed"
    paused = "paused"
    suspended = "suspended"
    unsubscribed = "unsubscribed"


def state_of(subscriber: Subscriber) -> State:
    """Unsubscribed, else suspended (bounces or the operator), else unconfirmed, else paused,
    else active (a snoozed subscriber is active: digests resume by themselves)."""
    if subscriber.unsubscribed_at is not None:
        return State.unsubscribed
    if subscriber.suspended_at is not None:
        return State.suspended
    if not subscriber.confirmed:
        return State.unconfirmed
    if subscriber.frequency == Frequency.paused:
        return State.paused
    return State.active


def state_where(state: State) -> ColumnElement[bool]:
    """The SQL condition of `state_of(row) == state`."""
    left = col(Subscriber.unsubscribed_at).is_not(None)
    stayed = col(Subscriber.unsubscribed_at).is_(None)
    suspended = col(Subscriber.suspended_at).is_not(None)
    running = and_(stayed, col(Subscriber.suspended_at).is_(None))
    confirmed = col(Subscriber.confirmed).is_(True)
    paused = col(Subscriber.frequency) == Frequency.paused.value
    return {
        State.unsubscribed: left,
        State.suspended: and_(stayed, suspended),
        State.unconfirmed: and_(running, col(Subscriber.confirmed).is_(False)),
        State.paused: and_(running, confirmed, paused),
        State.active: and_(running, confirmed, ~paused),
    }[state]


def state_counts(session: Session) -> dict[State, int]:
    return {
        state: session.exec(
            select(func.count()).select_from(Subscriber).where(state_where(state))
        ).one()
        for state in State
    }


def _filters(query: str, state: State | None) -> list[ColumnElement[bool]]:
    where = []
    query = query.replace("\x00", "").strip()  # PostgreSQL text never holds NUL
    if query:
        where.append(col(Subscriber.email).contains(query.lower(), autoescape=True))
    if state is not None:
        where.append(state_where(state))
    return where


@dataclass(frozen=True)
class Row:
    subscriber: Subscriber
    state: State


def search(
    session: Session,
    *,
    query: str = "",
    state: State | None = None,
    number: int = 1,
    per_page: int = 50,
) -> Page[Row]:
    """Subscribers whose address contains `query`, in `state`, newest first."""
    where = _filters(query, state)
    total = session.exec(select(func.count()).select_from(Subscriber).where(*where)).one()
    number, offset = page_bounds(number, per_page, total)
    rows = session.exec(
        select(Subscriber)
        .where(*where)
        .order_by(col(Subscriber.created_at).desc(), col(Subscriber.id).desc())
        .offset(offset)
        .limit(per_page)
    ).all()
    return Page([Row(s, state_of(s)) for s in rows], number, per_page, total)


def suspend(session: Session, subscriber: Subscriber, *, now: datetime) -> None:
    """No more digests; digests already stored are cancelled by the sender before sending."""
    if subscriber.suspended_at is None:
        subscriber.suspended_at = now
        session.add(subscriber)


def resume(session: Session, subscriber: Subscriber) -> None:
    """Digests resume, and the bounce history that led to a suspension is forgotten."""
    clear_suspension(session, subscriber)


@dataclass(frozen=True)
class DigestLine:
    issue_date: object
    papers: int
    scanned: int
    status: str  # a DeliveryStatus, or "nothing matched"
    attempts: int
    error: str
    sent_at: datetime | None


@dataclass(frozen=True)
class Detail:
    subscriber: Subscriber
    state: State
    today: Today
    interests: list[interests_service.InterestView]
    digests: list[DigestLine]
    bounces: Sequence[BounceEvent]
    more: int
    less: int
    saved: int


def detail(session: Session, subscriber: Subscriber, *, now: datetime, digests: int = 14) -> Detail:
    """One subscriber's interests, last digests with their deliveries, bounce reports,
    feedback counts, and why there is (no) digest today."""
    assert subscriber.id is not None
    papers = (
        select(func.count())
        .select_from(DigestItem)
        .where(DigestItem.digest_id == Digest.id)
        .scalar_subquery()
    )
    rows = session.exec(
        select(Digest, Delivery, papers)  # type: ignore[call-overload]
        .outerjoin(Delivery, col(Delivery.digest_id) == Digest.id)
        .where(Digest.subscriber_id == subscriber.id)
        .order_by(col(Digest.issue_date).desc())
        .limit(digests)
    ).all()
    lines = [
        DigestLine(
            issue_date=d.issue_date,
            papers=count,
            scanned=d.scanned,
            status=str(DeliveryStatus(v.status)) if v else "nothing matched",
            attempts=v.attempts if v else 0,
            error=(v.last_error or "") if v else "",
            sent_at=v.sent_at if v else None,
        )
        for d, v, count in rows
    ]
    ratings = feedback_service.rating_counts(session, subscriber_id=subscriber.id)
    saved = session.exec(
        select(func.count())
        .select_from(SavedPaper)
        .where(SavedPaper.subscriber_id == subscriber.id)
    ).one()
    return Detail(
        subscriber=subscriber,
        state=state_of(subscriber),
        today=today_of(session, subscriber, now),
        interests=interests_service.list_interests(session, subscriber.id),
        digests=lines,
        bounces=events_of(session, subscriber.id),
        more=ratings.get(1, 0),
        less=ratings.get(-1, 0),
        saved=saved,
    )


# --- CSV export ------------------------------------------------------------------------------

CSV_COLUMNS = (
    "id",
    "email",
    "state",
    "created_at",
    "confirmed_at",
    "unsubscribed_at",
    "suspended_at",
    "frequency",
    "weekly_day",
    "send_hour",
    "timezone",
    "max_papers",
    "snoozed_until",
    "hard_bounces",
    "bounce_score",
    "interests",
    "keywords",
)
CSV_BATCH = 500


def csv_safe(value: object) -> str:
    """A cell a spreadsheet will not run as a formula (`=`, `+`, `-`, `@` ... lead)."""
    text = "" if value is None else value.isoformat() if hasattr(value, "isoformat") else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _keywords(session: Session, ids: Sequence[int]) -> dict[int, tuple[list[str], list[str]]]:
    """Per subscriber: interest names and keywords (an exclusion as `NOT word`)."""
    found: dict[int, tuple[list[str], list[str]]] = {i: ([], []) for i in ids}
    for subscriber_id, name in session.exec(
        select(Topic.subscriber_id, Topic.name)
        .where(col(Topic.subscriber_id).in_(ids))
        .order_by(col(Topic.position), col(Topic.id))
    ):
        found[subscriber_id][0].append(name)
    for subscriber_id, phrase, negative in session.exec(
        select(Interest.subscriber_id, Interest.phrase, Interest.negative)
        .where(col(Interest.subscriber_id).in_(ids))
        .order_by(col(Interest.id))
    ):
        found[subscriber_id][1].append(f"NOT {phrase}" if negative else phrase)
    return found


def csv_rows(
    session: Session, *, query: str = "", state: State | None = None
) -> Iterator[list[str]]:
    """The header, then one row per matching subscriber (oldest first), read in batches."""
    yield list(CSV_COLUMNS)
    where = _filters(query, state)
    after = 0
    while True:
        batch = session.exec(
            select(Subscriber)
            .where(col(Subscriber.id) > after, *where)
            .order_by(col(Subscriber.id))
            .limit(CSV_BATCH)
        ).all()
        if not batch:
            return
        words = _keywords(session, [s.id for s in batch if s.id is not None])
        for s in batch:
            names, phrases = words[s.id or 0]
            values = [
                s.id, s.email, state_of(s), s.created_at, s.confirmed_at, s.unsubscribed_at,
                s.suspended_at, Frequency(s.frequency).value, s.weekly_day, s.send_hour,
                s.timezone, s.max_papers, s.snoozed_until, s.hard_bounces, s.bounce_score,
                "; ".join(names), "; ".join(phrases),
            ]  # fmt: skip
            yield [csv_safe(v) for v in values]
        after = batch[-1].id or after
        session.expunge_all()

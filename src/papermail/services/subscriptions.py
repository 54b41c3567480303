"""Subscribers and their interests: validation lives here so the CLI and web app agree."""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from enum import StrEnum
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, delete, or_, select

from papermail.errors import PapermailError
from papermail.models import (
    Delivery,
    DeliveryStatus,
    Digest,
    Frequency,
    Interest,
    RateLimitHit,
    Subscriber,
    Topic,
)

MAX_PHRASE_LENGTH = 200
MAX_INTERESTS = 50
MAX_SNOOZE_WEEKS = 52


class InvalidInput(PapermailError):
    """Input a person typed that papermail cannot accept; `field` names where it belongs."""

    def __init__(self, message: str, *, field: str = "") -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True, slots=True)
class Preferences:
    keywords: tuple[str, ...] = ()
    excluded: tuple[str, ...] = ()
    timezone: str = "UTC"
    send_hour: int = 7
    frequency: Frequency = Frequency.daily
    weekly_day: int = 0
    max_papers: int = 10


def normalize_email(raw: str) -> str:
    try:
        # No SMTPUTF8: a non-ASCII local part ("üser@") is refused here rather than accepted and
        # then failing at every send; a non-ASCII domain is kept in its ASCII (IDNA) form.
        result = validate_email(raw.strip(), check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as exc:
        raise InvalidInput(f"invalid email address {raw.strip()!r}: {exc}", field="email") from exc
    return (result.ascii_email or result.normalized).lower()


def clean_phrases(raw: Sequence[str], *, field: str) -> tuple[str, ...]:
    """Trim, collapse spaces, drop empties and repeats (case-insensitively), keep order."""
    seen: dict[str, str] = {}
    for item in raw:
        for part in item.split(","):
            phrase = " ".join(part.split())
            if not phrase:
                continue
            if any(unicodedata.category(c) in ("Cc", "Cs") for c in phrase):
                raise InvalidInput("keywords cannot contain control characters", field=field)
            if len(phrase) > MAX_PHRASE_LENGTH:
                raise InvalidInput(
                    f"keyword longer than {MAX_PHRASE_LENGTH} characters", field=field
                )
            seen.setdefault(phrase.casefold(), phrase)
    if len(seen) > MAX_INTERESTS:
        raise InvalidInput(f"at most {MAX_INTERESTS} keywords", field=field)
    return tuple(seen.values())


@lru_cache(maxsize=1)
def _known_zones() -> frozenset[str]:
    """The IANA zone names (the lookup walks the tz database, ~10 ms: once per process, or every
    sign-up of a new address would take measurably longer than one of a known address)."""
    return frozenset(available_timezones())


def validate_preferences(prefs: Preferences) -> Preferences:
    keywords = clean_phrases(prefs.keywords, field="keywords")
    excluded = clean_phrases(prefs.excluded, field="excluded")
    if not keywords:
        raise InvalidInput("give at least one keyword", field="keywords")
    try:
        ZoneInfo(prefs.timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidInput(f"unknown time zone {prefs.timezone!r}", field="timezone") from exc
    if prefs.timezone not in _known_zones() and prefs.timezone != "UTC":
        raise InvalidInput(f"unknown time zone {prefs.timezone!r}", field="timezone")
    if not 0 <= prefs.send_hour <= 23:
        raise InvalidInput("send hour must be between 0 and 23", field="send_hour")
    if not 0 <= prefs.weekly_day <= 6:
        raise InvalidInput("weekly day must be 0 (Monday) to 6 (Sunday)", field="weekly_day")
    if not 1 <= prefs.max_papers <= 100:
        raise InvalidInput("papers per digest must be between 1 and 100", field="max_papers")
    return Preferences(
        keywords=keywords,
        excluded=excluded,
        timezone=prefs.timezone,
        send_hour=prefs.send_hour,
        frequency=Frequency(prefs.frequency),
        weekly_day=prefs.weekly_day,
        max_papers=prefs.max_papers,
    )


def get_by_email(session: Session, email: str) -> Subscriber | None:
    return session.exec(select(Subscriber).where(Subscriber.email == email)).first()


DEFAULT_TOPIC = "My interests"


def topics_of(session: Session, subscriber_id: int) -> list[Topic]:
    """A subscriber's named interests, in digest order."""
    return list(
        session.exec(
            select(Topic)
            .where(Topic.subscriber_id == subscriber_id)
            .order_by(col(Topic.position), col(Topic.id))
        )
    )


def first_topic(
    session: Session, subscriber_id: int, *, name: str = "", max_papers: int = 10
) -> Topic:
    """The subscriber's first interest (the one the manage form and `subscribers add -k` edit),
    created (named `name`) when they have none yet."""
    topics = topics_of(session, subscriber_id)
    if topics:
        return topics[0]
    topic = Topic(
        subscriber_id=subscriber_id,
        name=(name or DEFAULT_TOPIC)[:100],
        max_papers=max_papers,
    )
    session.add(topic)
    session.flush()
    return topic


def set_interests(
    session: Session,
    subscriber_id: int,
    keywords: Sequence[str],
    excluded: Sequence[str],
    *,
    topic_id: int | None = None,
) -> None:
    """Replace the keywords and exclusions of one interest (default: the first one)."""
    if topic_id is None:
        topic_id = first_topic(session, subscriber_id, name=next(iter(keywords), "")).id
    first = topics_of(session, subscriber_id)[0].id == topic_id
    mine = col(Interest.topic_id) == topic_id
    if first:  # keyword rows without an interest belong to the first one
        mine = or_(mine, col(Interest.topic_id).is_(None))
    session.exec(delete(Interest).where(col(Interest.subscriber_id) == subscriber_id, mine))
    for phrase in keywords:
        session.add(Interest(subscriber_id=subscriber_id, topic_id=topic_id, phrase=phrase))
    for phrase in excluded:
        session.add(
            Interest(subscriber_id=subscriber_id, topic_id=topic_id, phrase=phrase, negative=True)
        )


def apply_preferences(session: Session, subscriber: Subscriber, prefs: Preferences) -> None:
    prefs = validate_preferences(prefs)
    subscriber.timezone = prefs.timezone
    subscriber.send_hour = prefs.send_hour
    subscriber.frequency = prefs.frequency
    subscriber.weekly_day = prefs.weekly_day
    subscriber.max_papers = prefs.max_papers
    session.add(subscriber)
    session.flush()
    assert subscriber.id is not None
    topic = first_topic(session, subscriber.id, name=prefs.keywords[0], max_papers=prefs.max_papers)
    topic.max_papers = prefs.max_papers  # the form's papers per digest: the first interest's
    named_after = session.exec(
        select(Interest.phrase)
        .where(Interest.topic_id == topic.id, col(Interest.negative).is_(False))
        .order_by(col(Interest.id))
    ).first()
    if topic.name == named_after and len(topics_of(session, subscriber.id)) == 1:
        topic.name = prefs.keywords[0][:100]  # still named after its first keyword: follows it
    session.add(topic)
    set_interests(session, subscriber.id, prefs.keywords, prefs.excluded, topic_id=topic.id)


def add_subscriber(
    session: Session, *, email: str, prefs: Preferences, confirmed: bool = False
) -> Subscriber:
    """Create a subscriber; an existing address keeps its row and takes the new preferences."""
    address = normalize_email(email)
    subscriber = get_by_email(session, address) or Subscriber(email=address)
    if confirmed:
        subscriber.confirmed = True
        subscriber.unsubscribed_at = None
    apply_preferences(session, subscriber, prefs)
    return subscriber


def save_subscriber(
    session: Session,
    *,
    email: str,
    changes: Mapping[str, object],
    confirmed: bool | None = None,
) -> tuple[Subscriber, bool]:
    """An operator's add-or-update: a new address takes `changes` over the defaults (and needs
    keywords); an existing one changes only the `Preferences` fields named in `changes` (so
    keywords given replace its keywords, and keywords not given stay). `confirmed` None leaves
    the confirmation (and unsubscribe) state of an existing subscriber alone. Returns the row
    and whether it is new."""
    address = normalize_email(email)
    subscriber = get_by_email(session, address)
    created = subscriber is None
    if subscriber is None:
        subscriber = Subscriber(email=address)
        base = Preferences()
    else:
        base = preferences_of(session, subscriber)
    prefs = replace(base, **changes)  # type: ignore[arg-type]
    if confirmed is True or (created and confirmed is None):
        subscriber.confirmed = True
        subscriber.unsubscribed_at = None
    elif confirmed is False and created:
        subscriber.confirmed = False
    apply_preferences(session, subscriber, prefs)
    return subscriber, created


def interests_of(session: Session, subscriber_id: int) -> list[Interest]:
    return list(
        session.exec(
            select(Interest)
            .where(Interest.subscriber_id == subscriber_id)
            .order_by(col(Interest.negative), col(Interest.id))
        )
    )


def keywords_of(session: Session, subscriber_id: int) -> tuple[str, ...]:
    """The positive keywords of every interest, in the order they were given."""
    return tuple(i.phrase for i in interests_of(session, subscriber_id) if not i.negative)


def remove_subscriber(session: Session, email: str) -> bool:
    """Delete the subscriber with their interests and history (rows cascade) and the rate-limit
    counts kept under their address."""
    subscriber = get_by_email(session, normalize_email(email))
    if subscriber is None:
        return False
    delete_subscriber(session, subscriber)
    return True


# --- Web sign-up and self-service: one unit of work each, the caller commits ---------------


class SignUp(StrEnum):
    """What a public sign-up leads to; the web page says the same thing in every case."""

    confirm = "confirm"  # new or still unconfirmed: send a (fresh) confirmation link
    manage = "manage"  # already confirmed: send a manage link, change nothing
    none = "none"  # lost a race with a concurrent sign-up of the same address: send nothing


@dataclass(frozen=True, slots=True)
class SignUpResult:
    action: SignUp
    subscriber_id: int
    email: str
    token_version: int
    keywords: tuple[str, ...]
    unsubscribed: bool = False
    link_nonce: str = ""


def request_subscription(session: Session, *, email: str, prefs: Preferences) -> SignUpResult:
    """Public sign-up (double opt-in). Anyone can type any address, so an already confirmed
    subscription is never overwritten: its owner gets a manage link instead. An unconfirmed one
    takes the new preferences and a new token version, so only the newest confirmation mail (the
    one listing these keywords) works."""
    address = normalize_email(email)
    prefs = validate_preferences(prefs)
    subscriber = get_by_email(session, address)
    if subscriber is not None and subscriber.confirmed:
        assert subscriber.id is not None
        keywords = keywords_of(session, subscriber.id)
        return SignUpResult(
            SignUp.manage,
            subscriber.id,
            address,
            subscriber.token_version,
            keywords,
            unsubscribed=subscriber.unsubscribed_at is not None,
            link_nonce=subscriber.link_nonce,
        )
    if subscriber is None:
        subscriber = Subscriber(email=address)
    else:
        subscriber.token_version += 1
    try:
        with session.begin_nested():
            apply_preferences(session, subscriber, prefs)
    except IntegrityError:  # the same address signed up concurrently: that request sends
        return SignUpResult(SignUp.none, 0, address, 0, ())
    assert subscriber.id is not None
    return SignUpResult(
        SignUp.confirm,
        subscriber.id,
        address,
        subscriber.token_version,
        prefs.keywords,
        link_nonce=subscriber.link_nonce,
    )


def confirm_subscriber(session: Session, subscriber: Subscriber, *, now: datetime) -> None:
    """The address owner clicked their link: digests may start (and resume, if unsubscribed)."""
    if not subscriber.confirmed:
        subscriber.confirmed = True
        subscriber.confirmed_at = now
    subscriber.unsubscribed_at = None
    session.add(subscriber)


def unsubscribe(session: Session, subscriber: Subscriber, *, now: datetime) -> None:
    """Stop everything at once, including a digest already scored but not yet sent."""
    if subscriber.unsubscribed_at is None:
        subscriber.unsubscribed_at = now
        session.add(subscriber)
    waiting = select(Digest.id).where(Digest.subscriber_id == subscriber.id)
    session.exec(  # type: ignore[call-overload]
        update(Delivery)
        .where(col(Delivery.digest_id).in_(waiting), Delivery.status == DeliveryStatus.pending)
        .values(status=DeliveryStatus.cancelled, last_error="unsubscribed before sending")
    )


def resubscribe(session: Session, subscriber: Subscriber, *, now: datetime) -> None:
    """Undo an unsubscribe from the subscriber's own link: that link proves the address, so no
    new confirmation is needed."""
    confirm_subscriber(session, subscriber, now=now)


def snooze(session: Session, subscriber: Subscriber, *, weeks: int, today: date) -> None:
    """No digests for `weeks` weeks from `today` (the subscriber's local day); 0 resumes now."""
    if not 0 <= weeks <= MAX_SNOOZE_WEEKS:
        raise InvalidInput(f"snooze for 0 to {MAX_SNOOZE_WEEKS} weeks", field="weeks")
    subscriber.snoozed_until = today + timedelta(weeks=weeks) if weeks else None
    session.add(subscriber)


def revoke_links(session: Session, subscriber: Subscriber) -> None:
    """Every manage, view, feed and confirm link sent so far stops working (unsubscribe links
    keep working: RFC 8058 links in old mails must always unsubscribe)."""
    subscriber.token_version += 1
    session.add(subscriber)


def delete_subscriber(session: Session, subscriber: Subscriber) -> None:
    """Remove the subscriber with interests, digests, deliveries and ratings (rows cascade),
    and the rate-limit counts kept under their address."""
    session.exec(delete(RateLimitHit).where(col(RateLimitHit.key) == address_key(subscriber.email)))
    session.delete(subscriber)
    session.flush()


def preferences_of(session: Session, subscriber: Subscriber) -> Preferences:
    """The stored preferences, as the manage form shows them (keywords: the first interest's)."""
    assert subscriber.id is not None
    topics = topics_of(session, subscriber.id)
    interests = [
        i
        for i in interests_of(session, subscriber.id)
        if not topics or i.topic_id in (None, topics[0].id)
    ]
    return Preferences(
        keywords=tuple(i.phrase for i in interests if not i.negative),
        excluded=tuple(i.phrase for i in interests if i.negative),
        timezone=subscriber.timezone,
        send_hour=subscriber.send_hour,
        frequency=Frequency(subscriber.frequency),
        weekly_day=subscriber.weekly_day,
        max_papers=subscriber.max_papers,
    )


# --- Rate limits, counted in the database so that every web process sees the same counts ---


def _hashed(kind: str, value: str) -> str:
    """Keys hold a hash, not the address or IP itself: the table is not a list of addresses."""
    return f"{kind}:{hashlib.sha256(value.encode()).hexdigest()[:40]}"


def address_key(email: str) -> str:
    return _hashed("mail", email)


def ip_key(ip: str) -> str:
    return _hashed("ip", ip)

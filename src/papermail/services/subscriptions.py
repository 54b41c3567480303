"""Subscribers and their interests: validation lives here so the CLI and web app agree."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from email_validator import EmailNotValidError, validate_email
from sqlmodel import Session, col, delete, select

from papermail.errors import PapermailError
from papermail.models import Frequency, Interest, Subscriber

MAX_PHRASE_LENGTH = 200
MAX_INTERESTS = 50


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
        result = validate_email(raw.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidInput(f"invalid email address {raw.strip()!r}: {exc}", field="email") from exc
    return result.normalized.lower()


def clean_phrases(raw: Sequence[str], *, field: str) -> tuple[str, ...]:
    """Trim, collapse spaces, drop empties and repeats (case-insensitively), keep order."""
    seen: dict[str, str] = {}
    for item in raw:
        for part in item.split(","):
            phrase = " ".join(part.split())
            if not phrase:
                continue
            if len(phrase) > MAX_PHRASE_LENGTH:
                raise InvalidInput(
                    f"keyword longer than {MAX_PHRASE_LENGTH} characters", field=field
                )
            seen.setdefault(phrase.casefold(), phrase)
    if len(seen) > MAX_INTERESTS:
        raise InvalidInput(f"at most {MAX_INTERESTS} keywords", field=field)
    return tuple(seen.values())


def validate_preferences(prefs: Preferences) -> Preferences:
    keywords = clean_phrases(prefs.keywords, field="keywords")
    excluded = clean_phrases(prefs.excluded, field="excluded")
    if not keywords:
        raise InvalidInput("give at least one keyword", field="keywords")
    try:
        ZoneInfo(prefs.timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidInput(f"unknown time zone {prefs.timezone!r}", field="timezone") from exc
    if prefs.timezone not in available_timezones() and prefs.timezone != "UTC":
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


def set_interests(
    session: Session, subscriber_id: int, keywords: Sequence[str], excluded: Sequence[str]
) -> None:
    session.exec(delete(Interest).where(col(Interest.subscriber_id) == subscriber_id))
    for phrase in keywords:
        session.add(Interest(subscriber_id=subscriber_id, phrase=phrase))
    for phrase in excluded:
        session.add(Interest(subscriber_id=subscriber_id, phrase=phrase, negative=True))


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
    set_interests(session, subscriber.id, prefs.keywords, prefs.excluded)


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


def interests_of(session: Session, subscriber_id: int) -> list[Interest]:
    return list(
        session.exec(
            select(Interest)
            .where(Interest.subscriber_id == subscriber_id)
            .order_by(col(Interest.negative), col(Interest.id))
        )
    )


def remove_subscriber(session: Session, email: str) -> bool:
    """Delete the subscriber with their interests and history (rows cascade)."""
    subscriber = get_by_email(session, normalize_email(email))
    if subscriber is None:
        return False
    session.delete(subscriber)
    return True

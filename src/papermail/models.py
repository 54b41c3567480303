"""Database tables. Data flows one way: papers -> digests (with their items) -> deliveries.

All timestamps are timezone-aware UTC (``utcnow()``); SQLModel stores them as UTC in SQLite and
PostgreSQL alike and gives them back aware.
"""

from __future__ import annotations

import secrets
from datetime import UTC, date, datetime
from enum import StrEnum

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_link_nonce() -> str:
    """A subscriber's link nonce: every link token carries it, so a row never opens with the
    links of another row that once had the same id."""
    return secrets.token_urlsafe(16)


def parse_moment(text: str) -> datetime:
    """An ISO date-time; one without an offset is taken as UTC."""
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class Frequency(StrEnum):
    daily = "daily"
    weekly = "weekly"
    paused = "paused"


class DeliveryStatus(StrEnum):
    pending = "pending"
    sending = "sending"
    sent = "sent"
    failed = "failed"
    bounced = "bounced"
    cancelled = "cancelled"  # the subscriber left (unsubscribed, suspended) before it was sent


class Paper(SQLModel, table=True):
    """One paper, keyed by its arXiv id without version, else a hash of its normalized title."""

    id: str = Field(primary_key=True, max_length=64)
    title: str = Field(sa_column=Column(Text, nullable=False))
    abstract: str = Field(sa_column=Column(Text, nullable=False))
    authors: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    author_count: int | None = None
    organisation: str | None = Field(default=None, max_length=200)
    published: date | None = None
    listing_day: date | None = Field(default=None, index=True)
    upvotes: int | None = None
    url: str | None = Field(default=None, max_length=500)
    source: str = Field(default="", max_length=40)
    version: int | None = Field(default=None, description="arXiv version, when a source says")
    first_seen_at: datetime = Field(default_factory=utcnow, index=True)
    revised_at: datetime | None = Field(
        default=None, index=True, description="When a newer version than ours came in"
    )
    updated_at: datetime = Field(default_factory=utcnow)
    # What the sources give beyond the text (issue 12), shown in digests and on /papers.
    arxiv_id: str | None = Field(default=None, max_length=64)
    pdf_url: str | None = Field(default=None, max_length=500)
    hf_url: str | None = Field(default=None, max_length=500)
    code_url: str | None = Field(default=None, max_length=500)
    code_stars: int | None = None
    project_url: str | None = Field(default=None, max_length=500)
    thumbnail_url: str | None = Field(default=None, max_length=500)
    ai_summary: str | None = Field(default=None, sa_column=Column(Text))
    ai_keywords: list[str] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False, server_default="[]")
    )
    affiliations: dict[str, str] = Field(
        default_factory=dict,
        sa_column=Column(JSON, nullable=False, server_default="{}"),
        description="Author name -> affiliation, when the source gives them",
    )
    comments_count: int | None = Field(default=None, description="Comments on the HF page")
    primary_category: str | None = Field(default=None, max_length=40)
    comments: str | None = Field(
        default=None, sa_column=Column(Text), description='arXiv comment: "Accepted at ICLR"'
    )
    journal_ref: str | None = Field(default=None, max_length=500)


class PaperEmbedding(SQLModel, table=True):
    """A paper's sentence embedding (``ranking.dense``), computed once and stored: float16 bytes.
    A vector of another model, or of a text that has since changed, is stale and re-encoded."""

    paper_id: str = Field(
        sa_column=Column(String(64), ForeignKey("paper.id", ondelete="CASCADE"), primary_key=True)
    )
    model: str = Field(max_length=100)
    text_hash: str = Field(max_length=16, description="Fingerprint of the embedded text")
    vector: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class Subscriber(SQLModel, table=True):
    # AUTOINCREMENT: SQLite never gives a deleted subscriber's id to a new one.
    __table_args__ = {"sqlite_autoincrement": True}

    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(unique=True, index=True, max_length=320)
    confirmed: bool = False
    timezone: str = Field(default="UTC", max_length=64)
    send_hour: int = Field(default=7, ge=0, le=23)
    # Enums are stored as short strings: adding a value needs no ALTER TYPE on PostgreSQL.
    frequency: Frequency = Field(default=Frequency.daily, sa_type=String(10))
    weekly_day: int = Field(default=0, ge=0, le=6, description="0 = Monday, for weekly digests")
    max_papers: int = Field(default=10, ge=1, le=100)
    token_version: int = Field(default=0, description="Bump to invalidate every link sent so far")
    link_nonce: str = Field(
        default_factory=new_link_nonce,
        max_length=32,
        description="Random; in every link token, so links only ever open this row",
    )
    legacy_links: bool = Field(
        default=False,
        sa_column=Column(Boolean, nullable=False, server_default=false()),
        description="Existed before link nonces: its old-format links (no nonce) still work",
    )
    confirmed_at: datetime | None = None
    unsubscribed_at: datetime | None = None
    snoozed_until: date | None = Field(default=None, description="No digests before this day")
    hard_bounces: int = Field(default=0, description="Permanent delivery failures in a row")
    suspended_at: datetime | None = Field(default=None, description="Set after too many bounces")
    bounce_score: float = Field(
        default=0.0,
        sa_column=Column(Float, nullable=False, server_default="0"),
        description="Bounce reports that arrived later (Mailman's rule: +1 hard, +0.5 soft, "
        "counted once a day, forgotten when stale)",
    )
    last_bounce_on: date | None = Field(
        default=None, description="Day the bounce score last grew: one count per day"
    )
    created_at: datetime = Field(default_factory=utcnow)

    @property
    def active(self) -> bool:
        return self.confirmed and self.unsubscribed_at is None and self.suspended_at is None


class Topic(SQLModel, table=True):
    """A named interest of a subscriber (issue 13): its keywords (`Interest` rows), seed papers
    and followed authors form one ranking profile, and one section of the digest."""

    __table_args__ = (UniqueConstraint("subscriber_id", "name"),)

    id: int | None = Field(default=None, primary_key=True)
    subscriber_id: int = Field(
        sa_column=Column(
            Integer, ForeignKey("subscriber.id", ondelete="CASCADE"), index=True, nullable=False
        )
    )
    name: str = Field(max_length=100)
    max_papers: int = Field(default=10, ge=1, le=100, description="Its share of a digest")
    position: int = Field(default=0, description="Order in the digest and on the manage page")
    created_at: datetime = Field(default_factory=utcnow)


class Interest(SQLModel, table=True):
    """A keyword or phrase of a named interest (`Topic`); a negative one excludes papers that
    contain it. A row without a topic belongs to the subscriber's first interest."""

    __table_args__ = (UniqueConstraint("topic_id", "phrase", "negative"),)

    id: int | None = Field(default=None, primary_key=True)
    subscriber_id: int = Field(
        sa_column=Column(Integer, ForeignKey("subscriber.id", ondelete="CASCADE"), index=True)
    )
    topic_id: int | None = Field(
        default=None,
        sa_column=Column(Integer, ForeignKey("topic.id", ondelete="CASCADE"), index=True),
    )
    phrase: str = Field(max_length=200)
    weight: float = 1.0
    negative: bool = False


class SeedPaper(SQLModel, table=True):
    """A paper a reader gave to start an interest (arXiv id, URL, title or a BibTeX/RIS entry):
    found in the corpus (by arXiv id, else normalized title) it is a liked paper of the
    interest's profile; not found, its text is kept so a later ingest can still find it."""

    __table_args__ = (UniqueConstraint("topic_id", "given"),)

    id: int | None = Field(default=None, primary_key=True)
    topic_id: int = Field(
        sa_column=Column(
            Integer, ForeignKey("topic.id", ondelete="CASCADE"), index=True, nullable=False
        )
    )
    given: str = Field(max_length=500, description="arXiv id, or the title, as the reader gave it")
    arxiv_id: str | None = Field(default=None, max_length=64)
    title: str | None = Field(default=None, sa_column=Column(Text))
    paper_id: str | None = Field(
        default=None,
        sa_column=Column(String(64), ForeignKey("paper.id", ondelete="SET NULL"), index=True),
    )
    found: bool = False
    created_at: datetime = Field(default_factory=utcnow)


class FollowedAuthor(SQLModel, table=True):
    """An author an interest follows: their new papers always join its section."""

    __table_args__ = (UniqueConstraint("topic_id", "normalized"),)

    id: int | None = Field(default=None, primary_key=True)
    topic_id: int = Field(
        sa_column=Column(
            Integer, ForeignKey("topic.id", ondelete="CASCADE"), index=True, nullable=False
        )
    )
    name: str = Field(max_length=200, description="As the reader typed it")
    normalized: str = Field(max_length=200, description="papermail.authors.normalize_name")


class Digest(SQLModel, table=True):
    """One subscriber's issue for one day: the database allows exactly one."""

    __table_args__ = (UniqueConstraint("subscriber_id", "issue_date"),)

    id: int | None = Field(default=None, primary_key=True)
    subscriber_id: int = Field(
        sa_column=Column(Integer, ForeignKey("subscriber.id", ondelete="CASCADE"), index=True)
    )
    issue_date: date = Field(index=True)
    scanned: int = Field(default=0, description="New papers considered for this issue")
    covered_until: datetime = Field(description="Papers first seen up to here were considered")
    created_at: datetime = Field(default_factory=utcnow)


class DigestItem(SQLModel, table=True):
    """A ranked paper inside a digest, with why it matched."""

    __table_args__ = (UniqueConstraint("digest_id", "paper_id"),)

    id: int | None = Field(default=None, primary_key=True)
    digest_id: int = Field(
        sa_column=Column(Integer, ForeignKey("digest.id", ondelete="CASCADE"), index=True)
    )
    paper_id: str = Field(foreign_key="paper.id", index=True, max_length=64)
    rank: int
    score: float
    matched: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    matched_where: list[str] = Field(
        default_factory=list,
        sa_column=Column(JSON, nullable=False, server_default="[]"),
        description='Per matched term: "title", "abstract" or "title+abstract"',
    )
    paper_version: int | None = Field(default=None, description="The version this digest had")
    revised: bool = Field(
        default=False,
        sa_column=Column(Boolean, nullable=False, server_default=false()),
        description="Sent before in an older version: shown as updated",
    )
    topic_id: int | None = Field(
        default=None,
        sa_column=Column(Integer, ForeignKey("topic.id", ondelete="SET NULL"), index=True),
        description="The interest it was picked for",
    )
    section: str = Field(
        default="",
        sa_column=Column(String(200), nullable=False, server_default=""),
        description="The heading it is shown under: its interest, or its keyword",
    )
    followed: str | None = Field(
        default=None, max_length=200, description="The followed author who wrote it, if any"
    )


class Delivery(SQLModel, table=True):
    """The sending state of a digest: pending -> sending -> sent (or failed)."""

    id: int | None = Field(default=None, primary_key=True)
    digest_id: int = Field(
        sa_column=Column(
            Integer, ForeignKey("digest.id", ondelete="CASCADE"), unique=True, nullable=False
        )
    )
    message_id: str = Field(max_length=250)
    status: DeliveryStatus = Field(default=DeliveryStatus.pending, sa_type=String(10), index=True)
    attempts: int = 0
    last_error: str | None = Field(default=None, sa_column=Column(Text))
    sent_at: datetime | None = None
    updated_at: datetime = Field(default_factory=utcnow)


class Rating(SQLModel, table=True):
    """A subscriber's feedback on a paper from a digest: +1 more like this, -1 less like this."""

    __table_args__ = (UniqueConstraint("subscriber_id", "paper_id"),)

    id: int | None = Field(default=None, primary_key=True)
    subscriber_id: int = Field(
        sa_column=Column(Integer, ForeignKey("subscriber.id", ondelete="CASCADE"), index=True)
    )
    paper_id: str = Field(foreign_key="paper.id", index=True, max_length=64)
    value: int = Field(ge=-1, le=1)
    created_at: datetime = Field(default_factory=utcnow)
    topic_id: int | None = Field(
        default=None,
        sa_column=Column(Integer, ForeignKey("topic.id", ondelete="SET NULL"), index=True),
        description="The interest the paper was shown under; none: the first interest",
    )


class RateLimitHit(SQLModel, table=True):
    """One counted action (say, a subscribe request) under a key such as `email:...`/`ip:...`;
    kept in the database so every web process sees the same counts."""

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(index=True, max_length=200)
    created_at: datetime = Field(default_factory=utcnow, index=True)


class SavedPaper(SQLModel, table=True):
    """A paper a reader saved from a digest ("Save"): their reading list (issue 13 item 4).
    Saving also records a "more like this" rating."""

    __table_args__ = (UniqueConstraint("subscriber_id", "paper_id"),)

    id: int | None = Field(default=None, primary_key=True)
    subscriber_id: int = Field(
        sa_column=Column(
            Integer, ForeignKey("subscriber.id", ondelete="CASCADE"), index=True, nullable=False
        )
    )
    paper_id: str = Field(
        sa_column=Column(String(64), ForeignKey("paper.id", ondelete="CASCADE"), nullable=False)
    )
    topic_id: int | None = Field(
        default=None,
        sa_column=Column(Integer, ForeignKey("topic.id", ondelete="SET NULL")),
        description="The interest it was shown under",
    )
    created_at: datetime = Field(default_factory=utcnow)


class BounceKind(StrEnum):
    hard = "hard"  # the mailbox does not exist (5.x.x DSN, a relay's permanent bounce)
    soft = "soft"  # full mailbox, greylisting, a transient 4.x.x
    complaint = "complaint"  # the reader pressed "spam" (ARF, a relay's complaint event)


class BounceEvent(SQLModel, table=True):
    """A bounce or complaint report that arrived after the SMTP session (issue 14): kept once
    (by `fingerprint`), acted on once, shown to the operator."""

    id: int | None = Field(default=None, primary_key=True)
    fingerprint: str = Field(
        unique=True, max_length=64, description="SHA-256 of what identifies the report"
    )
    source: str = Field(max_length=20, description="dsn, arf, ses, sendgrid, postmark")
    kind: BounceKind = Field(sa_type=String(10))
    recipient: str = Field(index=True, max_length=320)
    subscriber_id: int | None = Field(
        default=None,
        sa_column=Column(Integer, ForeignKey("subscriber.id", ondelete="SET NULL"), index=True),
    )
    message_id: str | None = Field(default=None, max_length=250)
    status_code: str | None = Field(default=None, max_length=20, description="e.g. 5.1.1")
    detail: str | None = Field(default=None, sa_column=Column(Text))
    action: str = Field(
        max_length=20, description="What it did: suspended, unsubscribed, scored, ignored"
    )
    received_at: datetime = Field(default_factory=utcnow, index=True)


class OperatorRole(StrEnum):
    viewer = "read-only"
    admin = "admin"


class Operator(SQLModel, table=True):
    """A person who runs papermail: logs in to /admin (argon2 hash, optional TOTP)."""

    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(unique=True, max_length=100)
    password_hash: str = Field(max_length=200)
    role: OperatorRole = Field(default=OperatorRole.viewer, sa_type=String(10))
    totp_secret: str | None = Field(default=None, max_length=64)
    totp_last_step: int | None = Field(
        default=None, description="The 30 s step of the last code accepted: never accepted twice"
    )
    failed_logins: int = 0
    locked_until: datetime | None = None
    last_login_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)


class JobRun(SQLModel, table=True):
    """One run of a pipeline stage (ingest per source, score, dispatch, send): when it ran,
    what it counted, what failed. The console and `papermail doctor` read them."""

    id: int | None = Field(default=None, primary_key=True)
    stage: str = Field(index=True, max_length=20)
    source: str | None = Field(default=None, max_length=200, description="Ingest: the source")
    started_at: datetime = Field(default_factory=utcnow, index=True)
    finished_at: datetime | None = None
    ok: bool | None = None
    counts: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    error: str | None = Field(default=None, sa_column=Column(Text))

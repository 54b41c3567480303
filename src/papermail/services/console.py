"""What the operator console shows, read-only: today's job, the last 30 days, feedback per day,
sources, bounce and complaint reports. Each function takes a session and returns plain data;
the web layer only renders it.

Days are UTC days. Timestamps are grouped by day in SQL (`utc_day`), so a month of deliveries or
ratings is never loaded row by row.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from math import ceil
from typing import Any, Generic, TypeVar

from sqlalchemy import Date, and_, case, cast, func
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Session, col, select

from papermail.models import (
    BounceEvent,
    BounceKind,
    Delivery,
    DeliveryStatus,
    Digest,
    JobRun,
    Paper,
    Rating,
    SavedPaper,
    Subscriber,
)
from papermail.services.status import Problem, day_status

HISTORY_DAYS = 30
STAGES = ("ingest", "score", "dispatch", "send")  # the pipeline's order
T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a long list (1-based `number`)."""

    items: list[T]
    number: int
    per_page: int
    total: int

    @property
    def pages(self) -> int:
        return max(1, ceil(self.total / self.per_page))

    @property
    def first_item(self) -> int:
        return (self.number - 1) * self.per_page + 1 if self.total else 0

    @property
    def last_item(self) -> int:
        return min(self.total, self.number * self.per_page)


def page_bounds(number: int, per_page: int, total: int) -> tuple[int, int]:
    """The page number clamped to what exists, and the row offset it starts at."""
    number = min(max(1, number), max(1, ceil(total / per_page)))
    return number, (number - 1) * per_page


def day_span(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time(), tzinfo=UTC)
    return start, start + timedelta(days=1)


def utc_day(column: Any, dialect: str) -> ColumnElement:
    """The UTC calendar day of a timestamp column, in SQL. SQLite keeps UTC text; PostgreSQL a
    timestamptz, whose date depends on the session zone unless converted."""
    if dialect == "postgresql":
        return cast(func.timezone("UTC", column), Date)
    return func.date(column)


def _as_date(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


def _per_day(session: Session, column: Any, since: datetime, *where: Any) -> dict[date, int]:
    """How many rows per UTC day of `column` from `since` on."""
    day = utc_day(column, session.get_bind().dialect.name)
    rows = session.exec(
        select(day, func.count()).where(column >= since, *where).group_by(day)  # type: ignore[call-overload]
    ).all()
    return {_as_date(d): n for d, n in rows}


# --- Today's job ---------------------------------------------------------------------------


@dataclass(frozen=True)
class StageRun:
    stage: str
    source: str | None
    started_at: datetime
    finished_at: datetime | None
    ok: bool | None
    counts: dict[str, Any]
    error: str | None
    runs: int = 1  # runs of this stage (and source) that day

    @property
    def seconds(self) -> float | None:
        if self.finished_at is None:
            return None
        return round((self.finished_at - self.started_at).total_seconds(), 1)

    @property
    def state(self) -> str:
        return {True: "ok", False: "error"}.get(self.ok, "running")  # type: ignore[arg-type]


def _run(row: JobRun, runs: int = 1) -> StageRun:
    return StageRun(
        stage=row.stage,
        source=row.source,
        started_at=row.started_at,
        finished_at=row.finished_at,
        ok=row.ok,
        counts=dict(row.counts or {}),
        error=row.error,
        runs=runs,
    )


@dataclass
class Dashboard:
    day: date
    papers: int  # first seen that day
    scored: int  # subscribers with a digest row for the day (matched or not)
    mailed: int  # digests with a delivery
    deliveries: dict[str, int]  # sent, retrying, waiting, sending, failed, bounced, cancelled
    runs: list[StageRun]  # the last run per stage (and ingest source) that day
    problems: list[Problem] = field(default_factory=list)


def dashboard(session: Session, day: date) -> Dashboard:
    """Today's job: what was ingested, scored and sent, and when each stage last ran."""
    start, end = day_span(day)
    status = day_status(session, day, problems=20)
    retrying = session.exec(
        select(func.count())
        .select_from(Delivery)
        .join(Digest, col(Digest.id) == Delivery.digest_id)
        .where(
            Digest.issue_date == day,
            Delivery.status == DeliveryStatus.pending,
            Delivery.attempts > 0,
        )
    ).one()
    counts = status.counts
    deliveries = {
        "sent": counts["sent"],
        "retrying": retrying,
        "waiting": counts["pending"] - retrying,
        "sending": counts["sending"],
        "failed": counts["failed"],
        "bounced": counts["bounced"],
        "cancelled": counts["cancelled"],
    }
    papers = session.exec(
        select(func.count())
        .select_from(Paper)
        .where(col(Paper.first_seen_at) >= start, col(Paper.first_seen_at) < end)
    ).one()
    return Dashboard(
        day=day,
        papers=papers,
        scored=status.digests,
        mailed=sum(counts.values()),
        deliveries=deliveries,
        runs=stage_runs(session, start, end),
        problems=status.problems,
    )


def stage_runs(session: Session, start: datetime, end: datetime) -> list[StageRun]:
    """The latest run of each stage (each source, for ingest) started in [start, end), in
    pipeline order, with how many runs there were."""
    rows = session.exec(
        select(JobRun)
        .where(col(JobRun.started_at) >= start, col(JobRun.started_at) < end)
        .order_by(col(JobRun.started_at).desc(), col(JobRun.id).desc())
    ).all()
    latest: dict[tuple[str, str], JobRun] = {}
    runs: dict[tuple[str, str], int] = defaultdict(int)
    for row in rows:
        key = (row.stage, row.source or "")
        latest.setdefault(key, row)
        runs[key] += 1

    def order(key: tuple[str, str]) -> tuple[int, str]:
        stage, source = key
        return (STAGES.index(stage) if stage in STAGES else len(STAGES), f"{stage} {source}")

    return [_run(latest[key], runs[key]) for key in sorted(latest, key=order)]


# --- The last 30 days ------------------------------------------------------------------------


@dataclass(frozen=True)
class DayCounts:
    day: date
    sent: int
    failed: int  # failed and bounced
    joined: int  # subscriptions confirmed (or added confirmed)
    left: int  # unsubscribes


def _window(end: date, days: int) -> tuple[list[date], datetime]:
    first = end - timedelta(days=days - 1)
    return [first + timedelta(days=i) for i in range(days)], day_span(first)[0]


def _sent_by_issue(session: Session, first: date, last: date) -> dict[tuple[date, str], int]:
    rows = session.exec(
        select(Digest.issue_date, Delivery.status, func.count())
        .join(Digest, col(Digest.id) == Delivery.digest_id)
        .where(Digest.issue_date >= first, Digest.issue_date <= last)
        .group_by(col(Digest.issue_date), col(Delivery.status))
    ).all()
    return {(_as_date(d), str(s)): n for d, s, n in rows}


def history(session: Session, end: date, days: int = HISTORY_DAYS) -> list[DayCounts]:
    """Per day up to `end`: digests sent and failed or bounced (by issue date), subscriptions
    confirmed (subscribers added confirmed, by the CLI: the day they were added) and
    unsubscribes. Deleted subscribers are no longer counted."""
    span, since = _window(end, days)
    mail = _sent_by_issue(session, span[0], end)
    confirmed = func.coalesce(col(Subscriber.confirmed_at), col(Subscriber.created_at))
    joined = _per_day(session, confirmed, since, col(Subscriber.confirmed).is_(True))
    left = _per_day(session, col(Subscriber.unsubscribed_at), since)
    return [
        DayCounts(
            day=d,
            sent=mail.get((d, "sent"), 0),
            failed=mail.get((d, "failed"), 0) + mail.get((d, "bounced"), 0),
            joined=joined.get(d, 0),
            left=left.get(d, 0),
        )
        for d in span
    ]


# --- Feedback: the online quality signal -----------------------------------------------------


@dataclass(frozen=True)
class FeedbackDay:
    day: date
    sent: int
    more: int
    less: int
    saves: int

    def per_100(self, count: int) -> float | None:
        """Per 100 digests sent that day (None when none were sent)."""
        return round(100 * count / self.sent, 1) if self.sent else None


def feedback(session: Session, end: date, days: int = HISTORY_DAYS) -> list[FeedbackDay]:
    """Per day: "more like this", "less like this" and saves given that day, and digests
    sent that day (by issue date) to turn them into rates."""
    span, since = _window(end, days)
    mail = _sent_by_issue(session, span[0], end)
    more = _per_day(session, col(Rating.created_at), since, Rating.value > 0)
    less = _per_day(session, col(Rating.created_at), since, Rating.value < 0)
    saves = _per_day(session, col(SavedPaper.created_at), since)
    return [
        FeedbackDay(d, mail.get((d, "sent"), 0), more.get(d, 0), less.get(d, 0), saves.get(d, 0))
        for d in span
    ]


# --- Sources ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceSummary:
    source: str
    last: StageRun
    last_ok_at: datetime | None
    runs: int  # in the last 30 days
    errors: int  # of those, failed


def sources(session: Session, now: datetime, days: int = HISTORY_DAYS) -> list[SourceSummary]:
    """Per ingest source: its last fetch (ok or the error, what it counted), its last success,
    and its runs and failures over the last `days` days."""
    ingest = JobRun.stage == "ingest"
    newest = (
        select(JobRun.source, func.max(JobRun.started_at).label("at"))
        .where(ingest)
        .group_by(col(JobRun.source))
        .subquery()
    )
    last_rows = session.exec(
        select(JobRun)
        .join(newest, and_(JobRun.source == newest.c.source, JobRun.started_at == newest.c.at))
        .where(ingest)
        .order_by(col(JobRun.source), col(JobRun.id).desc())
    ).all()
    last_ok = dict(
        session.exec(  # type: ignore[arg-type]
            select(JobRun.source, func.max(JobRun.started_at))
            .where(ingest, JobRun.ok == True)  # noqa: E712
            .group_by(col(JobRun.source))
        ).all()
    )
    stats = _source_stats(session, now - timedelta(days=days))
    seen: set[str] = set()
    summaries = []
    for row in last_rows:
        source = row.source or ""
        if source in seen:
            continue
        seen.add(source)
        runs, errors = stats.get(source, (0, 0))
        summaries.append(SourceSummary(source, _run(row), last_ok.get(row.source), runs, errors))
    return summaries


def _source_stats(session: Session, since: datetime) -> dict[str, tuple[int, int]]:
    failed = func.sum(case((JobRun.ok == False, 1), else_=0))  # noqa: E712
    rows = session.exec(
        select(JobRun.source, func.count(), failed)  # type: ignore[call-overload]
        .where(JobRun.stage == "ingest", col(JobRun.started_at) >= since)
        .group_by(col(JobRun.source))
    ).all()
    return {source or "": (runs, int(errors or 0)) for source, runs, errors in rows}


# --- Bounce and complaint reports ------------------------------------------------------------


def bounce_events(
    session: Session,
    *,
    kind: BounceKind | None = None,
    source: str = "",
    number: int = 1,
    per_page: int = 50,
) -> Page[BounceEvent]:
    """Reports newest first, optionally of one kind or from one source."""
    where = []
    if kind is not None:
        where.append(BounceEvent.kind == kind)
    if source:
        where.append(BounceEvent.source == source.replace("\x00", ""))
    total = session.exec(select(func.count()).select_from(BounceEvent).where(*where)).one()
    number, offset = page_bounds(number, per_page, total)
    items = session.exec(
        select(BounceEvent)
        .where(*where)
        .order_by(col(BounceEvent.received_at).desc(), col(BounceEvent.id).desc())
        .offset(offset)
        .limit(per_page)
    ).all()
    return Page(list(items), number, per_page, total)


def bounce_sources(session: Session) -> list[str]:
    """The sources reports came from so far (for the filter)."""
    rows = session.exec(select(BounceEvent.source).distinct().order_by(col(BounceEvent.source)))
    return list(rows)


def events_of(session: Session, subscriber_id: int, limit: int = 50) -> Sequence[BounceEvent]:
    return session.exec(
        select(BounceEvent)
        .where(BounceEvent.subscriber_id == subscriber_id)
        .order_by(col(BounceEvent.received_at).desc(), col(BounceEvent.id).desc())
        .limit(limit)
    ).all()

"""Celery tasks: each a few lines handing ids and dates to one service call."""

from __future__ import annotations

from dataclasses import asdict
from datetime import date

from celery import chain, group

from papermail.db import session_scope
from papermail.errors import DeliveryError
from papermail.models import parse_moment, utcnow
from papermail.services import digests
from papermail.services.ingest import ingest_sources
from papermail.services.schedule import due_groups
from workers import runtime
from workers.app import celery_app

SEND_CHUNK = 200


def _chunks(ids: list[int], size: int = SEND_CHUNK) -> list[list[int]]:
    return [ids[i : i + size] for i in range(0, len(ids), size)]


@celery_app.task(name="workers.tasks.ingest")
def ingest(sources: list[str], issue_date: str | None = None) -> list[dict]:
    day = date.fromisoformat(issue_date) if issue_date else None
    reports = ingest_sources(runtime.engine(), runtime.settings(), sources, day=day)
    return [asdict(report) for report in reports]


@celery_app.task(name="workers.tasks.score_day")
def score_day(issue_date: str, subscriber_ids: list[int] | None = None) -> list[int]:
    """Store the day's digests; returns every digest of that day still waiting to be sent."""
    day = date.fromisoformat(issue_date)
    engine, settings = runtime.engine(), runtime.settings()
    digests.score_day(engine, settings, issue_date=day, subscriber_ids=subscriber_ids)
    with session_scope(engine) as session:
        return digests.pending_digest_ids(session, issue_date=day)


@celery_app.task(
    name="workers.tasks.send_digests",
    autoretry_for=(DeliveryError,),
    retry_backoff=5,
    retry_backoff_max=600,
    retry_jitter=True,
    max_retries=8,
)
def send_digests(digest_ids: list[int]) -> dict:
    """Send a chunk over one connection; a temporary failure retries the chunk with backoff."""
    report = digests.send_digests(runtime.engine(), runtime.settings(), digest_ids)
    if report.retry:
        raise DeliveryError(f"{report.retry} digests hit a temporary failure: {report.errors[0]}")
    return asdict(report)


@celery_app.task(name="workers.tasks.dispatch_sends")
def dispatch_sends(digest_ids: list[int]) -> int:
    """Fan the sends out over the workers in chunks; returns how many chunks went out."""
    chunks = _chunks(sorted(set(digest_ids)))
    if chunks:
        group(send_digests.si(chunk) for chunk in chunks).apply_async()
    return len(chunks)


@celery_app.task(name="workers.tasks.daily_pipeline")
def daily_pipeline(issue_date: str | None = None, sources: list[str] | None = None) -> str:
    """ingest -> score the day -> send, as one chain; returns the chain's id."""
    day = issue_date or utcnow().date().isoformat()
    pipeline = chain(
        ingest.si(sources or list(runtime.settings().daily_sources), day),
        score_day.si(day),
        dispatch_sends.s(),
    )
    return pipeline.apply_async().id


@celery_app.task(name="workers.tasks.send_due")
def send_due(now: str | None = None) -> dict[str, int]:
    """Score and send for everyone whose local send time has come; safe to run repeatedly."""
    moment = parse_moment(now) if now else utcnow()
    engine, settings = runtime.engine(), runtime.settings()
    with session_scope(engine) as session:
        groups = due_groups(session, moment)
    for issue_date, ids in groups.items():
        digests.score_day(engine, settings, issue_date=issue_date, subscriber_ids=ids, now=moment)
    with session_scope(engine) as session:
        pending = digests.pending_digest_ids(session)
    chunks = dispatch_sends(pending)
    return {"due": sum(len(ids) for ids in groups.values()), "chunks": chunks}

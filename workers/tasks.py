"""Celery tasks: each a few lines handing ids and dates to one service call.

The flow of a day: beat's `ingest_daily` stores papers; beat's `send_due` (the dispatcher) finds
who is due and queues `score_and_send` per batch of subscribers; that stores their digests and
fans the sends out as `send_digests` chunks, each over one SMTP connection.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import date

from celery import Task, chain, group

from papermail.db import session_scope
from papermail.errors import DeliveryError
from papermail.models import parse_moment, utcnow
from papermail.services import delivery, digests, schedule
from papermail.services.ingest import ingest_sources
from papermail.services.jobs import Stage, job_run
from workers import runtime
from workers.app import celery_app


def _chunks(ids: list[int], size: int) -> list[list[int]]:
    return [ids[i : i + size] for i in range(0, len(ids), size)]


@celery_app.task(name="workers.tasks.ingest")
def ingest(sources: list[str], issue_date: str | None = None) -> list[dict]:
    day = date.fromisoformat(issue_date) if issue_date else None
    reports = ingest_sources(runtime.engine(), runtime.settings(), sources, day=day)
    return [asdict(report) for report in reports]


@celery_app.task(name="workers.tasks.ingest_daily")
def ingest_daily() -> list[dict]:
    """Beat's daily job: the configured sources, today (UTC)."""
    return ingest(list(runtime.settings().daily_sources), utcnow().date().isoformat())


@celery_app.task(name="workers.tasks.score_day")
def score_day(issue_date: str, subscriber_ids: list[int] | None = None) -> list[int]:
    """Store the day's digests; returns every digest of that day still waiting to be sent."""
    day = date.fromisoformat(issue_date)
    engine, settings = runtime.engine(), runtime.settings()
    report = digests.score_day(engine, settings, issue_date=day, subscriber_ids=subscriber_ids)
    days = {day, *report.issue_dates}  # a subscriber still on yesterday gets yesterday's issue
    with session_scope(engine) as session:
        return sorted({i for d in days for i in digests.pending_digest_ids(session, issue_date=d)})


@celery_app.task(bind=True, name="workers.tasks.send_digests", max_retries=None)
def send_digests(self: Task, digest_ids: list[int]) -> dict:
    """Send a chunk over one connection; after a temporary failure, retry what is left of it
    with exponential backoff and jitter (in-process runs leave it pending for the next run)."""
    settings = runtime.settings()
    report = delivery.send_digests(runtime.engine(), settings, digest_ids)
    if report.retry_ids and not self.request.is_eager:
        raise self.retry(
            args=[report.retry_ids],
            countdown=delivery.retry_delay(settings, self.request.retries),
            max_retries=settings.send_max_retries,
            exc=DeliveryError(report.errors[-1]),
        )
    return asdict(report)


@celery_app.task(name="workers.tasks.dispatch_sends")
def dispatch_sends(digest_ids: list[int]) -> int:
    """Fan the sends out over the workers in chunks; returns how many chunks went out."""
    chunks = _chunks(sorted(set(digest_ids)), runtime.settings().send_chunk_size)
    if chunks:
        group(send_digests.si(chunk) for chunk in chunks).apply_async()
    return len(chunks)


@celery_app.task(name="workers.tasks.score_and_send")
def score_and_send(issue_date: str, subscriber_ids: list[int], now: str) -> dict[str, int]:
    """Rank one batch of due subscribers at once, store their digests, fan out the sends."""
    report = digests.score_day(
        runtime.engine(),
        runtime.settings(),
        issue_date=date.fromisoformat(issue_date),
        subscriber_ids=subscriber_ids,
        now=parse_moment(now),
    )
    return {"stored": len(report.to_send), "chunks": dispatch_sends(report.to_send)}


@celery_app.task(name="workers.tasks.daily_pipeline")
def daily_pipeline(issue_date: str | None = None, sources: list[str] | None = None) -> str:
    """ingest -> score the day -> send, as one chain, for everyone at once (`run-daily`)."""
    day = issue_date or utcnow().date().isoformat()
    pipeline = chain(
        ingest.si(sources or list(runtime.settings().daily_sources), day),
        score_day.si(day),
        dispatch_sends.s(),
    )
    return pipeline.apply_async().id


@celery_app.task(name="workers.tasks.send_due")
def send_due(now: str | None = None) -> dict:
    """The dispatcher: queue scoring for whoever is due at `now` (default: the real time) and
    sends for stalled deliveries; safe to run any number of times."""
    moment = parse_moment(now) if now else utcnow()
    with job_run(runtime.engine(), Stage.dispatch) as run:
        plan = schedule.plan_dispatch(runtime.engine(), runtime.settings(), now=moment)
        scoring = [
            score_and_send.delay(day.isoformat(), ids, moment.isoformat()).id
            for day, ids in plan.batches
        ]
        chunks = dispatch_sends(plan.recovered.digest_ids)
        recovered = len(plan.recovered.digest_ids)
        run.count(due=plan.due, batches=len(scoring), recovered=recovered, chunks=chunks)
    return {"due": plan.due, "scoring": scoring, "recovered": recovered, "chunks": chunks}


@celery_app.task(name="workers.tasks.poll_bounces")
def poll_bounces() -> dict:
    """Beat's bounce-mailbox poll (BOUNCE_IMAP_HOST): record the reports that came in."""
    from papermail.bounce_poll import poll_mailbox

    report = poll_mailbox(runtime.engine(), runtime.settings())
    return {"read": report.read, "reports": report.reports, "left": report.left}

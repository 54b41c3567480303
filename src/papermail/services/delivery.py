"""Send stored digests exactly once each, record what the mail server said, recover lost sends.

A Delivery moves `pending -> sending -> sent`, or to `bounced` (the server refused the recipient
for good, 5xx at RCPT), `failed` (any other permanent refusal), `cancelled` (the subscriber
left or was suspended before it went out), or back to `pending` (a temporary one: 4xx, server
down; the send task retries with backoff). Every move is a
compare-and-set UPDATE: the claim takes `pending` rows and counts an attempt, and every later
move checks (`sending`, that attempt number), so a duplicated or retried task never claims a
digest twice and a worker whose claim was taken over never moves it.

A chunk at a time. A send task's chunk costs a few statements, not three transactions per
digest: one transaction reads the chunk's digests, subscribers and Message-IDs, reads all their
papers, and claims every sendable digest in one UPDATE (`... WHERE status = 'pending' AND
digest_id IN (...) RETURNING digest_id, attempts`). Each message is then rendered and sent over
one SMTP connection, and `sent` is recorded for several at once, one UPDATE each time: when
SEND_RECORD_BATCH sent ones wait, before the next message once the oldest has waited
RECORD_WAIT_SECONDS, and when the chunk ends (a failure included). Claimed digests the chunk
does not get to (a temporary failure ended it, the rate limiter is away, a bug) go back to
`pending` at once; a chunk sent slowly enough (SMTP_RATE_LIMIT) renews its claims' lease.

Crash safety. The claim is committed before talking SMTP, `sent` after the server accepted the
message. A worker killed in between leaves its claimed rows `sending`: the messages the relay
accepted whose `sent` was not committed yet (at most SEND_RECORD_BATCH, accepted within the
last RECORD_WAIT_SECONDS plus one message's turn), and the rest of its chunk, never sent. Once
a row has been `sending` longer than SEND_LEASE_SECONDS, `recover_stalled` (run by every
dispatcher tick) puts it back to `pending` and queues it again. For the never-sent rest that is
its first copy, only later; for the accepted-unrecorded ones it is a second copy, under the same
stored Message-ID, the key mail stores and relays drop duplicates by (a relay commits once it
has the final "." of DATA). So a killed worker process causes at most SEND_RECORD_BATCH second
copies, never a second digest: SMTP is at-least-once at this edge, and no sender can close the
window without a receiver-side dedupe; batching widens it from one UPDATE to a few messages in
exchange for the commits it saves.
"""

from __future__ import annotations

import logging
import random
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import and_, case, tuple_, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, or_, select

from papermail import metrics
from papermail.db import session_scope
from papermail.emails import DigestEntry
from papermail.errors import DeliveryError
from papermail.logfmt import log_event
from papermail.mailer import MailConnection, Mailer, OutgoingMail, RecipientRefused, make_mailer
from papermail.models import Delivery, DeliveryStatus, Digest, Subscriber, utcnow
from papermail.services.digests import compose_mail, load_entries_many
from papermail.services.jobs import Run, Stage, job_run
from papermail.settings import Settings
from papermail.throttle import RateLimiter, smtp_limiter

log = logging.getLogger(__name__)

Status = DeliveryStatus
RECORD_WAIT_SECONDS = 0.5  # longest a sent message waits for its `sent` (but one message's turn)
LEFT = "not sent: the subscriber left or was suspended"


@dataclass
class SendReport:
    sent: int = 0
    retry: int = 0
    failed: int = 0
    bounced: int = 0
    cancelled: int = 0  # the subscriber left or was suspended since the digest was stored
    skipped: int = 0
    suspended: int = 0
    errors: list[str] = field(default_factory=list)
    retry_ids: list[int] = field(default_factory=list)  # to try again later, in order


def retry_delay(settings: Settings, retries: int) -> float:
    """Seconds before retry number `retries + 1`: exponential, capped, with "equal jitter"
    (between half and all of it), so workers that failed together do not return together."""
    ceiling = min(settings.send_retry_backoff_max, settings.send_retry_backoff * 2**retries)
    return random.uniform(ceiling / 2, ceiling)


@dataclass(frozen=True)
class _Claim:
    """A delivery this worker claimed, with what its mail is made of."""

    digest: Digest
    subscriber: Subscriber
    message_id: str
    attempt: int  # the attempt the claim counted: every later move checks it
    entries: list[DigestEntry]

    @property
    def digest_id(self) -> int:
        return self.digest.id  # type: ignore[return-value]


def _mine(claims: Sequence[_Claim]):
    """Still `sending` under these claims of this worker (attempt numbers tell claims apart)."""
    ours = [(claim.digest_id, claim.attempt) for claim in claims]
    return and_(
        Delivery.status == Status.sending, tuple_(Delivery.digest_id, Delivery.attempts).in_(ours)
    )


def _fields(claim: _Claim, **extra: object) -> dict[str, object]:
    return {
        "digest_id": claim.digest_id,
        "subscriber_id": claim.subscriber.id,
        "attempt": claim.attempt,
        **extra,
    }


def _from_pending(session: Session, ids: Sequence[int], returning: Sequence, **values) -> list:
    """One compare-and-set from `pending` over `ids`; the `returning` columns of rows it moved."""
    if not ids:
        return []
    return session.exec(  # type: ignore[call-overload]
        update(Delivery)
        .where(col(Delivery.digest_id).in_(ids), Delivery.status == Status.pending)
        .values(updated_at=utcnow(), **values)
        .returning(*returning)
    ).all()


def _claim(engine: Engine, ids: Sequence[int], report: SendReport) -> list[_Claim]:
    """Read the chunk and claim what can be sent, in one transaction of four statements.

    Pending deliveries of subscribers who left or were suspended since become `cancelled`;
    the rest are claimed at once. What is not pending (sent, claimed by another worker, unknown) is
    counted as skipped."""
    with session_scope(engine) as session:
        rows = session.exec(
            select(Delivery.digest_id, Delivery.message_id, Digest, Subscriber)
            .join(Digest, col(Digest.id) == Delivery.digest_id)
            .join(Subscriber, col(Subscriber.id) == Digest.subscriber_id)
            .where(col(Delivery.digest_id).in_(ids), Delivery.status == Status.pending)
        ).all()
        gone = [digest_id for digest_id, _, _, subscriber in rows if not subscriber.active]
        ready = [row for row in rows if row[3].active]
        ready_ids = [digest_id for digest_id, *_ in ready]
        entries = load_entries_many(session, ready_ids) if ready else {}
        cancelled = sorted(
            digest_id
            for (digest_id,) in _from_pending(
                session, gone, [Delivery.digest_id], status=Status.cancelled, last_error=LEFT
            )
        )
        attempts = dict(
            _from_pending(
                session,
                ready_ids,
                [Delivery.digest_id, Delivery.attempts],
                status=Status.sending,
                attempts=Delivery.attempts + 1,
            )
        )
    for digest_id in cancelled:
        log_event(log, "delivery.cancelled", digest_id=digest_id, error=LEFT)
    order = {digest_id: position for position, digest_id in enumerate(ids)}
    claims = sorted(
        (
            _Claim(digest, subscriber, message_id, attempts[digest_id], entries.get(digest_id, []))
            for digest_id, message_id, digest, subscriber in ready
            if digest_id in attempts
        ),
        key=lambda claim: order[claim.digest_id],
    )
    report.cancelled += len(cancelled)
    report.skipped += len(ids) - len(cancelled) - len(claims)
    return claims


def _move(
    engine: Engine, claims: Sequence[_Claim], status: Status, error: str | None = None
) -> set[int]:
    """One compare-and-set over claims still ours; returns the digest ids it moved. Moving to
    `sending` renews their lease; an `error` is kept as the reason."""
    if not claims:
        return set()
    values: dict = {"status": status, "updated_at": utcnow()}
    if error is not None:
        values["last_error"] = error
    with session_scope(engine) as session:
        moved = session.exec(  # type: ignore[call-overload]
            update(Delivery).where(_mine(claims)).values(**values).returning(Delivery.digest_id)
        )
        return set(moved.scalars())


def _record_sent(engine: Engine, claims: Sequence[_Claim]) -> set[int]:
    """`sent` for a batch, in a transaction of one UPDATE: until it commits, a crash makes
    resends. Also from `pending`: a lease recovery nobody acted on yet must not cause a resend.
    The subscribers' bounce counts go back to zero afterwards, outside the window."""
    now = utcnow()
    ids = [claim.digest_id for claim in claims]
    with session_scope(engine) as session:
        recorded = session.exec(  # type: ignore[call-overload]
            update(Delivery)
            .where(
                or_(
                    _mine(claims),
                    and_(col(Delivery.digest_id).in_(ids), Delivery.status == Status.pending),
                )
            )
            .values(status=Status.sent, sent_at=now, updated_at=now, last_error=None)
            .returning(Delivery.digest_id)
        )
        recorded = set(recorded.scalars())
    with session_scope(engine) as session:
        session.exec(  # type: ignore[call-overload]
            update(Subscriber)
            .where(
                col(Subscriber.id).in_([claim.subscriber.id for claim in claims]),
                Subscriber.hard_bounces > 0,
            )
            .values(hard_bounces=0)
        )
    return recorded


class _SentLog:
    """Sent messages waiting for their `sent`: written SEND_RECORD_BATCH at a time, or once the
    oldest has waited RECORD_WAIT_SECONDS, so that a crash can repeat only that many."""

    def __init__(self, engine: Engine, batch: int) -> None:
        self.engine, self.batch = engine, batch
        self.waiting: list[_Claim] = []
        self.oldest = 0.0

    def add(self, claim: _Claim) -> None:
        if not self.waiting:
            self.oldest = time.monotonic()
        self.waiting.append(claim)
        if len(self.waiting) >= self.batch:
            self.flush()

    def flush(self, *, late_only: bool = False) -> None:
        if not self.waiting:
            return
        if late_only and time.monotonic() - self.oldest < RECORD_WAIT_SECONDS:
            return
        claims, self.waiting = self.waiting, []
        recorded = _record_sent(self.engine, claims)
        for claim in claims:
            if claim.digest_id not in recorded:  # the lease ran out and another worker has it
                log_event(log, "delivery.sent_after_reclaim", logging.WARNING, **_fields(claim))


def _record_bounce(engine: Engine, settings: Settings, claim: _Claim, error: str) -> bool:
    """`bounced`, one more hard bounce for the subscriber, suspended at BOUNCE_LIMIT in a row.
    Returns whether this bounce suspended them."""
    now = utcnow()
    subscriber_id = claim.subscriber.id
    suspended_at = select(Subscriber.suspended_at).where(Subscriber.id == subscriber_id)
    with session_scope(engine) as session:
        moved = session.exec(  # type: ignore[call-overload]
            update(Delivery)
            .where(_mine([claim]))
            .values(status=Status.bounced, last_error=error, updated_at=now)
        )
        if moved.rowcount != 1:
            return False
        before = session.exec(suspended_at).one()
        session.exec(  # type: ignore[call-overload]
            update(Subscriber)
            .where(col(Subscriber.id) == subscriber_id)
            .values(
                hard_bounces=Subscriber.hard_bounces + 1,
                suspended_at=case(
                    (
                        and_(
                            col(Subscriber.suspended_at).is_(None),
                            Subscriber.hard_bounces + 1 >= settings.bounce_limit,
                        ),
                        now,
                    ),
                    else_=Subscriber.suspended_at,
                ),
            )
        )
        return before is None and session.exec(suspended_at).one() is not None


@dataclass(frozen=True)
class _Outcome:
    status: Status
    reason: str | None = None
    suspended: bool = False


class _ChunkSender:
    """Sends a chunk's claims over one connection, in order; what it does not get to goes back
    to `pending` when it stops, however it stops."""

    def __init__(
        self, engine: Engine, settings: Settings, claims: Sequence[_Claim], report: SendReport
    ) -> None:
        self.engine, self.settings, self.report = engine, settings, report
        self.todo = deque(claims)
        self.sent = _SentLog(engine, settings.send_record_batch)
        self.renewed = time.monotonic()

    def run(self, connection: MailConnection, limiter: RateLimiter) -> None:
        try:
            while self.todo:
                self._renew_if_due()
                self.sent.flush(late_only=True)
                if not self._next(connection, limiter):
                    break
        finally:
            self.sent.flush()
            _move(self.engine, self.todo, Status.pending)

    def _renew_if_due(self) -> None:
        """Halfway through the lease (a chunk held back by SMTP_RATE_LIMIT), renew it, so that
        recovery never hands out a digest this worker is still going to send."""
        if time.monotonic() - self.renewed < self.settings.send_lease_seconds / 2:
            return
        still = _move(self.engine, self.todo, Status.sending)
        self.renewed = time.monotonic()
        self.report.skipped += len(self.todo) - len(still)
        self.todo = deque(claim for claim in self.todo if claim.digest_id in still)

    def _next(self, connection: MailConnection, limiter: RateLimiter) -> bool:
        """Send the next claim and record what happened; False when the chunk must stop."""
        claim, report = self.todo[0], self.report
        try:
            mail = compose_mail(
                self.settings,
                claim.digest,
                claim.subscriber,
                message_id=claim.message_id,
                entries=claim.entries,
            )
        except Exception as exc:  # cannot render: it never will, so record it and go on
            reason = f"cannot compose: {type(exc).__name__}: {exc}"
            self.todo.popleft()
            report.failed += len(_move(self.engine, [claim], Status.failed, reason))
            report.errors.append(f"digest {claim.digest_id}: {reason}")
            log_event(log, "delivery.failed", logging.WARNING, **_fields(claim, error=reason))
            return True
        try:
            limiter.acquire()
        except DeliveryError as exc:
            report.errors.append(str(exc))
            report.retry_ids = [c.digest_id for c in self.todo]
            return False
        self.todo.popleft()
        outcome = self._send(claim, mail, connection)
        fields = _fields(claim, status=outcome.status, error=outcome.reason)
        if outcome.status == Status.sent:
            log_event(log, "delivery.sent", **fields)
            report.sent += 1
            return True
        log_event(log, f"delivery.{outcome.status}", logging.WARNING, **fields)
        report.errors.append(f"digest {claim.digest_id}: {outcome.reason}")
        if outcome.suspended:
            log_event(log, "subscriber.suspended", logging.WARNING, **_fields(claim))
            report.suspended += 1
        if outcome.status == Status.bounced:
            report.bounced += 1
            metrics.DIGESTS_BOUNCED.labels(metrics.smtp_reason(outcome.reason)).inc()
        elif outcome.status == Status.failed:
            report.failed += 1
        else:  # pending: a temporary failure ends this connection's chunk
            report.retry += 1
            report.retry_ids = [claim.digest_id, *(c.digest_id for c in self.todo)]
            return False
        return True

    def _send(self, claim: _Claim, mail: OutgoingMail, connection: MailConnection) -> _Outcome:
        """Send one claimed digest; a refusal is recorded at once, a success with the batch."""
        started = time.perf_counter()
        try:
            connection.send(mail)
            metrics.SEND_SECONDS.observe(time.perf_counter() - started)
        except DeliveryError as exc:
            reason = str(exc)
            if not exc.permanent:
                _move(self.engine, [claim], Status.pending, reason)
                return _Outcome(Status.pending, reason)
            if isinstance(exc, RecipientRefused):
                suspended = _record_bounce(self.engine, self.settings, claim, reason)
                return _Outcome(Status.bounced, reason, suspended)
            _move(self.engine, [claim], Status.failed, reason)
            return _Outcome(Status.failed, reason)
        except Exception as exc:  # a bug, not the server: say so in the delivery and stop
            _move(self.engine, [claim], Status.failed, f"{type(exc).__name__}: {exc}")
            raise
        self.sent.add(claim)
        return _Outcome(Status.sent)


def send_digests(
    engine: Engine,
    settings: Settings,
    digest_ids: Sequence[int],
    *,
    mailer: Mailer | None = None,
    limiter: RateLimiter | None = None,
) -> SendReport:
    """Send stored digests over one mail connection; each at most once, however often asked.

    A permanent refusal is recorded and the chunk goes on. A temporary one ends the chunk (the
    server is down or asks us to slow down): that digest and the ones not yet tried come back
    in `retry_ids` for the caller to retry after a backoff.
    """
    report = SendReport()
    with job_run(engine, Stage.send) as run:
        try:
            claims = _claim(engine, list(dict.fromkeys(digest_ids)), report)
            if claims:
                mailer = mailer or make_mailer(settings)
                limiter = limiter or smtp_limiter(settings)
                with mailer.connection() as connection:
                    _ChunkSender(engine, settings, claims, report).run(connection, limiter)
        finally:
            _account(run, report)
    return report


def _account(run: Run, report: SendReport) -> None:
    """A chunk's totals into its job run and the metrics: one call each, not one per digest."""
    run.count(
        sent=report.sent,
        retry=report.retry,
        failed=report.failed,
        bounced=report.bounced,
        cancelled=report.cancelled,
        skipped=report.skipped,
        suspended=report.suspended,
    )
    if (report.retry_ids or report.failed) and report.errors:
        run.fail(report.errors[-1])
    metrics.DIGESTS_SENT.inc(report.sent)
    metrics.DIGESTS_FAILED.inc(report.failed)
    metrics.DIGESTS_RETRIED.inc(report.retry)


@dataclass
class Recovered:
    reclaimed: list[int] = field(default_factory=list)  # were `sending`: their worker died
    requeued: list[int] = field(default_factory=list)  # were `pending` and nobody sent them

    @property
    def digest_ids(self) -> list[int]:
        return sorted({*self.reclaimed, *self.requeued})


def recover_stalled(
    engine: Engine, settings: Settings, *, now: datetime | None = None
) -> Recovered:
    """Deliveries nobody has moved for a lease: `sending` ones go back to `pending`, and both
    kinds are returned to be queued again (their task was lost with a worker or with Redis).

    Each is touched (updated_at), so the next tick does not queue it again before another lease.
    """
    now = now or utcnow()
    cutoff = now - timedelta(seconds=settings.send_lease_seconds)
    recovered = Recovered()
    with session_scope(engine) as session:
        for status, into in (
            (Status.sending, recovered.reclaimed),
            (Status.pending, recovered.requeued),
        ):
            stale = [Delivery.status == status, Delivery.updated_at < cutoff]
            values: dict = {"status": Status.pending, "updated_at": now}
            if status == Status.sending:
                values["last_error"] = "lease expired: the worker was lost while sending"
            rows = session.exec(  # type: ignore[call-overload]
                update(Delivery).where(*stale).values(**values).returning(Delivery.digest_id)
            )
            into.extend(sorted(rows.scalars()))
    for digest_id in recovered.reclaimed:
        log_event(log, "delivery.reclaimed", logging.WARNING, digest_id=digest_id, status="pending")
    if recovered.requeued:
        log_event(log, "delivery.requeued", logging.WARNING, count=len(recovered.requeued))
    return recovered

"""Send stored digests exactly once each, record what the mail server said, recover lost sends.

A Delivery moves `pending -> sending -> sent`, or to `bounced` (the server refused the recipient
for good, 5xx at RCPT), `failed` (any other permanent refusal), or back to `pending` (a
temporary one: 4xx, server down; the send task retries with backoff). Every move is a
compare-and-set UPDATE on (status, attempts), so a duplicated or retried task never claims a
digest twice.

Crash safety. The claim is committed before talking SMTP and `sent` right after the server
accepts DATA. A worker killed in between leaves the row in `sending`; once it has been there
longer than SEND_LEASE_SECONDS, `recover_stalled` (run by every dispatcher tick) puts it back
to `pending` and queues it again. That resend is a duplicate if the relay had taken the message:
a relay commits once it has the final "." of DATA, so the window runs from there to the commit
of `sent` (the relay's time to answer, plus one UPDATE; a few milliseconds against a fast
relay). SMTP is at-least-once at this edge: no sender can close the window without a
receiver-side dedupe. The resend carries the same stored Message-ID, the key mail stores and
relays drop duplicates by; a digest is never composed twice under two Message-IDs.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import and_, case, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import col, or_, select

from papermail.db import session_scope
from papermail.errors import DeliveryError
from papermail.logfmt import log_event
from papermail.mailer import MailConnection, Mailer, OutgoingMail, RecipientRefused, make_mailer
from papermail.models import Delivery, DeliveryStatus, Digest, Subscriber, utcnow
from papermail.services.digests import compose_mail
from papermail.settings import Settings
from papermail.throttle import RateLimiter, smtp_limiter

log = logging.getLogger(__name__)

Status = DeliveryStatus


@dataclass
class SendReport:
    sent: int = 0
    retry: int = 0
    failed: int = 0
    bounced: int = 0
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
class _Ready:
    """A pending delivery, its mail composed, and the attempt number it was read at."""

    digest_id: int
    subscriber_id: int
    attempts: int
    mail: OutgoingMail


def _prepare(engine: Engine, settings: Settings, digest_id: int) -> _Ready | str:
    """Compose the mail of a pending delivery; otherwise say why there is nothing to send."""
    with session_scope(engine) as session:
        row = session.exec(
            select(Delivery, Digest, Subscriber)
            .join(Digest, col(Digest.id) == Delivery.digest_id)
            .join(Subscriber, col(Subscriber.id) == Digest.subscriber_id)
            .where(Delivery.digest_id == digest_id)
        ).first()
        if row is None:
            return "no delivery"
        delivery, digest, subscriber = row
        if delivery.status != Status.pending:
            return f"already {delivery.status}"
        if not subscriber.active:  # unsubscribed or suspended since the digest was stored
            return "inactive"
        mail = compose_mail(session, settings, digest, delivery, subscriber)
        return _Ready(digest_id, subscriber.id, delivery.attempts, mail)  # type: ignore[arg-type]


def _move(
    engine: Engine,
    digest_id: int,
    *,
    where: Sequence,
    status: Status,
    error: str | None = None,
    attempts: int | None = None,
) -> bool:
    """One compare-and-set on a delivery; True if this call made the move."""
    now = utcnow()
    values: dict = {"status": status, "last_error": error, "updated_at": now}
    if status == Status.sent:
        values["sent_at"] = now
    if attempts is not None:
        values["attempts"] = attempts
    with session_scope(engine) as session:
        result = session.exec(  # type: ignore[call-overload]
            update(Delivery).where(col(Delivery.digest_id) == digest_id, *where).values(**values)
        )
        return result.rowcount == 1


def _mine(ready: _Ready) -> list:
    """Still `sending` under this worker's own claim (attempt numbers tell claims apart)."""
    return [Delivery.status == Status.sending, Delivery.attempts == ready.attempts + 1]


def _record_sent(engine: Engine, ready: _Ready) -> bool:
    """`sent`, in a transaction of one UPDATE: this is the window in which a crash makes a
    resend. Also from `pending`: a lease recovery nobody acted on yet must not cause a resend.
    The subscriber's bounce count goes back to zero afterwards, outside the window."""
    now = utcnow()
    with session_scope(engine) as session:
        result = session.exec(  # type: ignore[call-overload]
            update(Delivery)
            .where(
                col(Delivery.digest_id) == ready.digest_id,
                or_(and_(*_mine(ready)), Delivery.status == Status.pending),
            )
            .values(status=Status.sent, sent_at=now, updated_at=now, last_error=None)
        )
    with session_scope(engine) as session:
        session.exec(  # type: ignore[call-overload]
            update(Subscriber)
            .where(col(Subscriber.id) == ready.subscriber_id, Subscriber.hard_bounces > 0)
            .values(hard_bounces=0)
        )
    return result.rowcount == 1


def _record_bounce(engine: Engine, settings: Settings, ready: _Ready, error: str) -> bool:
    """`bounced`, one more hard bounce for the subscriber, suspended at BOUNCE_LIMIT in a row.
    Returns whether this bounce suspended them."""
    now = utcnow()
    suspended_at = select(Subscriber.suspended_at).where(Subscriber.id == ready.subscriber_id)
    with session_scope(engine) as session:
        moved = session.exec(  # type: ignore[call-overload]
            update(Delivery)
            .where(col(Delivery.digest_id) == ready.digest_id, *_mine(ready))
            .values(status=Status.bounced, last_error=error, updated_at=now)
        )
        if moved.rowcount != 1:
            return False
        before = session.exec(suspended_at).one()
        session.exec(  # type: ignore[call-overload]
            update(Subscriber)
            .where(col(Subscriber.id) == ready.subscriber_id)
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


def _fields(ready: _Ready, **extra: object) -> dict[str, object]:
    return {
        "digest_id": ready.digest_id,
        "subscriber_id": ready.subscriber_id,
        "attempt": ready.attempts + 1,
        **extra,
    }


@dataclass(frozen=True)
class _Outcome:
    status: Status
    reason: str | None = None
    suspended: bool = False


def _send_one(
    engine: Engine, settings: Settings, ready: _Ready, connection: MailConnection
) -> _Outcome:
    """Send a claimed delivery and record what the server said."""
    try:
        connection.send(ready.mail)
    except DeliveryError as exc:
        reason = str(exc)
        if not exc.permanent:
            _move(engine, ready.digest_id, where=_mine(ready), status=Status.pending, error=reason)
            return _Outcome(Status.pending, reason)
        if isinstance(exc, RecipientRefused):
            suspended = _record_bounce(engine, settings, ready, reason)
            return _Outcome(Status.bounced, reason, suspended)
        _move(engine, ready.digest_id, where=_mine(ready), status=Status.failed, error=reason)
        return _Outcome(Status.failed, reason)
    except Exception as exc:  # a bug, not the server: say so in the delivery and stop
        reason = f"{type(exc).__name__}: {exc}"
        _move(engine, ready.digest_id, where=_mine(ready), status=Status.failed, error=reason)
        raise
    if not _record_sent(engine, ready):  # the lease ran out mid-send and someone reclaimed it
        log_event(log, "delivery.sent_after_reclaim", logging.WARNING, **_fields(ready))
    return _Outcome(Status.sent)


def _fail_unsendable(engine: Engine, digest_id: int, reason: str) -> bool:
    """A pending delivery that can never be sent (cannot render, subscriber gone): `failed`."""
    pending = [Delivery.status == Status.pending]
    if not _move(engine, digest_id, where=pending, status=Status.failed, error=reason):
        return False
    log_event(log, "delivery.failed", logging.WARNING, digest_id=digest_id, error=reason)
    return True


def send_digests(
    engine: Engine,
    settings: Settings,
    digest_ids: Sequence[int],
    *,
    mailer: Mailer | None = None,
    limiter: RateLimiter | None = None,
) -> SendReport:
    """Send stored digests over one mail connection; each at most once, however often asked.

    A permanent refusal is recorded and the batch goes on. A temporary one ends the batch
    (the server is down or asks us to slow down): that digest and the ones not yet tried come
    back in `retry_ids` for the caller to retry after a backoff.
    """
    report = SendReport()
    mailer = mailer or make_mailer(settings)
    limiter = limiter or smtp_limiter(settings)
    ids = list(digest_ids)
    with mailer.connection() as connection:
        for position, digest_id in enumerate(ids):
            try:
                ready = _prepare(engine, settings, digest_id)
            except SQLAlchemyError:
                raise  # the database is away: leave everything as it is for a retry
            except Exception as exc:  # cannot render: it never will, so record it and go on
                ready = f"cannot compose: {type(exc).__name__}: {exc}"
                report.failed += _fail_unsendable(engine, digest_id, ready)
                report.errors.append(f"digest {digest_id}: {ready}")
                continue
            if ready == "inactive":
                reason = "not sent: the subscriber left or was suspended"
                report.failed += _fail_unsendable(engine, digest_id, reason)
                continue
            if isinstance(ready, str):
                report.skipped += 1
                continue
            try:
                limiter.acquire()  # before the claim: waiting never counts against the lease
            except DeliveryError as exc:
                report.errors.append(str(exc))
                report.retry_ids = ids[position:]
                break
            claimed = _move(
                engine,
                digest_id,
                where=[Delivery.status == Status.pending, Delivery.attempts == ready.attempts],
                status=Status.sending,
                attempts=ready.attempts + 1,
            )
            if not claimed:
                report.skipped += 1
                continue
            outcome = _send_one(engine, settings, ready, connection)
            fields = _fields(ready, status=outcome.status, error=outcome.reason)
            if outcome.status == Status.sent:
                log_event(log, "delivery.sent", **fields)
                report.sent += 1
                continue
            log_event(log, f"delivery.{outcome.status}", logging.WARNING, **fields)
            report.errors.append(f"digest {digest_id}: {outcome.reason}")
            if outcome.suspended:
                log_event(log, "subscriber.suspended", logging.WARNING, **_fields(ready))
                report.suspended += 1
            if outcome.status == Status.bounced:
                report.bounced += 1
            elif outcome.status == Status.failed:
                report.failed += 1
            else:  # pending: a temporary failure ends this connection's batch
                report.retry += 1
                report.retry_ids = ids[position:]
                break
    return report


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

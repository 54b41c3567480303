"""Where one issue date's mail stands: deliveries per status, and why the failed ones failed.

Read-only, for `papermail status` and anything else that watches the sends.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date, datetime

from sqlalchemy import func
from sqlmodel import Session, col, select

from papermail.models import Delivery, DeliveryStatus, Digest, Subscriber

PROBLEMS = (DeliveryStatus.failed, DeliveryStatus.bounced)


@dataclass
class Problem:
    digest_id: int
    email: str
    status: str
    attempts: int
    error: str
    updated_at: datetime


@dataclass
class DayStatus:
    issue_date: date
    digests: int = 0  # stored for the day, including those with nothing to send
    counts: dict[str, int] = field(default_factory=dict)  # every DeliveryStatus, zeros included
    problems: list[Problem] = field(default_factory=list)
    suspended: int = 0  # subscribers suspended after bounces, all days

    @property
    def empty(self) -> int:
        """Digests that matched nothing, so were never mailed."""
        return self.digests - sum(self.counts.values())

    def as_dict(self) -> dict:
        data = asdict(self)
        data["issue_date"] = self.issue_date.isoformat()
        data["empty"] = self.empty
        for problem in data["problems"]:
            problem["updated_at"] = problem["updated_at"].isoformat()
        return data


def day_status(session: Session, issue_date: date, *, problems: int = 100) -> DayStatus:
    """Counts for the deliveries of `issue_date`, and its failures and bounces (newest first,
    at most `problems` of them) with the server's reason."""
    report = DayStatus(issue_date=issue_date)
    report.digests = session.exec(
        select(func.count()).select_from(Digest).where(Digest.issue_date == issue_date)
    ).one()
    rows = session.exec(
        select(Delivery.status, func.count())
        .join(Digest, col(Digest.id) == Delivery.digest_id)
        .where(Digest.issue_date == issue_date)
        .group_by(col(Delivery.status))
    ).all()
    found = {str(status): count for status, count in rows}
    report.counts = {status.value: found.get(status.value, 0) for status in DeliveryStatus}
    failed = session.exec(
        select(Delivery, Subscriber.email)
        .join(Digest, col(Digest.id) == Delivery.digest_id)
        .join(Subscriber, col(Subscriber.id) == Digest.subscriber_id)
        .where(Digest.issue_date == issue_date, col(Delivery.status).in_(PROBLEMS))
        .order_by(col(Delivery.updated_at).desc(), col(Delivery.digest_id))
        .limit(problems)
    )
    report.problems = [
        Problem(
            digest_id=d.digest_id,
            email=email,
            status=str(d.status),
            attempts=d.attempts,
            error=d.last_error or "",
            updated_at=d.updated_at,
        )
        for d, email in failed
    ]
    report.suspended = session.exec(
        select(func.count())
        .select_from(Subscriber)
        .where(col(Subscriber.suspended_at).is_not(None))
    ).one()
    return report

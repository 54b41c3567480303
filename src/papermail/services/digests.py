"""Score new papers for subscribers, store their digests, and compose their mail.

`score_day` ranks every due subscriber in one batch and stores one Digest per (subscriber, issue
date) with its ranked items and a pending Delivery; `compose_mail` renders a stored digest into its
message. Sending (the Delivery state machine) lives in `papermail.services.delivery`.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from email.utils import parseaddr
from typing import TYPE_CHECKING
from urllib.parse import quote_plus
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import func
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, or_, select

from papermail import dkim, metrics, ranking
from papermail.authors import AuthorIndex
from papermail.bounces import digest_sender
from papermail.db import bulk_insert, session_scope
from papermail.emails import (
    DigestEntry,
    DigestLinks,
    RenderedEmail,
    build_message,
    digest_context,
    get_renderer,
    make_message_id,
)
from papermail.logfmt import log_event
from papermail.mailer import Mailer, OutgoingMail
from papermail.models import (
    Delivery,
    DeliveryStatus,
    Digest,
    DigestItem,
    Frequency,
    Paper,
    Subscriber,
    utcnow,
)
from papermail.services import feedback as feedback_service
from papermail.services import interests, sections
from papermail.services.jobs import Stage, job_run
from papermail.settings import Settings
from papermail.sources.records import normalize_arxiv_id
from papermail.tokens import Purpose, make_token

if TYPE_CHECKING:
    from papermail.services.delivery import SendReport

log = logging.getLogger(__name__)


@dataclass
class PlannedDigest:
    subscriber: Subscriber
    scanned: int
    picks: list[tuple[Paper, ranking.Match]]
    revised: frozenset[str] = frozenset()  # ids of picks the subscriber had in an older version
    # Per pick: its interest, section heading and followed author (services.sections).
    placements: list[sections.Placement] = field(default_factory=list)

    def placement(self, rank: int) -> sections.Placement:
        return self.placements[rank] if rank < len(self.placements) else _NOWHERE

    def entries(self) -> list[DigestEntry]:
        """The picks as the templates show them, before anything is stored (previews)."""
        return [
            replace(
                entry_for(
                    p, m.score, m.matched, m.where, p.version if p.id in self.revised else None
                ),
                section=self.placement(i).section,
                followed=self.placement(i).followed,
            )
            for i, (p, m) in enumerate(self.picks)
        ]


_NOWHERE = sections.Placement(None, "")


@dataclass
class ScoreReport:
    issue_date: date
    to_send: list[int] = field(default_factory=list)
    empty: int = 0
    already: int = 0
    papers_scanned: int = 0
    issue_dates: list[date] = field(default_factory=list)  # scored: each subscriber's own


def active_subscribers(
    session: Session, *, issue_date: date, subscriber_ids: Sequence[int] | None = None
) -> list[Subscriber]:
    """Confirmed, subscribed, not paused, and without a digest for this issue date yet.

    With no explicit ids, weekly subscribers only count on their chosen weekday.
    """
    has_digest = select(Digest.subscriber_id).where(Digest.issue_date == issue_date)
    query = select(Subscriber).where(
        col(Subscriber.confirmed).is_(True),
        col(Subscriber.unsubscribed_at).is_(None),
        col(Subscriber.suspended_at).is_(None),
        or_(col(Subscriber.snoozed_until).is_(None), Subscriber.snoozed_until <= issue_date),
        Subscriber.frequency != Frequency.paused,
        col(Subscriber.id).not_in(has_digest),
    )
    if subscriber_ids is not None:
        query = query.where(col(Subscriber.id).in_(list(subscriber_ids)))
    else:
        query = query.where(
            or_(
                Subscriber.frequency == Frequency.daily,
                Subscriber.weekly_day == issue_date.weekday(),
            )
        )
    return list(session.exec(query.order_by(col(Subscriber.id))))


def plan_digests(
    session: Session, settings: Settings, subscribers: Sequence[Subscriber], *, now: datetime
) -> list[PlannedDigest]:
    """Rank, for every subscriber at once, the papers new to them since their last digest."""
    if not subscribers:
        return []
    ids = [s.id for s in subscribers]
    last_covered = dict(
        session.exec(  # type: ignore[arg-type]
            select(Digest.subscriber_id, func.max(Digest.covered_until))
            .where(col(Digest.subscriber_id).in_(ids))
            .group_by(col(Digest.subscriber_id))
        ).all()
    )
    default_start = now - timedelta(days=settings.lookback_days)
    starts = {sid: last_covered.get(sid) or default_start for sid in ids}
    window_start = min(starts.values())
    candidates = list(
        session.exec(
            select(Paper)
            .where(
                or_(
                    Paper.first_seen_at > window_start,
                    col(Paper.revised_at) > window_start,
                ),
                Paper.first_seen_at <= now,
            )
            .order_by(col(Paper.first_seen_at), col(Paper.id))
        )
    )
    sent = _versions_sent(session, ids, [p.id for p in candidates])
    eligible, revised = _eligible(candidates, starts, sent)
    corpus_start = now - timedelta(days=settings.corpus_days)
    corpus = [
        ranking.PaperText(p.title, p.abstract)
        for p in session.exec(
            select(Paper)
            .where(Paper.first_seen_at > corpus_start, Paper.first_seen_at <= now)
            .order_by(col(Paper.first_seen_at), col(Paper.id))  # a stable key for fit_cached
        )
    ]
    texts = [ranking.PaperText(p.title, p.abstract) for p in candidates]
    matches: dict = {}
    topics = sections.load_topics(session, subscribers)
    interests.resolve_pending_seeds(  # seeds a later ingest brought
        session, [t.topic_id for own in topics.values() for t in own if t.topic_id is not None]
    )
    if texts:
        model = ranking.fit_cached(corpus or texts, ranking.model_config(settings))
        options = ranking.RankOptions.from_settings(settings)
        matches = ranking.rank(
            model,
            texts,
            sections.profiles(topics),
            min_score=settings.min_score,
            eligible={t.key: eligible[sid] for sid, own in topics.items() for t in own},
            options=options,
            upvotes=[p.upvotes for p in candidates],
            feedback=feedback_service.load_topic_feedback(
                session, {sid: [t.topic_id for t in own] for sid, own in topics.items()}
            ),
            meaning=_meaning(session, candidates) if options.dense > 0 else None,
        )
    following = any(t.authors for own in topics.values() for t in own)
    authors = AuthorIndex([p.authors for p in candidates]) if following and texts else None
    plans = []
    for s in subscribers:
        own = topics.get(s.id, [])  # type: ignore[arg-type]
        followed = sections.followed_papers(own, authors, eligible[s.id])
        placed = sections.assemble(own, matches, followed)
        plans.append(
            PlannedDigest(
                subscriber=s,
                scanned=len(eligible[s.id]),
                picks=[(candidates[m.index], m) for m, _ in placed],
                revised=revised.get(s.id, frozenset()),
                placements=[where for _, where in placed],
            )
        )
    return plans


def _meaning(session: Session, candidates: Sequence[Paper]) -> ranking.Meaning | None:
    """The candidates' stored sentence vectors (SEMANTIC): without the extra, ranking goes on
    with TF-IDF alone and says so in the log, rather than sending no digest."""
    from papermail.ranking import dense
    from papermail.services import embeddings

    try:
        return dense.meaning(embeddings.load_vectors(session, [p.id for p in candidates]))
    except RuntimeError as exc:
        log.warning("semantic ranking off for this run: %s", exc)
        return None


def _versions_sent(
    session: Session, subscriber_ids: Sequence[int], paper_ids: Sequence[str]
) -> dict[int, dict[str, int]]:
    """Per subscriber, the candidate papers they already had and the newest version they saw
    (0 when unknown). History is keyed on the versionless id: a paper never comes twice."""
    sent: dict[int, dict[str, int]] = defaultdict(dict)
    if not paper_ids:
        return sent
    rows = session.exec(
        select(Digest.subscriber_id, DigestItem.paper_id, DigestItem.paper_version)
        .join(Digest, col(Digest.id) == DigestItem.digest_id)
        .where(col(Digest.subscriber_id).in_(list(subscriber_ids)))
        .where(col(DigestItem.paper_id).in_(list(paper_ids)))
    )
    for sid, pid, version in rows:
        seen = sent[sid]
        seen[pid] = max(seen.get(pid, 0), version or 0)
    return sent


def _eligible(
    candidates: Sequence[Paper],
    starts: dict[int, datetime],
    sent: dict[int, dict[str, int]],
) -> tuple[dict[int, list[int]], dict[int, frozenset[str]]]:
    """What each subscriber may receive: papers new since their last digest that they never
    had, and papers they had that came back in a newer version since (shown as updated).

    Most subscribers share a start and have no history among the candidates, so the work is
    done once per distinct start and only those with history get their own list."""
    by_start: dict[datetime, tuple[list[int], list[int]]] = {}
    for start in set(starts.values()):
        new = [i for i, p in enumerate(candidates) if p.first_seen_at > start]
        newly_revised = [
            i
            for i, p in enumerate(candidates)
            if p.revised_at is not None and p.revised_at > start and p.first_seen_at <= start
        ]
        by_start[start] = (new, newly_revised)
    eligible: dict[int, list[int]] = {}
    revised: dict[int, frozenset[str]] = {}
    for sid, start in starts.items():
        new, newly_revised = by_start[start]
        history = sent.get(sid)
        if not history:
            eligible[sid] = new
            continue
        updates = [
            i
            for i in newly_revised
            if candidates[i].id in history
            and history[candidates[i].id] < (candidates[i].version or 0)
        ]
        eligible[sid] = sorted([i for i in new if candidates[i].id not in history] + updates)
        revised[sid] = frozenset(candidates[i].id for i in updates)
    return eligible, revised


def _mail_domain(settings: Settings) -> str:
    return parseaddr(settings.mail_from)[1].rpartition("@")[2] or "papermail.localhost"


_INSERT_NEW = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


def store_digests(
    session: Session,
    settings: Settings,
    plans: Sequence[PlannedDigest],
    *,
    issue_date: date,
    now: datetime,
) -> dict[int, int]:
    """Store the plans' digests, their items and pending deliveries in three bulk INSERTs;
    returns {subscriber id: new digest id}. A (subscriber, day) another worker stored first is
    left out: ON CONFLICT DO NOTHING on the unique constraint keeps exactly one, a conflicting
    row waiting for the other transaction to end before it is skipped (or inserted, if that one
    rolled back)."""
    if not plans:
        return {}
    digests = [
        {
            "subscriber_id": plan.subscriber.id,
            "issue_date": issue_date,
            "scanned": plan.scanned,
            "covered_until": now,
        }
        for plan in plans
    ]
    table = Digest.__table__  # type: ignore[attr-defined]
    new_only = _INSERT_NEW[session.get_bind().dialect.name](table).on_conflict_do_nothing(
        index_elements=["subscriber_id", "issue_date"]
    )
    returning = new_only.returning(table.c.subscriber_id, table.c.id)
    stored: dict[int, int] = dict(session.execute(returning, digests).all())  # type: ignore[arg-type]
    items: list[dict] = []
    deliveries: list[dict] = []
    domain = _mail_domain(settings)
    for plan in plans:
        digest_id = stored.get(plan.subscriber.id)  # type: ignore[arg-type]
        if digest_id is None:
            continue
        items.extend(
            {
                "digest_id": digest_id,
                "paper_id": paper.id,
                "rank": rank,
                "score": round(match.score, 6),
                "matched": list(match.matched),
                "matched_where": list(match.where),
                "paper_version": paper.version,
                "revised": paper.id in plan.revised,
                "topic_id": plan.placement(rank - 1).topic_id,
                "section": plan.placement(rank - 1).section,
                "followed": plan.placement(rank - 1).followed,
            }
            for rank, (paper, match) in enumerate(plan.picks, start=1)
        )
        if plan.picks or settings.send_empty_digests:
            deliveries.append({"digest_id": digest_id, "message_id": make_message_id(domain)})
    bulk_insert(session, DigestItem, items)
    bulk_insert(session, Delivery, deliveries)
    return stored


def score_day(
    engine: Engine,
    settings: Settings,
    *,
    issue_date: date,
    subscriber_ids: Sequence[int] | None = None,
    now: datetime | None = None,
) -> ScoreReport:
    """Rank and store digests. Given ids (the dispatcher, which already works in each
    subscriber's local date) are scored for `issue_date`, in one transaction.

    Without ids (`run-daily`), issue dates follow each subscriber's own local date: one whose
    local date at `now` is still before `issue_date` (Los Angeles while UTC is already on the next
    day) gets the issue of their own day, never an early one dated `issue_date` that would leave
    their real day empty. `report.issue_dates` lists the dates scored. Each call is one
    `score` job run."""
    with job_run(engine, Stage.score) as run:
        report = _score_day(
            engine, settings, issue_date=issue_date, subscriber_ids=subscriber_ids, now=now
        )
        run.count(
            issue_date=issue_date.isoformat(),
            to_send=len(report.to_send),
            empty=report.empty,
            already=report.already,
            papers_scanned=report.papers_scanned,
        )
    return report


def _score_day(
    engine: Engine,
    settings: Settings,
    *,
    issue_date: date,
    subscriber_ids: Sequence[int] | None,
    now: datetime | None,
) -> ScoreReport:
    now = now or utcnow()
    if subscriber_ids is not None:
        return _score_date(
            engine, settings, issue_date=issue_date, subscriber_ids=subscriber_ids, now=now
        )
    with session_scope(engine) as session:
        groups = own_issue_dates(session, issue_date=issue_date, now=now)
    report = ScoreReport(issue_date=issue_date)
    for day, ids in sorted(groups.items()):
        part = _score_date(engine, settings, issue_date=day, subscriber_ids=ids, now=now)
        report.issue_dates.append(day)
        report.to_send.extend(part.to_send)
        report.empty += part.empty
        report.already += part.already
        report.papers_scanned = max(report.papers_scanned, part.papers_scanned)
    return report


def own_issue_dates(session: Session, *, issue_date: date, now: datetime) -> dict[date, list[int]]:
    """Receiving subscribers by the issue date that is theirs at `now`: `issue_date`, or their
    local date when that is still earlier. Weekly subscribers only on their weekday."""
    groups: dict[date, list[int]] = defaultdict(list)
    receiving = select(Subscriber).where(
        col(Subscriber.confirmed).is_(True),
        col(Subscriber.unsubscribed_at).is_(None),
        col(Subscriber.suspended_at).is_(None),
        Subscriber.frequency != Frequency.paused,
    )
    for subscriber in session.exec(receiving.order_by(col(Subscriber.id))):
        try:
            local = now.astimezone(ZoneInfo(subscriber.timezone)).date()
        except (ZoneInfoNotFoundError, ValueError):
            local = now.astimezone(UTC).date()
        day = min(issue_date, local)
        if subscriber.frequency == Frequency.weekly and day.weekday() != subscriber.weekly_day:
            continue
        if subscriber.id is not None:
            groups[day].append(subscriber.id)
    return dict(groups)


def _score_date(
    engine: Engine,
    settings: Settings,
    *,
    issue_date: date,
    subscriber_ids: Sequence[int],
    now: datetime,
) -> ScoreReport:
    """Rank and store the digests of these subscribers for `issue_date`, in one transaction."""
    report = ScoreReport(issue_date=issue_date, issue_dates=[issue_date])
    started = time.perf_counter()
    with session_scope(engine) as session:
        subscribers = active_subscribers(
            session, issue_date=issue_date, subscriber_ids=subscriber_ids
        )
        plans = plan_digests(session, settings, subscribers, now=now)
        stored = store_digests(session, settings, plans, issue_date=issue_date, now=now)
        for plan in plans:
            digest_id = stored.get(plan.subscriber.id)  # type: ignore[arg-type]
            report.papers_scanned = max(report.papers_scanned, plan.scanned)
            if digest_id is None:
                report.already += 1
            elif plan.picks or settings.send_empty_digests:
                report.to_send.append(digest_id)
            else:
                report.empty += 1
    metrics.SCORING_SECONDS.observe(time.perf_counter() - started)
    metrics.SUBSCRIBERS_SCORED.inc(len(plans))
    log_event(
        log,
        "digests.stored",
        issue_date=issue_date.isoformat(),
        subscribers=len(plans),
        to_send=len(report.to_send),
        empty=report.empty,
        already=report.already,
    )
    return report


def paper_url(paper: Paper) -> str:
    """The paper's page: arXiv abs, the HF page, the source's URL; a title search on arXiv only
    when nothing else is known (a saved page without ids)."""
    arxiv_id = paper_arxiv_id(paper)
    if arxiv_id:
        return f"https://arxiv.org/abs/{arxiv_id}"
    if paper.hf_url or paper.url:
        return paper.hf_url or paper.url or ""
    return f"https://arxiv.org/search/?searchtype=title&query={quote_plus(paper.title)}"


def paper_arxiv_id(paper: Paper) -> str | None:
    """Stored, else the paper's key when it is an arXiv id (rows stored before issue 12)."""
    if paper.arxiv_id:
        return paper.arxiv_id
    return normalize_arxiv_id(paper.id) if paper.source != "jsonl" else None


def digest_links(settings: Settings, subscriber: Subscriber, digest_id: int | None) -> DigestLinks:
    secret = settings.secret_key.get_secret_value()
    base = settings.base_url.rstrip("/")

    def link(purpose: Purpose, path: str, extra: dict | None = None) -> str:
        assert subscriber.id is not None
        token = make_token(
            secret,
            purpose,
            subscriber.id,
            version=subscriber.token_version,
            nonce=subscriber.link_nonce,
            extra=extra,
        )
        return f"{base}/{path}/{token}"

    view = link(Purpose.view, "digest", {"d": digest_id}) if digest_id else f"{base}/papers"
    # One feedback token per digest, not one per link: the templates append "/RANK/more" etc.
    return DigestLinks(
        view=view,
        manage=link(Purpose.manage, "manage"),
        unsubscribe=link(Purpose.unsubscribe, "unsubscribe"),
        feedback=link(Purpose.feedback, "f", {"d": digest_id}) if digest_id else "",
    )


def entry_for(
    paper: Paper,
    score: float,
    matched: Sequence[str],
    where: Sequence[str] = (),
    revised_to: int | None = None,
) -> DigestEntry:
    return DigestEntry(
        title=paper.title,
        url=paper_url(paper),
        authors=tuple(paper.authors),
        author_count=paper.author_count,
        organisation=paper.organisation,
        published=paper.published,
        upvotes=paper.upvotes,
        abstract=paper.abstract,
        matched=tuple(matched),
        where=tuple(where),
        score=score,
        revised_to=revised_to,
        arxiv_id=paper_arxiv_id(paper),
        pdf_url=paper.pdf_url,
        hf_url=paper.hf_url,
        code_url=paper.code_url,
        code_stars=paper.code_stars,
        project_url=paper.project_url,
        thumbnail_url=paper.thumbnail_url,
        comments_count=paper.comments_count,
        ai_summary=paper.ai_summary,
        ai_keywords=tuple(paper.ai_keywords or ()),
        affiliations=tuple((paper.affiliations or {}).items()),
        primary_category=paper.primary_category,
        comments=paper.comments,
        journal_ref=paper.journal_ref,
    )


def render_digest(
    settings: Settings,
    subscriber: Subscriber,
    *,
    issue_date: date,
    scanned: int,
    entries: Sequence[DigestEntry],
    digest_id: int | None,
    keywords: Sequence[str] | None = None,
) -> tuple[RenderedEmail, DigestLinks]:
    """``keywords``: the reader's own, so that "Mute" is offered only for other terms; without
    them no term is offered (matched terms are the phrases the reader typed)."""
    links = digest_links(settings, subscriber, digest_id)
    context = digest_context(
        email=subscriber.email,
        issue_date=issue_date,
        entries=entries,
        scanned=scanned,
        links=links,
        compact_after=settings.compact_after,
        show_thumbnails=settings.show_thumbnails,
        keywords=keywords,
    )
    return get_renderer(settings).render("digest", context), links


def load_entries(session: Session, digest_id: int) -> list[DigestEntry]:
    return load_entries_many(session, [digest_id]).get(digest_id, [])


def load_entries_many(session: Session, digest_ids: Sequence[int]) -> dict[int, list[DigestEntry]]:
    """Each digest's entries in rank order, in one query: a send chunk reads its papers at once
    instead of one query per digest."""
    entries: dict[int, list[DigestEntry]] = defaultdict(list)
    rows = session.exec(
        select(DigestItem, Paper)
        .join(Paper, col(Paper.id) == DigestItem.paper_id)
        .where(col(DigestItem.digest_id).in_(list(digest_ids)))
        .order_by(col(DigestItem.digest_id), col(DigestItem.rank))
    )
    for item, paper in rows:
        entries[item.digest_id].append(entry_for_item(item, paper))
    return entries


def entry_for_item(item: DigestItem, paper: Paper) -> DigestEntry:
    """A stored digest item as the templates show it."""
    revised_to = item.paper_version if item.revised else None
    entry = entry_for(paper, item.score, item.matched, item.matched_where, revised_to)
    if item.section or item.followed:
        entry = replace(entry, section=item.section, followed=item.followed)
    return entry


def compose_mail(
    settings: Settings,
    digest: Digest,
    subscriber: Subscriber,
    *,
    message_id: str,
    entries: Sequence[DigestEntry],
) -> OutgoingMail:
    """The finished message of a stored digest, under the Message-ID stored with its delivery:
    the same on every attempt, so receivers can drop a resend as a duplicate. Touches no
    database: senders load a whole chunk's entries at once (`load_entries_many`)."""
    rendered, links = render_digest(
        settings,
        subscriber,
        issue_date=digest.issue_date,
        scanned=digest.scanned,
        entries=entries,
        digest_id=digest.id,
    )
    data = dkim.sign_message(
        settings,
        build_message(
            rendered,
            sender=settings.mail_from,
            recipient=subscriber.email,
            message_id=message_id,
            unsubscribe_url=links.unsubscribe,
            unsubscribe_mailto=settings.unsubscribe_mailto,
        ),
    )
    return OutgoingMail(
        sender=digest_sender(settings, subscriber.id, digest.id),  # type: ignore[arg-type]
        recipient=subscriber.email,
        message_id=message_id,
        data=data,
        html=rendered.html,
    )


def compose_stored_digest(session: Session, settings: Settings, digest_id: int) -> OutgoingMail:
    digest = session.get(Digest, digest_id)
    delivery = session.exec(select(Delivery).where(Delivery.digest_id == digest_id)).one()
    assert digest is not None
    subscriber = session.get(Subscriber, digest.subscriber_id)
    assert subscriber is not None
    entries = load_entries(session, digest_id)
    return compose_mail(
        settings, digest, subscriber, message_id=delivery.message_id, entries=entries
    )


def send_digests(
    engine: Engine, settings: Settings, digest_ids: Sequence[int], *, mailer: Mailer | None = None
) -> SendReport:
    """Send stored digests, each at most once: see `papermail.services.delivery`, where sending
    lives now (imported here on call, since delivery builds on this module)."""
    from papermail.services import delivery

    return delivery.send_digests(engine, settings, digest_ids, mailer=mailer)


def pending_digest_ids(session: Session, *, issue_date: date | None = None) -> list[int]:
    query = select(Delivery.digest_id).where(Delivery.status == DeliveryStatus.pending)
    if issue_date is not None:
        query = query.join(Digest, col(Digest.id) == Delivery.digest_id).where(
            Digest.issue_date == issue_date
        )
    return list(session.exec(query.order_by(col(Delivery.digest_id))))

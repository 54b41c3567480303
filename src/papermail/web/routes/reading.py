"""Reading: a sent digest in the browser, the public daily-papers page, the private Atom feed."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse, PlainTextResponse, Response
from sqlalchemy import func
from sqlmodel import Session, and_, col, or_, select

from papermail.db import session_scope
from papermail.emails import format_issue_date
from papermail.models import Digest, DigestItem, Paper
from papermail.services import subscriptions
from papermail.services.digests import entry_for, load_entries, render_digest
from papermail.tokens import Purpose
from papermail.web.context import WebDep
from papermail.web.feed import FEED_SIZE, FeedEntry, build_feed
from papermail.web.links import open_digest, open_link, path_for
from papermail.web.pages import PageError, render
from papermail.web.security import DIGEST_CSP

router = APIRouter()

PUBLIC_CACHE = {"Cache-Control": "public, max-age=300"}
PAGE_SIZE = 50


@router.get("/digest/{token}")
def view_digest(token: str, web: WebDep) -> Response:
    """The digest exactly as mailed (its own HTML and inline styles; no script)."""
    with session_scope(web.engine) as session:
        subscriber, digest = open_digest(web, session, Purpose.view, token)
        rendered, _ = render_digest(
            web.settings,
            subscriber,
            issue_date=digest.issue_date,
            scanned=digest.scanned,
            entries=load_entries(session, digest.id),  # type: ignore[arg-type]
            digest_id=digest.id,
            keywords=subscriptions.keywords_of(session, subscriber.id),  # type: ignore[arg-type]
        )
    return HTMLResponse(rendered.html, headers={"Content-Security-Policy": DIGEST_CSP})


def _day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time(), tzinfo=UTC)
    return start, start + timedelta(days=1)


def _as_day(value: date | datetime | None) -> date | None:
    if isinstance(value, datetime):
        return value.date()  # stored as UTC (naive from SQLite)
    return value


def _neighbour(session: Session, day: date, *, later: bool) -> date | None:
    """The nearest day before (or after) `day` that has papers: by listing day, or first-seen
    day for papers without one."""
    start, end = _day_bounds(day)
    pick = func.min if later else func.max
    listed = session.exec(
        select(pick(Paper.listing_day)).where(
            Paper.listing_day > day if later else Paper.listing_day < day
        )
    ).one()
    seen = session.exec(
        select(pick(Paper.first_seen_at)).where(
            col(Paper.listing_day).is_(None),
            Paper.first_seen_at >= end if later else Paper.first_seen_at < start,
        )
    ).one()
    days = [d for d in (_as_day(listed), _as_day(seen)) if d is not None]
    if not days:
        return None
    return min(days) if later else max(days)


def _latest_day(session: Session) -> date | None:
    listed = session.exec(select(func.max(Paper.listing_day))).one()
    seen = session.exec(
        select(func.max(Paper.first_seen_at)).where(col(Paper.listing_day).is_(None))
    ).one()
    days = [d for d in (_as_day(listed), _as_day(seen)) if d is not None]
    return max(days) if days else None


SORTS = {"upvotes": "most upvoted", "date": "newest", "title": "title"}
SEARCH_LIMIT = 500  # matches a search looks at; more pages than anyone reads
MAX_QUERY = 200


def _sort_key(sort: str) -> Callable[[Paper], tuple]:
    if sort == "date":
        return lambda p: (-(p.published or date.min).toordinal(), p.title.casefold(), p.id)
    if sort == "title":
        return lambda p: (p.title.casefold(), p.id)
    return lambda p: (-(p.upvotes or 0), p.title.casefold(), p.id)


def _papers_of(session: Session, day: date, sort: str = "upvotes") -> list[Paper]:
    """A day's papers, most upvoted first (or newest, or by title)."""
    start, end = _day_bounds(day)
    unlisted_that_day = and_(
        col(Paper.listing_day).is_(None), Paper.first_seen_at >= start, Paper.first_seen_at < end
    )
    papers = list(
        session.exec(select(Paper).where(or_(Paper.listing_day == day, unlisted_that_day)))
    )
    papers.sort(key=_sort_key(sort))
    return papers


def _like(word: str) -> str:
    r"""`word` anywhere, with LIKE's own characters taken literally (escaped with \)."""
    escaped = word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _search(session: Session, query: str, sort: str) -> list[Paper]:
    """Papers of any day whose title or abstract holds every word of `query` (any case)."""
    conditions = [
        or_(
            col(Paper.title).ilike(_like(word), escape="\\"),
            col(Paper.abstract).ilike(_like(word), escape="\\"),
        )
        for word in query.split()[:8]
    ]
    papers = list(
        session.exec(
            select(Paper)
            .where(*conditions)
            .order_by(col(Paper.first_seen_at).desc(), col(Paper.id))
            .limit(SEARCH_LIMIT)
        )
    )
    papers.sort(key=_sort_key(sort))
    return papers


def _papers_page(
    web: WebDep, day: date | None, page: int, query: str = "", sort: str = "upvotes"
) -> Response:
    """A day's papers, or with `query` the papers of any day that match it."""
    query = " ".join(query.split())[:MAX_QUERY]
    sort = sort if sort in SORTS else "upvotes"
    with session_scope(web.engine) as session:
        if query:
            day = None
            papers = _search(session, query, sort)
        else:
            day = day or _latest_day(session)
            papers = _papers_of(session, day, sort) if day else []
        pages = max(1, -(-len(papers) // PAGE_SIZE))
        shown = papers[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
        context = {
            "day": day.isoformat() if day else "",
            "day_label": format_issue_date(day) if day else "",
            "entries": [entry_for(p, 0.0, ()) for p in shown],
            "total": len(papers),
            "page": page,
            "pages": pages,
            "query": query,
            "sort": sort,
            "sorts": SORTS,
            "base": f"/papers/{day.isoformat()}" if day else "/papers",
            "older": (_neighbour(session, day, later=False) if day else None),
            "newer": (_neighbour(session, day, later=True) if day else None),
        }
    return render(web, "papers", context, headers=PUBLIC_CACHE)


PageNumber = Annotated[int, Query(ge=1, le=10_000)]
SearchText = Annotated[str, Query(max_length=1000)]


@router.get("/papers")
def latest_papers(
    web: WebDep, page: PageNumber = 1, q: SearchText = "", sort: str = "upvotes"
) -> Response:
    return _papers_page(web, None, page, q, sort)


@router.get("/papers/{day}")
def papers_of_day(
    day: str, web: WebDep, page: PageNumber = 1, q: SearchText = "", sort: str = "upvotes"
) -> Response:
    try:
        wanted = date.fromisoformat(day)
        if not date(1900, 1, 1) <= wanted <= date(9998, 12, 31):  # day +- 1 must stay a date
            raise ValueError(day)
    except ValueError:
        raise PageError(
            404, "No such day", "Days look like 2026-11-23.", action_url="/papers"
        ) from None
    return _papers_page(web, wanted, page, q, sort)


@router.get("/feed/{token}.atom")
def feed(token: str, web: WebDep) -> Response:
    with session_scope(web.engine) as session:
        subscriber, _ = open_link(web, session, Purpose.feed, token)
        assert subscriber.id is not None
        has_items = select(DigestItem.digest_id).where(DigestItem.digest_id == Digest.id).exists()
        digests = session.exec(
            select(Digest)
            .where(Digest.subscriber_id == subscriber.id, has_items)
            .order_by(col(Digest.issue_date).desc(), col(Digest.id).desc())
            .limit(FEED_SIZE)
        ).all()
        template = web.environment.get_template("web/feed_entry.html.j2")
        entries = []
        for digest in digests:
            papers = load_entries(session, digest.id)  # type: ignore[arg-type]
            entries.append(
                FeedEntry(
                    digest_id=digest.id,  # type: ignore[arg-type]
                    issue_date=digest.issue_date,
                    created_at=digest.created_at,
                    view_url=web.url(path_for(web, Purpose.view, subscriber, d=digest.id)),
                    content_html=template.render(entries=papers),
                    papers=papers,
                )
            )
        keywords = subscriptions.keywords_of(session, subscriber.id)
        body = build_feed(
            base_url=web.settings.base_url,
            subscriber_id=subscriber.id,
            subscribed_on=subscriber.created_at.date(),
            created_at=subscriber.created_at,
            self_url=web.url(f"/feed/{token}.atom"),
            keywords=keywords,
            entries=entries,
        )
    return Response(body, media_type="application/atom+xml; charset=utf-8")


@router.get("/robots.txt")
def robots() -> Response:
    """Personal pages stay out of search engines (they are also noindex)."""
    private = (
        "/manage/",
        "/unsubscribe/",
        "/confirm/",
        "/digest/",
        "/feed/",
        "/feedback/",
        "/f/",
        "/saved/",
        "/link",
    )
    lines = ["User-agent: *", *(f"Disallow: {path}" for path in private)]
    return PlainTextResponse("\n".join(lines) + "\n", headers=PUBLIC_CACHE)

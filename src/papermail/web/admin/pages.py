"""The console's pages: thin routes over services.console and services.roster. Everyone signed
in may read every page; only admins may suspend, resume, delete and export."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import date
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Query
from fastapi.responses import Response, StreamingResponse

from papermail.db import session_scope
from papermail.models import BounceKind, Subscriber, utcnow
from papermail.services import console as summaries
from papermail.services import roster
from papermail.services.subscriptions import delete_subscriber
from papermail.web.admin.charts import bar_chart
from papermail.web.admin.session import PATH, Console, ConsoleDep
from papermail.web.pages import PageError
from papermail.web.routes.common import CsrfField, see_other

router = APIRouter(prefix=PATH)

PER_PAGE = 50
NOTICES = {
    "suspended": "Suspended: no digests are sent to this address until it is resumed.",
    "resumed": "Resumed: digests start again, and the bounce history is cleared.",
    "deleted": "The subscriber and everything stored about them were deleted.",
}
NO_SUBSCRIBER = PageError(
    404,
    "No such subscriber",
    "There is no subscriber with this number (deleted?).",
    action_url=f"{PATH}/subscribers",
    action_label="Search subscribers",
)


def _choice(enum, value: str):  # type: ignore[no-untyped-def]
    """An enum member from a query value; an unknown value means "all"."""
    try:
        return enum(value) if value else None
    except ValueError:
        return None


def _day(value: str) -> date:
    try:
        return date.fromisoformat(value) if value else utcnow().date()
    except ValueError:
        return utcnow().date()


@router.get("")
def dashboard(console: ConsoleDep, day: str = "") -> Response:
    """Today's job and the last 30 days."""
    shown = _day(day)
    with session_scope(console.web.engine) as session:
        board = summaries.dashboard(session, shown)
        days = summaries.history(session, shown)
        states = roster.state_counts(session)
    charts = [
        bar_chart("sent", "Digests sent", [(d.day, d.sent) for d in days]),
        bar_chart("failed", "Failed or bounced", [(d.day, d.failed) for d in days]),
        bar_chart("joined", "New subscribers", [(d.day, d.joined) for d in days]),
        bar_chart("left", "Unsubscribes", [(d.day, d.left) for d in days]),
    ]
    context = {"board": board, "days": days, "charts": charts, "states": states}
    return console.render("dashboard", "dashboard", context)


@router.get("/subscribers")
def subscribers(
    console: ConsoleDep,
    q: Annotated[str, Query(max_length=320)] = "",
    state: str = "",
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    n: str = "",
) -> Response:
    chosen = _choice(roster.State, state)
    with session_scope(console.web.engine) as session:
        found = roster.search(session, query=q, state=chosen, number=page, per_page=PER_PAGE)
        states = roster.state_counts(session)
    filters = {"q": q, "state": chosen.value if chosen else ""}
    context = {
        "found": found,
        "states": states,
        "filters": filters,
        "query_string": urlencode({k: v for k, v in filters.items() if v}),
        "notice": NOTICES.get(n, ""),
    }
    return console.render("subscribers", "subscribers", context)


def _csv_lines(console: Console, query: str, state: roster.State | None) -> Iterator[str]:
    """The CSV, a batch of rows at a time: the export never holds every row in memory."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    with session_scope(console.web.engine) as session:
        for row in roster.csv_rows(session, query=query, state=state):
            writer.writerow(row)
            if buffer.tell() > 64_000:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
    yield buffer.getvalue()


@router.get("/subscribers.csv")
def export_csv(
    console: ConsoleDep, q: Annotated[str, Query(max_length=320)] = "", state: str = ""
) -> Response:
    console.require_admin()
    chosen = _choice(roster.State, state)
    name = f"papermail-subscribers-{utcnow():%Y-%m-%d}.csv"
    return StreamingResponse(
        _csv_lines(console, q, chosen),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


def _subscriber(session, subscriber_id: int) -> Subscriber:  # type: ignore[no-untyped-def]
    subscriber = session.get(Subscriber, subscriber_id)
    if subscriber is None:
        raise NO_SUBSCRIBER
    return subscriber


@router.get("/subscribers/{subscriber_id}")
def subscriber(console: ConsoleDep, subscriber_id: int, n: str = "") -> Response:
    with session_scope(console.web.engine) as session:
        found = roster.detail(session, _subscriber(session, subscriber_id), now=utcnow())
    context = {"detail": found, "notice": NOTICES.get(n, "")}
    return console.render("subscriber", "subscribers", context)


@router.post("/subscribers/{subscriber_id}/suspend")
def suspend(console: ConsoleDep, subscriber_id: int, csrf: CsrfField) -> Response:
    console.check_csrf(csrf)
    console.require_admin()
    with session_scope(console.web.engine) as session:
        roster.suspend(session, _subscriber(session, subscriber_id), now=utcnow())
    return see_other(f"{PATH}/subscribers/{subscriber_id}?n=suspended")


@router.post("/subscribers/{subscriber_id}/resume")
def resume(console: ConsoleDep, subscriber_id: int, csrf: CsrfField) -> Response:
    console.check_csrf(csrf)
    console.require_admin()
    with session_scope(console.web.engine) as session:
        roster.resume(session, _subscriber(session, subscriber_id))
    return see_other(f"{PATH}/subscribers/{subscriber_id}?n=resumed")


@router.get("/subscribers/{subscriber_id}/delete")
def delete_form(console: ConsoleDep, subscriber_id: int) -> Response:
    console.require_admin()
    with session_scope(console.web.engine) as session:
        found = _subscriber(session, subscriber_id)
    return console.render("delete", "subscribers", {"subscriber": found})


@router.post("/subscribers/{subscriber_id}/delete")
def delete(console: ConsoleDep, subscriber_id: int, csrf: CsrfField) -> Response:
    console.check_csrf(csrf)
    console.require_admin()
    with session_scope(console.web.engine) as session:
        delete_subscriber(session, _subscriber(session, subscriber_id))
    return see_other(f"{PATH}/subscribers?n=deleted")


@router.get("/bounces")
def bounces(
    console: ConsoleDep,
    kind: str = "",
    source: Annotated[str, Query(max_length=20)] = "",
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
) -> Response:
    chosen = _choice(BounceKind, kind)
    with session_scope(console.web.engine) as session:
        events = summaries.bounce_events(
            session, kind=chosen, source=source, number=page, per_page=PER_PAGE
        )
        sources = summaries.bounce_sources(session)
    filters = {"kind": chosen.value if chosen else "", "source": source}
    context = {
        "events": events,
        "sources": sources,
        "kinds": list(BounceKind),
        "filters": filters,
        "query_string": urlencode({k: v for k, v in filters.items() if v}),
    }
    return console.render("bounces", "bounces", context)


@router.get("/feedback")
def feedback(console: ConsoleDep) -> Response:
    with session_scope(console.web.engine) as session:
        days = summaries.feedback(session, utcnow().date())
    totals = {
        "sent": sum(d.sent for d in days),
        "more": sum(d.more for d in days),
        "less": sum(d.less for d in days),
        "saves": sum(d.saves for d in days),
    }
    return console.render("feedback", "feedback", {"days": days, "totals": totals})


@router.get("/sources")
def sources(console: ConsoleDep) -> Response:
    with session_scope(console.web.engine) as session:
        found = summaries.sources(session, utcnow())
    return console.render("sources", "sources", {"sources": found})

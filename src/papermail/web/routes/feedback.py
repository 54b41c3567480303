"""Feedback from a digest: "more / fewer papers like this" per paper, "mute" per matched term.

A digest carries one signed token (``Purpose.feedback``, naming the digest); the rest of a link's
path names a paper by its rank in that digest and a term by its index among the paper's matched
terms, so a link reaches only the subscriber's own papers and terms. A GET shows one button,
because mail scanners open links and must change nothing; the button POSTs with a CSRF token
bound to the link token, as the manage forms do. No login: the link is the credential.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response
from sqlmodel import Session, col, select

from papermail.db import session_scope
from papermail.emails import format_issue_date
from papermail.models import Digest, DigestItem, Interest, Paper, Subscriber
from papermail.services import feedback, interests
from papermail.services.digests import entry_for_item
from papermail.services.subscriptions import InvalidInput, topics_of
from papermail.tokens import Purpose
from papermail.web.context import Web, WebDep
from papermail.web.links import open_digest, path_for
from papermail.web.pages import PageError, render
from papermail.web.routes.common import CsrfField, require_csrf
from papermail.web.security import make_csrf

routes = APIRouter()
router = APIRouter()  # mounted below under both paths, once the routes are declared
SHORT_PREFIX = "/f"  # what mails link to: every byte of a digest counts (Gmail clips at 102 KB)

MAX_RANK = 1000  # digests hold at most 100 papers; a bigger number never reaches the database


@dataclass(frozen=True)
class Choice:
    """A rating a link asks for, worded for its two pages (the question, then the answer)."""

    value: int  # feedback.LIKE, feedback.DISLIKE, or 0: forget the rating
    question: str
    explain: str
    button: str
    done_title: str
    done: str


CHOICES = {
    "more": Choice(
        feedback.LIKE,
        "More papers like this?",
        "Papers similar to this one will rank higher in your next digests.",
        "More papers like this",
        "Thanks — recorded",
        "You'll see more papers like this one: similar papers rank higher from your next digest.",
    ),
    "less": Choice(
        feedback.DISLIKE,
        "Fewer papers like this?",
        "Papers similar to this one will rank lower in your next digests.",
        "Fewer papers like this",
        "Thanks — recorded",
        "You'll see fewer papers like this one: similar papers rank lower from your next digest.",
    ),
    "clear": Choice(
        0,
        "Remove your rating?",
        "This paper will no longer steer your digests either way.",
        "Remove my rating",
        "Rating removed",
        "This paper no longer steers your digests either way.",
    ),
}


@dataclass(frozen=True)
class Target:
    """What a feedback link names: a paper of one of the subscriber's digests."""

    subscriber: Subscriber
    digest: Digest
    item: DigestItem
    paper: Paper

    @property
    def subscriber_id(self) -> int:
        assert self.subscriber.id is not None
        return self.subscriber.id


def _not_here(web: Web, subscriber: Subscriber, what: str) -> PageError:
    return PageError(
        404,
        f"No such {what} in this digest",
        "The link may have been cut off or changed when it was copied: open it straight from "
        "the email.",
        action_url=path_for(web, Purpose.manage, subscriber),
        action_label="Open my settings",
    )


def _open(web: Web, session: Session, token: str, rank: int) -> Target:
    """The paper at `rank` in the digest the token names, or a clear 4xx page."""
    subscriber, digest = open_digest(web, session, Purpose.feedback, token)
    row = None
    if 1 <= rank <= MAX_RANK:
        row = session.exec(
            select(DigestItem, Paper)
            .join(Paper, col(Paper.id) == DigestItem.paper_id)
            .where(DigestItem.digest_id == digest.id, DigestItem.rank == rank)
        ).first()
    if row is None:
        raise _not_here(web, subscriber, "paper")
    return Target(subscriber, digest, *row)


def _choice(choice: str) -> Choice:
    wanted = CHOICES.get(choice)
    if wanted is None:
        raise PageError(404, "Page not found", "There is no page at this address.")
    return wanted


def _context(web: Web, target: Target, token: str, **extra: Any) -> dict[str, Any]:
    """What both feedback pages show: the paper, its digest, the form binding, the way back."""
    return {
        "entry": entry_for_item(target.item, target.paper),
        "issue_label": format_issue_date(target.digest.issue_date),
        "base_path": f"/feedback/{token}/{target.item.rank}",
        "csrf": make_csrf(web.secret, token),
        "manage_path": path_for(web, Purpose.manage, target.subscriber),
        "digest_path": path_for(web, Purpose.view, target.subscriber, d=target.digest.id),
        **extra,
    }


def shown_under(session: Session, web: Web, target: Target) -> dict[str, Any]:
    """The interest the paper was shown under (its digest item's; the first one if that is
    gone), for pages that say what a rating or a mute counts for: its name and page when the
    reader has several interests, else empty (one interest: nothing to tell apart)."""
    topics = topics_of(session, target.subscriber_id)
    topic = next((t for t in topics if t.id == target.item.topic_id), topics[0] if topics else None)
    if topic is None or len(topics) < 2:
        return {"interest": topic, "interest_name": "", "interest_path": ""}
    manage = path_for(web, Purpose.manage, target.subscriber)
    return {
        "interest": topic,
        "interest_name": topic.name,
        "interest_path": f"{manage}/interests/{topic.id}",
    }


def _next_paper(session: Session, target: Target, token: str) -> dict[str, Any]:
    """After a rating: the digest's next paper, with its own rating links (none after the last)."""
    row = session.exec(
        select(DigestItem, Paper)
        .join(Paper, col(Paper.id) == DigestItem.paper_id)
        .where(DigestItem.digest_id == target.digest.id, DigestItem.rank > target.item.rank)
        .order_by(col(DigestItem.rank))
    ).first()
    if row is None:
        return {"next_entry": None, "next_path": ""}
    item, paper = row
    return {
        "next_entry": entry_for_item(item, paper),
        "next_path": f"/feedback/{token}/{item.rank}",
    }


def _rating_page(
    web: Web,
    session: Session,
    target: Target,
    token: str,
    choice: str,
    current: int,
    *,
    done: bool,
) -> Response:
    nxt = _next_paper(session, target, token) if done else {"next_entry": None, "next_path": ""}
    under = shown_under(session, web, target)
    context = _context(
        web,
        target,
        token,
        interest_name=under["interest_name"],
        interest_path=under["interest_path"],
        choice=choice,
        wanted=CHOICES[choice],
        current=current,
        done=done,
        others=[(name, c) for name, c in CHOICES.items() if c.value != current],
        **nxt,
    )
    return render(web, "feedback_rate", context)


@routes.get("/{choice}")
def rating_page(token: str, rank: int, choice: str, web: WebDep) -> Response:
    """Asks; records nothing."""
    _choice(choice)
    with session_scope(web.engine) as session:
        target = _open(web, session, token, rank)
        current = feedback.rating_of(
            session, subscriber_id=target.subscriber_id, paper_id=target.paper.id
        )
        return _rating_page(web, session, target, token, choice, current, done=False)


@routes.post("/{choice}")
def rate(token: str, rank: int, choice: str, web: WebDep, csrf: CsrfField = "") -> Response:
    wanted = _choice(choice)
    with session_scope(web.engine) as session:
        target = _open(web, session, token, rank)
        require_csrf(web, token, csrf)
        sid, pid = target.subscriber_id, target.paper.id
        if wanted.value:  # it counts for the interest the paper was shown under
            feedback.record_rating(
                session,
                subscriber_id=sid,
                paper_id=pid,
                value=wanted.value,
                topic_id=target.item.topic_id,
            )
        else:
            feedback.remove_rating(session, subscriber_id=sid, paper_id=pid)
        return _rating_page(web, session, target, token, choice, wanted.value, done=True)


def _term(web: Web, target: Target, index: int) -> str:
    if not 0 <= index < len(target.item.matched):
        raise _not_here(web, target.subscriber, "term")
    return target.item.matched[index]


def _mute_page(
    web: Web, session: Session, target: Target, token: str, term: str, index: int, *, done: bool
) -> Response:
    under = shown_under(session, web, target)
    if under["interest"] is not None:  # the interest the term would be muted in
        keywords, excluded = interests.keywords_and_exclusions(session, under["interest"])
    else:  # keywords stored before named interests: all of them are the one interest
        rows = session.exec(
            select(Interest).where(Interest.subscriber_id == target.subscriber_id)
        ).all()
        keywords = tuple(i.phrase for i in rows if not i.negative)
        excluded = tuple(i.phrase for i in rows if i.negative)
    folded = term.casefold()
    is_keyword = folded in {k.casefold() for k in keywords}
    context = _context(
        web,
        target,
        token,
        term=term,
        index=index,
        done=done or folded in {e.casefold() for e in excluded},
        is_keyword=is_keyword,
        only_keyword=is_keyword and len(keywords) == 1,
        excludes=web.settings.negative_factor == 0,
        interest_name=under["interest_name"],
        interest_path=under["interest_path"],
    )
    return render(web, "feedback_mute", context)


@routes.get("/mute/{index}")
def mute_page(token: str, rank: int, index: int, web: WebDep) -> Response:
    """Asks; mutes nothing (or says the term is muted already)."""
    with session_scope(web.engine) as session:
        target = _open(web, session, token, rank)
        term = _term(web, target, index)
        return _mute_page(web, session, target, token, term, index, done=False)


@routes.post("/mute/{index}")
def mute(token: str, rank: int, index: int, web: WebDep, csrf: CsrfField = "") -> Response:
    with session_scope(web.engine) as session:
        target = _open(web, session, token, rank)
        term = _term(web, target, index)
        require_csrf(web, token, csrf)
        try:
            feedback.mute_term(  # in the interest the paper was shown under
                session,
                subscriber_id=target.subscriber_id,
                term=term,
                topic_id=target.item.topic_id,
            )
        except InvalidInput as exc:
            raise PageError(
                400,
                "This term could not be muted",
                f"{exc}. Remove a keyword or an exclusion on your settings page first.",
                action_url=path_for(web, Purpose.manage, target.subscriber),
                action_label="Open my settings",
            ) from None
        return _mute_page(web, session, target, token, term, index, done=True)


for _prefix in ("/feedback", SHORT_PREFIX):
    router.include_router(routes, prefix=_prefix + "/{token}/{rank}")

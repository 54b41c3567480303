"""The reading list (issue 13 item 4): "Save" from a digest (GET shows one button, POST saves:
mail scanners open links and must change nothing), the list behind the manage link, its BibTeX
export and its own private Atom feed (``Purpose.saved``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form
from fastapi.responses import Response

from papermail.db import session_scope
from papermail.services import reading_list
from papermail.tokens import Purpose
from papermail.web.context import WebDep
from papermail.web.links import open_link, path_for
from papermail.web.pages import render
from papermail.web.routes.common import CsrfField, require_csrf, see_other
from papermail.web.routes.feedback import SHORT_PREFIX, _context, _open, shown_under
from papermail.web.security import make_csrf

router = APIRouter()
save_routes = APIRouter()


def _save_page(web, session, token: str, rank: int, *, done: bool) -> Response:
    target = _open(web, session, token, rank)
    saved = reading_list.is_saved(
        session, subscriber_id=target.subscriber_id, paper_id=target.paper.id
    )
    context = _context(
        web,
        target,
        token,
        interest_name=shown_under(session, web, target)["interest_name"],
        done=done,
        saved=saved,
        list_path=f"{path_for(web, Purpose.manage, target.subscriber)}/saved",
    )
    return render(web, "save", context)


@save_routes.get("/save")
def save_page(token: str, rank: int, web: WebDep) -> Response:
    """Asks; saves nothing."""
    with session_scope(web.engine) as session:
        return _save_page(web, session, token, rank, done=False)


@save_routes.post("/save")
def save(token: str, rank: int, web: WebDep, csrf: CsrfField = "") -> Response:
    with session_scope(web.engine) as session:
        target = _open(web, session, token, rank)
        require_csrf(web, token, csrf)
        reading_list.save_paper(
            session,
            subscriber_id=target.subscriber_id,
            paper_id=target.paper.id,
            topic_id=target.item.topic_id,
        )
        session.flush()
        return _save_page(web, session, token, rank, done=True)


for _prefix in ("/feedback", SHORT_PREFIX):
    router.include_router(save_routes, prefix=_prefix + "/{token}/{rank}")


@router.get("/manage/{token}/saved")
def reading_list_page(token: str, web: WebDep, n: str = "") -> Response:
    with session_scope(web.engine) as session:
        subscriber, _ = open_link(web, session, Purpose.manage, token)
        assert subscriber.id is not None
        saved = reading_list.saved_papers(session, subscriber.id)
        context = {
            "email": subscriber.email,
            "token": token,
            "csrf": make_csrf(web.secret, token),
            "saved": saved,
            "notice": "Removed from your reading list." if n == "removed" else "",
            "feed_url": web.url(path_for(web, Purpose.saved, subscriber)),
        }
        return render(web, "saved", context)


@router.post("/manage/{token}/saved/remove")
def remove_saved(
    token: str,
    web: WebDep,
    csrf: CsrfField = "",
    paper: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    with session_scope(web.engine) as session:
        subscriber, _ = open_link(web, session, Purpose.manage, token)
        require_csrf(web, token, csrf)
        assert subscriber.id is not None
        reading_list.unsave_paper(session, subscriber_id=subscriber.id, paper_id=paper)
    return see_other(f"/manage/{token}/saved?n=removed")


@router.get("/manage/{token}/saved.bib")
def reading_list_bibtex(token: str, web: WebDep) -> Response:
    with session_scope(web.engine) as session:
        subscriber, _ = open_link(web, session, Purpose.manage, token)
        assert subscriber.id is not None
        papers = [s.paper for s in reading_list.saved_papers(session, subscriber.id)]
        body = reading_list.bibtex(papers)
    return Response(
        body,
        media_type="application/x-bibtex; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="papermail-reading-list.bib"'},
    )


@router.get("/saved/{token}.atom")
def reading_list_feed(token: str, web: WebDep) -> Response:
    with session_scope(web.engine) as session:
        subscriber, _ = open_link(web, session, Purpose.saved, token)
        assert subscriber.id is not None
        body = reading_list.atom_feed(
            subscriber,
            reading_list.saved_papers(session, subscriber.id, limit=reading_list.FEED_SIZE),
            base_url=web.settings.base_url,
            self_url=web.url(f"/saved/{token}.atom"),
        )
    return Response(body, media_type="application/atom+xml; charset=utf-8")

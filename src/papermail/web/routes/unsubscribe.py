"""Unsubscribe: a page with one button, RFC 8058 one-click POSTs, and undo.

A GET never unsubscribes (mail scanners open links). A POST with the body
``List-Unsubscribe=One-Click`` comes from a mail provider, which cannot hold a CSRF token: it
unsubscribes at once and gets a bare 200. Any other POST is the page's button and needs its CSRF
token. Unsubscribe links ignore the token version, so a link in an old mail still works.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form
from fastapi.responses import PlainTextResponse, Response
from sqlmodel import Session

from papermail.db import session_scope
from papermail.models import Subscriber, utcnow
from papermail.services import subscriptions
from papermail.tokens import Purpose
from papermail.web.context import Web, WebDep
from papermail.web.links import open_link, path_for
from papermail.web.pages import PageError, render
from papermail.web.routes.common import CsrfField, require_csrf, see_other
from papermail.web.security import make_csrf

router = APIRouter(prefix="/unsubscribe/{token}")


def _page(web: Web, subscriber: Subscriber, token: str, name: str) -> Response:
    context = {
        "email": subscriber.email,
        "token": token,
        "csrf": make_csrf(web.secret, token),
        "unsubscribed": subscriber.unsubscribed_at is not None,
    }
    return render(web, name, context)


def _open(web: Web, session: Session, token: str) -> Subscriber:
    subscriber, _ = open_link(web, session, Purpose.unsubscribe, token, check_version=False)
    return subscriber


@router.get("")
def unsubscribe_page(token: str, web: WebDep) -> Response:
    with session_scope(web.engine) as session:
        subscriber = _open(web, session, token)
        return _page(web, subscriber, token, "unsubscribe")


@router.post("")
def unsubscribe(
    token: str,
    web: WebDep,
    csrf: CsrfField = "",
    one_click: Annotated[str, Form(alias="List-Unsubscribe", max_length=100)] = "",
) -> Response:
    if one_click == "One-Click":
        try:
            with session_scope(web.engine) as session:
                subscriptions.unsubscribe(session, _open(web, session, token), now=utcnow())
        except PageError as exc:
            if exc.status != 404:  # a deleted subscriber gets nothing either: that is success
                raise
        return PlainTextResponse("unsubscribed\n")
    with session_scope(web.engine) as session:
        subscriber = _open(web, session, token)
        require_csrf(web, token, csrf)
        subscriptions.unsubscribe(session, subscriber, now=utcnow())
        return _page(web, subscriber, token, "unsubscribed")


@router.post("/resubscribe")
def resubscribe(token: str, web: WebDep, csrf: CsrfField = "") -> Response:
    """Undo from the subscriber's own link: no new confirmation; old links stay refused."""
    with session_scope(web.engine) as session:
        subscriber, _ = open_link(web, session, Purpose.unsubscribe, token)
        require_csrf(web, token, csrf)
        subscriptions.resubscribe(session, subscriber, now=utcnow())
        manage = path_for(web, Purpose.manage, subscriber)
    return see_other(f"{manage}?n=resubscribed")

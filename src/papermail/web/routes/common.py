"""Small helpers the routers share: form CSRF checks, rate limits and redirects."""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum
from typing import Annotated

from fastapi import Form, Request
from fastapi.responses import RedirectResponse, Response

from papermail.models import utcnow
from papermail.services import subscriptions
from papermail.services.ratelimit import count_hits
from papermail.web.context import Web
from papermail.web.pages import PageError
from papermail.web.security import CSRF_COOKIE, check_csrf, client_ip, csrf_cookie, make_csrf

CsrfField = Annotated[str, Form()]

CSRF_REFUSED = PageError(
    403,
    "This form has expired",
    "The form was open too long, or it was not sent from a papermail page. Go back, reload the "
    "page and try again.",
)


def require_csrf(web: Web, binding: str, value: str) -> None:
    """Refuse a form whose CSRF token was not made for this page (nothing changes)."""
    if not check_csrf(web.secret, binding, value):
        raise CSRF_REFUSED


def see_other(path: str) -> RedirectResponse:
    """Post/redirect/get: a reload never sends a form twice."""
    return RedirectResponse(path, status_code=303)


class PublicForm:
    """CSRF for forms without a link token: bound to the browser's random ``pm_csrf`` cookie."""

    def __init__(self, web: Web, request: Request) -> None:
        self.web = web
        self.nonce, self.new = csrf_cookie(request)
        self.request = request

    def token(self) -> str:
        return make_csrf(self.web.secret, "public|" + self.nonce)

    def valid(self, value: str) -> bool:
        return not self.new and check_csrf(self.web.secret, "public|" + self.nonce, value)

    def finish(self, response: Response) -> Response:
        if self.new:
            response.set_cookie(
                CSRF_COOKIE,
                self.nonce,
                httponly=True,
                samesite="lax",
                secure=self.web.settings.base_url.lower().startswith("https://"),
                path="/",
            )
        return response


class Limit(StrEnum):
    ok = "ok"
    client = "client"  # this client IP made too many requests: it is told so (429)
    address = "address"  # the address got enough mails: nothing is sent, and nobody is told


def rate_limit(web: Web, request: Request, email: str) -> Limit:
    """Count one mail-sending request, atomically (concurrent bursts cannot get past the
    limits). The per-address limit only limits the mails sent to that address: the requester
    sees the same answer, so a stranger cannot lock an address out of anything but extra mail
    (and its owner's signed links never pass through here)."""
    s = web.settings
    ip, address = subscriptions.ip_key(client_ip(request)), subscriptions.address_key(email)
    over = count_hits(
        web.engine,
        [(ip, s.subscribe_limit_per_ip), (address, s.subscribe_limit_per_address)],
        window=timedelta(minutes=s.rate_limit_window_minutes),
        now=utcnow(),
        redis_url=s.redis_url,
    )
    return Limit.ok if over is None else Limit.client if over == ip else Limit.address

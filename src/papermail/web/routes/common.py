"""Small helpers the routers share: form CSRF checks, rate limits and redirects."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import Form, Request
from fastapi.responses import RedirectResponse, Response

from papermail.db import session_scope
from papermail.models import utcnow
from papermail.services import subscriptions
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


def rate_limited(web: Web, request: Request, email: str) -> bool:
    """Count one mail-sending request; True if the address or the client IP is over its limit."""
    s = web.settings
    limits = {
        subscriptions.ip_key(client_ip(request)): s.subscribe_limit_per_ip,
        subscriptions.address_key(email): s.subscribe_limit_per_address,
    }
    with session_scope(web.engine) as session:
        over = subscriptions.hit_rate_limit(
            session,
            limits=limits,
            window=timedelta(minutes=s.rate_limit_window_minutes),
            now=utcnow(),
        )
    return over is not None

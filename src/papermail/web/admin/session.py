"""The console's session: a cookie signed with SECRET_KEY (itsdangerous), scoped to /admin.

The cookie holds the operator's id, a stamp of their password hash (a new password ends every
session), a random nonce the console's CSRF tokens are bound to, and the stage: ``totp`` between
the password and the code, ``in`` after. It is HttpOnly, SameSite=Strict, Secure under an https
BASE_URL, and expires (ADMIN_SESSION_HOURS; five minutes for the TOTP step), checked again from
its signed timestamp on every request. Roles are read from the database on every request.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import Response
from itsdangerous import BadSignature, URLSafeTimedSerializer

from papermail.db import session_scope
from papermail.models import Operator, OperatorRole
from papermail.services.operators import password_stamp
from papermail.web.context import Web, WebDep
from papermail.web.pages import PageError, render
from papermail.web.routes.common import require_csrf
from papermail.web.security import make_csrf

COOKIE = "pm_admin"
PATH = "/admin"
SALT = "papermail.admin.session"
TOTP_SECONDS = 300
SIGNED_IN, AWAITING_CODE = "in", "totp"

ADMINS_ONLY = PageError(
    403,
    "Admins only",
    "Your operator account is read-only: an admin can suspend, resume, delete and export.",
    action_url="/admin",
    action_label="Back to the console",
)


@dataclass(frozen=True)
class Seal:
    operator_id: int
    stamp: str
    nonce: str
    stage: str


def _serializer(secret: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret, salt=SALT)


def seal(secret: str, value: Seal) -> str:
    return _serializer(secret).dumps([value.operator_id, value.stamp, value.nonce, value.stage])


def unseal(secret: str, cookie: str, *, max_age: float) -> Seal | None:
    """The session in a cookie signed with `secret` less than `max_age` seconds ago, or None."""
    try:
        data = _serializer(secret).loads(cookie, max_age=int(max_age))
    except BadSignature:  # also a cookie signed too long ago (SignatureExpired)
        return None
    if not (isinstance(data, list) and len(data) == 4 and isinstance(data[0], int)):
        return None
    return Seal(*data)


def new_seal(operator: Operator, stage: str) -> Seal:
    assert operator.id is not None
    return Seal(
        operator.id, password_stamp(operator.password_hash), secrets.token_urlsafe(16), stage
    )


def max_age(web: Web, stage: str) -> float:
    return web.settings.admin_session_hours * 3600 if stage == SIGNED_IN else TOTP_SECONDS


def open_session(web: Web, response: Response, value: Seal) -> Response:
    response.set_cookie(
        COOKIE,
        seal(web.secret, value),
        max_age=int(max_age(web, value.stage)),
        path=PATH,
        httponly=True,
        samesite="strict",
        secure=web.settings.base_url.lower().startswith("https://"),
    )
    return response


def close_session(web: Web, response: Response) -> Response:
    response.delete_cookie(
        COOKIE,
        path=PATH,
        httponly=True,
        samesite="strict",
        secure=web.settings.base_url.lower().startswith("https://"),
    )
    return response


def read_session(web: Web, request: Request, stage: str) -> tuple[Seal, Operator] | None:
    """The valid session of `stage` and its operator (still there, same password), or None."""
    value = unseal(web.secret, request.cookies.get(COOKIE, ""), max_age=max_age(web, stage))
    if value is None or value.stage != stage:
        return None
    with session_scope(web.engine) as session:
        operator = session.get(Operator, value.operator_id)
    if operator is None or password_stamp(operator.password_hash) != value.stamp:
        return None
    return value, operator


class LoginRequired(Exception):
    """No valid session: the browser is sent to the login page (and back after it)."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


@dataclass(frozen=True)
class Console:
    """A signed-in request: the operator, their CSRF token, and rendering in the console."""

    web: Web
    operator: Operator
    seal: Seal

    @property
    def is_admin(self) -> bool:
        return self.operator.role == OperatorRole.admin

    @property
    def csrf(self) -> str:
        return make_csrf(self.web.secret, "admin|" + self.seal.nonce)

    def check_csrf(self, value: str) -> None:
        require_csrf(self.web, "admin|" + self.seal.nonce, value)

    def require_admin(self) -> None:
        if not self.is_admin:
            raise ADMINS_ONLY

    def render(self, name: str, section: str, context: dict[str, Any], **kwargs: Any) -> Response:
        return render(
            self.web,
            f"admin/{name}",
            {"console": self, "section": section, "csrf": self.csrf, **context},
            **kwargs,
        )


def signed_in(request: Request, web: WebDep) -> Console:
    found = read_session(web, request, SIGNED_IN)
    if found is None:
        raise LoginRequired(request.url.path if request.method == "GET" else PATH)
    return Console(web, found[1], found[0])


ConsoleDep = Annotated[Console, Depends(signed_in)]

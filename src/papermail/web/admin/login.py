"""Logging in to the console: username and password, then a TOTP code when the account has
one; logging out. Every attempt is counted per client IP (services.ratelimit); failures count
toward the account's lockout (services.operators)."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from papermail.db import session_scope
from papermail.models import Operator, utcnow
from papermail.services import subscriptions
from papermail.services.operators import Lockout, Outcome, authenticate, second_factor
from papermail.services.ratelimit import count_hits
from papermail.web.admin.session import (
    AWAITING_CODE,
    PATH,
    SIGNED_IN,
    ConsoleDep,
    close_session,
    new_seal,
    open_session,
    read_session,
)
from papermail.web.context import Web, WebDep
from papermail.web.pages import render
from papermail.web.routes.common import CSRF_REFUSED, CsrfField, PublicForm, require_csrf, see_other
from papermail.web.security import client_ip, make_csrf

router = APIRouter(prefix=PATH)

REFUSED = "Wrong username or password."
WRONG_CODE = "That code is not right (or too old): type the code your app shows now."
TOO_MANY = "Too many login attempts from your network. Try again later."
NOTICES = {"out": "You are logged out.", "expired": "Please log in again."}


def safe_next(value: str) -> str:
    """Only a console path: never another site (`//host`) or a backslash trick."""
    if value.startswith(PATH) and not value.startswith("//") and "\\" not in value:
        return value
    return PATH


def _lockout(web: Web) -> Lockout:
    s = web.settings
    return Lockout(s.admin_max_failed_logins, timedelta(minutes=s.admin_lockout_minutes))


def locked_message(web: Web) -> str:
    minutes = max(1, math.ceil(web.settings.admin_lockout_minutes))
    return (
        f"Too many failed logins: this account is locked for {minutes} "
        f"minute{'s' if minutes != 1 else ''}. Try again later."
    )


def _over_ip_limit(web: Web, request: Request) -> bool:
    """Count one login attempt from this client IP; True when it is over the limit."""
    s = web.settings
    key = "admin-" + subscriptions.ip_key(client_ip(request))
    over = count_hits(
        web.engine,
        [(key, s.admin_login_limit_per_ip)],
        window=timedelta(minutes=s.rate_limit_window_minutes),
        now=utcnow(),
        redis_url=s.redis_url,
    )
    return over is not None


def _login_page(
    web: Web, form: PublicForm, *, next_path: str, username: str = "", error: str = "",
    notice: str = "", status: int = 200,
) -> Response:  # fmt: skip
    context = {
        "csrf": form.token(),
        "next_path": next_path,
        "username": username,
        "error": error,
        "notice": notice,
    }
    return form.finish(render(web, "admin/login", context, status=status))


@router.get("/login")
def login_form(request: Request, web: WebDep, next: str = PATH, n: str = "") -> Response:
    if read_session(web, request, SIGNED_IN) is not None:
        return see_other(safe_next(next))
    form = PublicForm(web, request)
    return _login_page(web, form, next_path=safe_next(next), notice=NOTICES.get(n, ""))


@router.post("/login")
def login(
    request: Request,
    web: WebDep,
    csrf: CsrfField,
    username: Annotated[str, Form(max_length=200)] = "",
    password: Annotated[str, Form(max_length=1000)] = "",
    next: Annotated[str, Form(max_length=500)] = PATH,
) -> Response:
    form = PublicForm(web, request)
    if not form.valid(csrf):
        raise CSRF_REFUSED
    page = {"next_path": safe_next(next), "username": username.strip()}
    if _over_ip_limit(web, request):
        return _login_page(web, form, error=TOO_MANY, status=429, **page)
    with session_scope(web.engine) as session:
        attempt = authenticate(
            web.engine,
            session,
            username=username,
            password=password,
            lockout=_lockout(web),
            now=utcnow(),
            redis_url=web.settings.redis_url,
        )
    if attempt.outcome == Outcome.locked:
        return _login_page(web, form, error=locked_message(web), status=429, **page)
    if attempt.outcome == Outcome.refused or attempt.operator is None:
        return _login_page(web, form, error=REFUSED, status=401, **page)
    operator = attempt.operator
    if operator.totp_secret:
        response = see_other(f"{PATH}/login/code?" + urlencode({"next": page["next_path"]}))
        return open_session(web, response, new_seal(operator, AWAITING_CODE))
    return open_session(web, see_other(page["next_path"]), new_seal(operator, SIGNED_IN))


def _code_page(
    web: Web, token: str, *, next_path: str, error: str = "", status: int = 200
) -> Response:
    context = {"csrf": token, "next_path": next_path, "error": error}
    return render(web, "admin/code", context, status=status)


@router.get("/login/code")
def code_form(request: Request, web: WebDep, next: str = PATH) -> Response:
    pending = read_session(web, request, AWAITING_CODE)
    if pending is None:
        return see_other(f"{PATH}/login?n=expired")
    token = make_csrf(web.secret, "admin|" + pending[0].nonce)
    return _code_page(web, token, next_path=safe_next(next))


@router.post("/login/code")
def code(
    request: Request,
    web: WebDep,
    csrf: CsrfField,
    code: Annotated[str, Form(max_length=20)] = "",
    next: Annotated[str, Form(max_length=500)] = PATH,
) -> Response:
    pending = read_session(web, request, AWAITING_CODE)
    if pending is None:
        return see_other(f"{PATH}/login?n=expired")
    seal, operator = pending
    require_csrf(web, "admin|" + seal.nonce, csrf)
    next_path = safe_next(next)
    token = make_csrf(web.secret, "admin|" + seal.nonce)
    if _over_ip_limit(web, request):
        return _code_page(web, token, next_path=next_path, error=TOO_MANY, status=429)
    with session_scope(web.engine) as session:
        current = session.get(Operator, operator.id)
        assert current is not None
        attempt = second_factor(session, current, code=code, lockout=_lockout(web), now=utcnow())
    if attempt.outcome == Outcome.locked:
        form = PublicForm(web, request)
        response = _login_page(
            web, form, next_path=next_path, error=locked_message(web), status=429
        )
        return close_session(web, response)
    if attempt.outcome == Outcome.refused:
        return _code_page(web, token, next_path=next_path, error=WRONG_CODE, status=401)
    return open_session(web, see_other(next_path), new_seal(current, SIGNED_IN))


@router.post("/logout")
def logout(console: ConsoleDep, csrf: CsrfField) -> Response:
    console.check_csrf(csrf)
    return close_session(console.web, see_other(f"{PATH}/login?n=out"))

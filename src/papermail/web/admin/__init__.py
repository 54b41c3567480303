"""The operator console at /admin (issue 14): login with an operator account, today's job and
the last 30 days, subscribers, bounces and complaints, feedback, sources.

`install(app)` adds its routes and the redirect to the login page to the one web app.
"""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.responses import Response

from papermail.web.admin import login, pages
from papermail.web.admin.session import PATH, LoginRequired
from papermail.web.routes.common import see_other


async def _to_login(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, LoginRequired)
    query = "" if exc.next_path == PATH else "?" + urlencode({"next": exc.next_path})
    return see_other(f"{PATH}/login{query}")


def install(app: FastAPI) -> None:
    app.include_router(login.router)
    app.include_router(pages.router)
    app.add_exception_handler(LoginRequired, _to_login)

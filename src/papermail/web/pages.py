"""HTML responses: rendering ``templates/web/`` and the error pages (never a traceback)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from papermail.web.context import Web, get_web

log = logging.getLogger(__name__)


class PageError(Exception):
    """Stops a request with a clear page: a title, one sentence, and what to do next."""

    def __init__(
        self,
        status: int,
        title: str,
        message: str,
        *,
        action_url: str = "/",
        action_label: str = "Go to papermail",
    ) -> None:
        super().__init__(title)
        self.status = status
        self.title = title
        self.message = message
        self.action_url = action_url
        self.action_label = action_label


def render(
    web: Web,
    name: str,
    context: Mapping[str, Any],
    *,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
) -> HTMLResponse:
    """Render ``web/NAME.html.j2`` (autoescaped, strict undefined) into a response."""
    template = web.environment.get_template(f"web/{name}.html.j2")
    html = template.render({"static_url": web.static_url, "notice": "", **context})
    return HTMLResponse(html, status_code=status, headers=dict(headers or {}))


def error_page(web: Web, error: PageError) -> HTMLResponse:
    return render(
        web,
        "error",
        {
            "title": error.title,
            "message": error.message,
            "action_url": error.action_url,
            "action_label": error.action_label,
            "status": error.status,
        },
        status=error.status,
    )


_STATUS_TEXT = {
    404: ("Page not found", "There is no page at this address."),
    405: ("Not allowed", "This address does not accept that kind of request."),
}


def _wants_json(request: Request) -> bool:
    return request.url.path.endswith("/preview") or "application/json" in request.headers.get(
        "content-type", ""
    )


async def page_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, PageError)
    if _wants_json(request):
        return JSONResponse({"error": exc.title, "detail": exc.message}, status_code=exc.status)
    return error_page(get_web(request), exc)


async def http_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    title, message = _STATUS_TEXT.get(exc.status_code, ("Request refused", str(exc.detail)))
    if _wants_json(request):
        return JSONResponse({"error": title}, status_code=exc.status_code, headers=exc.headers)
    response = error_page(get_web(request), PageError(exc.status_code, title, message))
    for name, value in (exc.headers or {}).items():
        response.headers[name] = value
    return response


async def validation_error_handler(request: Request, exc: Exception) -> Response:
    """Malformed requests (a form field of the wrong kind, bad JSON) get a 400, not a 422 dump."""
    if _wants_json(request):
        return JSONResponse({"error": "malformed request"}, status_code=400)
    error = PageError(400, "Request not understood", "Some of the sent data was malformed.")
    return error_page(get_web(request), error)


async def server_error_handler(request: Request, exc: Exception) -> Response:
    route = request.scope.get("route")  # the route's pattern: the URL itself holds a credential
    where = getattr(route, "path", "?")
    log.error("unhandled error on %s %s", request.method, where, exc_info=exc)
    error = PageError(
        500, "Something went wrong", "papermail could not finish this request. Try again later."
    )
    return error_page(get_web(request), error)


HANDLERS = {
    PageError: page_error_handler,
    StarletteHTTPException: http_error_handler,
    RequestValidationError: validation_error_handler,
    Exception: server_error_handler,
}

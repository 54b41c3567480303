"""The web app factory: settings in, FastAPI app out (tests build their own)."""

from __future__ import annotations

import logging
import re

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from papermail.db import make_engine
from papermail.emails import create_environment
from papermail.migrate import current_revision, head_revision
from papermail.settings import Settings
from papermail.web import admin
from papermail.web.context import Web
from papermail.web.pages import HANDLERS
from papermail.web.preview import PreviewCache
from papermail.web.routes import (
    feedback,
    interests,
    manage,
    reading,
    saved,
    subscribe,
    unsubscribe,
    webhooks,
)
from papermail.web.routes import metrics as metrics_route
from papermail.web.security import SecurityHeaders


class VersionedStatic(StaticFiles):
    """Static files are linked with ``?v=<hash>``, so browsers may keep them for a year."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        if response.status_code == 200:
            response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
        return response


# Every path that carries a link token: /manage/TOKEN/..., /feed/TOKEN.atom, /f/TOKEN/1/more.
TOKEN_PATH = re.compile(
    r"^(/(?:confirm|manage|unsubscribe|digest|feed|feedback|f)/)([^/?#]+?)(\.atom)?(?=[/?#]|$)"
)


def redact_path(path: str) -> str:
    """`path` with its link token replaced by ``[token]``: a token is a credential."""
    return TOKEN_PATH.sub(r"\1[token]\3", path, count=1)


class RedactTokens(logging.Filter):
    """Cuts link tokens out of uvicorn's access log lines (client, method, path, version,
    status): the log is read by more people, and kept longer, than a subscriber's mail."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], redact_path(args[2]), *args[3:])
        return True


def redact_access_log() -> None:
    """Install `RedactTokens` on uvicorn's access logger (once per process)."""
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactTokens) for f in access.filters):
        access.addFilter(RedactTokens())


def create_app(settings: Settings, *, engine: Engine | None = None) -> FastAPI:
    """The subscriber web app. The database must be migrated (``papermail db upgrade``;
    ``serve`` checks, and refuses in production)."""
    redact_access_log()
    static_dir = settings.templates_dir / "web" / "static"
    web = Web(
        settings=settings,
        engine=engine or make_engine(settings),
        environment=create_environment(settings.templates_dir),
        static_dir=static_dir,
        preview=PreviewCache(settings),
    )
    app = FastAPI(
        title="papermail",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        exception_handlers=HANDLERS,  # type: ignore[arg-type]
    )
    app.state.web = web
    app.add_middleware(SecurityHeaders, settings=settings)
    app.mount("/static", VersionedStatic(directory=static_dir), name="static")
    for module in (
        subscribe,
        manage,
        interests,
        unsubscribe,
        reading,
        saved,
        feedback,
        webhooks,
        metrics_route,
    ):
        app.include_router(module.router)
    admin.install(app)  # the operator console at /admin (issue 14)
    app.add_api_route("/healthz", _health(web), methods=["GET"], include_in_schema=False)
    return app


def _health(web: Web):
    """For load balancers and compose healthchecks: 200 only with a reachable, migrated DB."""

    def healthz() -> JSONResponse:
        try:
            revision = current_revision(web.engine)
        except SQLAlchemyError:
            return JSONResponse({"ok": False, "database": "unreachable"}, status_code=503)
        ok = revision == head_revision()
        return JSONResponse({"ok": ok, "schema": revision}, status_code=200 if ok else 503)

    return healthz

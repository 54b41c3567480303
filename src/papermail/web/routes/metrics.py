"""GET /metrics: Prometheus' text format; METRICS_TOKEN, when set, as a bearer token."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool

from papermail import metrics
from papermail.web.context import WebDep

router = APIRouter()


@router.get("/metrics", include_in_schema=False)
async def scrape(request: Request, web: WebDep) -> Response:
    if not metrics.token_ok(web.settings, request.headers.get("authorization")):
        return PlainTextResponse(
            "a bearer token is required\n",
            status_code=401,
            headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
        )
    registry = getattr(request.app.state, "metrics_registry", None)
    if registry is None:
        registry = request.app.state.metrics_registry = metrics.scrape_registry(web.settings)
    body = await run_in_threadpool(metrics.render, registry)  # reads Redis: off the event loop
    return Response(body, media_type=metrics.CONTENT_TYPE, headers={"Cache-Control": "no-store"})

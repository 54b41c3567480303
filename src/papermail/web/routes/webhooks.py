"""POST /webhooks/ses, /webhooks/sendgrid, /webhooks/postmark: bounces and complaints from the
relays, verified (`papermail.webhooks`) and handed to `services.bounces.record_reports`, which
stores each report once and acts on it once.

A relay that is not configured answers 404. A body over WEBHOOK_MAX_BYTES is refused (413),
one that is not JSON 400; a forged or stale signature 403, wrong Basic credentials 401. A
duplicate delivery of an event answers 200 (the relay must stop retrying) and changes nothing.
The log names the relay, the outcome and, per report, the recipient; nothing else personal.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import lru_cache

import httpx
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers

from papermail import metrics, webhooks
from papermail.bounces import BounceReport
from papermail.logfmt import log_event
from papermail.services.bounces import record_reports
from papermail.settings import Settings
from papermail.web.context import Web, get_web
from papermail.webhooks import Rejected

log = logging.getLogger(__name__)
router = APIRouter(prefix="/webhooks")

CERT_MAX_BYTES = 64 * 1024
CERT_CACHE_SIZE = 32
FETCH_TIMEOUT = 10.0


class SnsCertificates:
    """SNS signing certificates by URL, fetched over HTTPS from a host matching
    SES_CERT_HOST_PATTERN only, and kept (SNS signs with few certificates, for months).

    `verify` is what httpx checks the server's TLS certificate against: the system's CAs in
    production; tests pass an SSLContext that trusts their own CA."""

    def __init__(
        self,
        host_pattern: str,
        *,
        verify: ssl.SSLContext | bool = True,
        timeout: float = FETCH_TIMEOUT,
    ) -> None:
        self.host_pattern, self.verify, self.timeout = host_pattern, verify, timeout
        self._cache: OrderedDict[str, x509.Certificate] = OrderedDict()
        self._lock = threading.Lock()

    def _get(self, url: str) -> httpx.Response:
        return httpx.get(url, timeout=self.timeout, verify=self.verify, follow_redirects=False)

    def certificate(self, url: str) -> x509.Certificate:
        if not webhooks.trusted_sns_url(url, self.host_pattern):
            raise Rejected(403, "forbidden", "SigningCertURL is not an HTTPS URL of an SNS host")
        with self._lock:
            cached = self._cache.get(url)
        if cached is not None and cached.not_valid_after_utc >= datetime.now(UTC):
            return cached
        try:
            response = self._get(url)
        except httpx.HTTPError as exc:
            log_event(
                log, "webhook.ses.cert_unavailable", logging.WARNING, error=type(exc).__name__
            )
            raise Rejected(503, "cert_unavailable", "could not fetch the SNS certificate") from None
        if response.status_code != 200 or len(response.content) > CERT_MAX_BYTES:
            raise Rejected(
                503, "cert_unavailable", f"SigningCertURL answered {response.status_code}"
            )
        certificate = webhooks.load_certificate(response.content)
        with self._lock:
            self._cache[url] = certificate
            while len(self._cache) > CERT_CACHE_SIZE:
                self._cache.popitem(last=False)
        return certificate

    def confirm(self, url: object) -> bool:
        """Confirm an SNS subscription by GET of its SubscribeURL, only on a trusted host."""
        if not isinstance(url, str) or not webhooks.trusted_sns_url(url, self.host_pattern):
            return False
        try:
            return self._get(url).status_code == 200
        except httpx.HTTPError:
            return False


def sns_certificates(app: FastAPI, settings: Settings) -> SnsCertificates:
    """The app's certificate cache (tests install one that trusts their CA first)."""
    certificates = getattr(app.state, "sns_certificates", None)
    if certificates is None:
        certificates = app.state.sns_certificates = SnsCertificates(settings.ses_cert_host_pattern)
    return certificates


@lru_cache(maxsize=4)
def _sendgrid_key(text: str) -> ec.EllipticCurvePublicKey:
    return webhooks.sendgrid_public_key(text)


# --- the three relays: bytes and headers in, reports out (in a worker thread) ---------------


def _ses(app: FastAPI, settings: Settings, headers: Headers, body: bytes) -> list[BounceReport]:
    message = webhooks.check_sns_message(
        webhooks.parse_json(body), settings.ses_topic_arns, settings.ses_cert_host_pattern
    )
    certificates = sns_certificates(app, settings)
    webhooks.verify_sns_signature(message, certificates.certificate(message["SigningCertURL"]))
    kind = message.get("Type")
    if kind == "SubscriptionConfirmation":
        url = message.get("SubscribeURL")
        confirmed = certificates.confirm(url)
        log_event(
            log,
            "webhook.ses.subscription",
            logging.WARNING,
            topic=message.get("TopicArn"),
            confirmed=confirmed,
            subscribe_url=url,
        )
        return []
    if kind == "UnsubscribeConfirmation":
        log_event(log, "webhook.ses.unsubscribed", logging.WARNING, topic=message.get("TopicArn"))
        return []
    return webhooks.ses_reports(message)


def _sendgrid(
    app: FastAPI, settings: Settings, headers: Headers, body: bytes
) -> list[BounceReport]:
    try:
        key = _sendgrid_key(settings.sendgrid_webhook_public_key)
    except ValueError as exc:
        log_event(log, "webhook.sendgrid.bad_key", logging.ERROR, error=str(exc))
        raise Rejected(500, "misconfigured", "SENDGRID_WEBHOOK_PUBLIC_KEY is unusable") from None
    webhooks.verify_sendgrid(
        key,
        signature=headers.get("x-twilio-email-event-webhook-signature"),
        timestamp=headers.get("x-twilio-email-event-webhook-timestamp"),
        body=body,
        now=time.time(),
    )
    return webhooks.sendgrid_reports(webhooks.parse_json(body))


def _postmark(
    app: FastAPI, settings: Settings, headers: Headers, body: bytes
) -> list[BounceReport]:
    password = settings.postmark_webhook_password.get_secret_value()
    if not webhooks.basic_auth_ok(
        headers.get("authorization"), settings.postmark_webhook_user, password
    ):
        raise Rejected(401, "unauthorized", "wrong or missing Basic credentials")
    return webhooks.postmark_reports(webhooks.parse_json(body))


Handler = Callable[[FastAPI, Settings, Headers, bytes], list[BounceReport]]


def configured(settings: Settings, relay: str) -> bool:
    if relay == "ses":
        return bool(settings.ses_topic_arns)
    if relay == "sendgrid":
        return bool(settings.sendgrid_webhook_public_key.strip())
    return bool(
        settings.postmark_webhook_user and settings.postmark_webhook_password.get_secret_value()
    )


async def _body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise Rejected(413, "too_large", f"body over {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Rejected(413, "too_large", f"body over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _store(web: Web, relay: str, reports: Sequence[BounceReport]) -> int:
    """Store and act on the reports; returns how many were new."""
    if not reports:
        return 0
    events = record_reports(web.engine, web.settings, reports)
    for event in events:
        log_event(
            log,
            "webhook.report",
            relay=relay,
            kind=str(event.kind),
            recipient=event.recipient,
            action=event.action,
        )
    return len(events)


async def _handle(request: Request, relay: str, handler: Handler) -> JSONResponse:
    web = get_web(request)
    try:
        if not configured(web.settings, relay):
            raise Rejected(404, "not_configured", f"the {relay} webhook is not configured")
        body = await _body(request, web.settings.webhook_max_bytes)
        reports = await run_in_threadpool(handler, request.app, web.settings, request.headers, body)
        stored = await run_in_threadpool(_store, web, relay, reports)
    except Rejected as exc:
        metrics.WEBHOOK_REQUESTS.labels(relay, exc.outcome).inc()
        level = logging.INFO if exc.status == 404 else logging.WARNING
        log_event(log, "webhook.rejected", level, relay=relay, status=exc.status, reason=exc.reason)
        headers = {"WWW-Authenticate": 'Basic realm="papermail"'} if exc.status == 401 else None
        return JSONResponse({"ok": False, "error": exc.reason}, exc.status, headers=headers)
    outcome = "accepted" if stored or not reports else "duplicate"
    metrics.WEBHOOK_REQUESTS.labels(relay, outcome).inc()
    return JSONResponse({"ok": True, "reports": len(reports), "stored": stored})


@router.post("/ses", include_in_schema=False)
async def ses(request: Request) -> JSONResponse:
    return await _handle(request, "ses", _ses)


@router.post("/sendgrid", include_in_schema=False)
async def sendgrid(request: Request) -> JSONResponse:
    return await _handle(request, "sendgrid", _sendgrid)


@router.post("/postmark", include_in_schema=False)
async def postmark(request: Request) -> JSONResponse:
    return await _handle(request, "postmark", _postmark)

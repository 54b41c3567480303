"""The one way papermail downloads a feed: a polite GET with timeouts, retries and clear errors.

Sources are third-party services that rate-limit and fail now and then; one retry policy here keeps
every fetcher honest (identify ourselves, back off with jitter, honour a short Retry-After) and
turns every failure into a `SourceError` a person can read.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from papermail import __version__
from papermail.errors import SourceError
from papermail.settings import Settings

log = logging.getLogger(__name__)

USER_AGENT = f"papermail/{__version__}"
BACKOFF_BASE = 0.5  # seconds before the first retry; doubles each time
BACKOFF_CAP = 30.0
MAX_RETRY_AFTER = 60.0  # a server asking for a longer pause gets it: we stop instead
_BODY_EXCERPT = 200


def fetch_bytes(
    url: str,
    *,
    params: Mapping[str, Any] | None = None,
    settings: Settings,
    client: httpx.Client | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> bytes:
    """GET `url` and return the body; retry transport errors, 429 and 5xx, else SourceError."""
    if client is None:
        with httpx.Client(timeout=settings.http_timeout, follow_redirects=True) as own_client:
            return _fetch(url, params, settings=settings, client=own_client, sleep=sleep)
    return _fetch(url, params, settings=settings, client=client, sleep=sleep)


def _fetch(
    url: str,
    params: Mapping[str, Any] | None,
    *,
    settings: Settings,
    client: httpx.Client,
    sleep: Callable[[float], None],
) -> bytes:
    attempts = max(1, settings.http_retries)
    problem = "no attempt made"
    for attempt in range(1, attempts + 1):
        try:
            response = client.get(
                url,
                params=dict(params) if params else None,
                headers={"User-Agent": USER_AGENT},
                timeout=settings.http_timeout,
                follow_redirects=True,
            )
        except httpx.TransportError as exc:
            problem = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            wait = _backoff(attempt)
        else:
            if response.is_success:
                return response.content
            shown = str(response.request.url)
            if not _retryable(response.status_code):
                raise SourceError(f"GET {shown} failed: {_describe(response)}")
            problem = _describe(response)
            wait = _retry_after(response)
            if wait is None:
                wait = _backoff(attempt)
            elif wait > MAX_RETRY_AFTER:
                raise SourceError(
                    f"GET {shown} failed: {problem}; the server asks to wait {wait:.0f} s"
                )
        if attempt < attempts:
            log.info("GET %s: %s; retry %d/%d in %.1f s", url, problem, attempt, attempts, wait)
            sleep(wait)
    raise SourceError(f"GET {url} failed after {attempts} attempts: {problem}")


def _retryable(status: int) -> bool:
    return status == 429 or status >= 500


def _backoff(attempt: int) -> float:
    """Exponential backoff with jitter, so that many clients do not retry in lockstep."""
    delay = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (attempt - 1))
    return delay + random.uniform(0, delay / 2)


def _retry_after(response: httpx.Response) -> float | None:
    """Seconds from a Retry-After header (seconds or an HTTP date), None when absent or bad."""
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _describe(response: httpx.Response) -> str:
    """`HTTP 400 Bad Request: <start of the body>`: JSON and text bodies often say why."""
    text = f"HTTP {response.status_code} {response.reason_phrase}".rstrip()
    is_html = "html" in response.headers.get("Content-Type", "").lower()
    body = "" if is_html else " ".join(response.text.split())[:_BODY_EXCERPT]
    return f"{text}: {body}" if body else text

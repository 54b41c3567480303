"""The shared GET: retry policy, error messages and identification, against a mock transport.

A mock transport is right here: what is tested is our retry logic, not a real service (the real
local server test lives in test_sources_hf.py).
"""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from papermail import __version__
from papermail.errors import SourceError
from papermail.settings import Settings
from papermail.sources.http import fetch_bytes

URL = "https://example.org/feed"


def _settings(retries: int = 3) -> Settings:
    return Settings(_env_file=None, http_retries=retries, http_timeout=5.0)  # type: ignore[call-arg]


def _client(*responses: httpx.Response | Exception) -> tuple[httpx.Client, list[httpx.Request]]:
    """A client answering with `responses` in turn (an exception is raised instead)."""
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        outcome = responses[min(len(seen), len(responses)) - 1]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    return httpx.Client(transport=httpx.MockTransport(answer)), seen


def _recorder() -> tuple[Callable[[float], None], list[float]]:
    waits: list[float] = []
    return waits.append, waits


def test_success_sends_params_and_user_agent() -> None:
    client, seen = _client(httpx.Response(200, content=b"payload"))
    sleep, waits = _recorder()
    body = fetch_bytes(URL, params={"a": 1}, settings=_settings(), client=client, sleep=sleep)
    assert body == b"payload"
    assert seen[0].url == httpx.URL(URL, params={"a": 1})
    assert seen[0].headers["User-Agent"] == f"papermail/{__version__}"
    assert waits == []


def test_server_errors_are_retried_with_growing_backoff() -> None:
    client, seen = _client(
        httpx.Response(503), httpx.Response(502), httpx.Response(200, content=b"ok")
    )
    sleep, waits = _recorder()
    assert fetch_bytes(URL, settings=_settings(), client=client, sleep=sleep) == b"ok"
    assert len(seen) == 3
    assert 0.5 <= waits[0] <= 0.75 and 1.0 <= waits[1] <= 1.5  # doubling, plus jitter


def test_429_honours_a_short_retry_after() -> None:
    client, _ = _client(
        httpx.Response(429, headers={"Retry-After": "2"}), httpx.Response(200, content=b"ok")
    )
    sleep, waits = _recorder()
    assert fetch_bytes(URL, settings=_settings(), client=client, sleep=sleep) == b"ok"
    assert waits == [2.0]


def test_long_retry_after_gives_up_at_once() -> None:
    client, seen = _client(httpx.Response(429, headers={"Retry-After": "3600"}))
    sleep, waits = _recorder()
    with pytest.raises(SourceError, match="asks to wait 3600 s"):
        fetch_bytes(URL, settings=_settings(), client=client, sleep=sleep)
    assert len(seen) == 1 and waits == []


def test_client_errors_fail_at_once_with_status_and_url() -> None:
    client, seen = _client(httpx.Response(400, json={"error": "Date is in the future"}))
    sleep, waits = _recorder()
    with pytest.raises(SourceError) as caught:
        fetch_bytes(
            URL, params={"date": "2999-01-01"}, settings=_settings(), client=client, sleep=sleep
        )
    message = str(caught.value)
    assert "HTTP 400 Bad Request" in message
    assert "https://example.org/feed?date=2999-01-01" in message
    assert "Date is in the future" in message
    assert len(seen) == 1 and waits == []


def test_html_error_bodies_are_not_quoted() -> None:
    html = httpx.Response(404, text="<html>" + "x" * 500, headers={"Content-Type": "text/html"})
    client, _ = _client(html)
    with pytest.raises(SourceError, match=r"HTTP 404 Not Found$"):
        fetch_bytes(URL, settings=_settings(), client=client)


def test_transport_errors_are_retried_then_reported() -> None:
    client, seen = _client(httpx.ConnectError("connection refused"))
    sleep, waits = _recorder()
    with pytest.raises(SourceError, match="failed after 3 attempts: ConnectError: connection"):
        fetch_bytes(URL, settings=_settings(), client=client, sleep=sleep)
    assert len(seen) == 3 and len(waits) == 2


def test_timeout_then_success() -> None:
    client, seen = _client(httpx.ReadTimeout("slow"), httpx.Response(200, content=b"ok"))
    sleep, waits = _recorder()
    assert fetch_bytes(URL, settings=_settings(), client=client, sleep=sleep) == b"ok"
    assert len(seen) == 2 and len(waits) == 1


def test_last_server_error_is_reported() -> None:
    client, seen = _client(httpx.Response(500, text="database down"))
    sleep, waits = _recorder()
    with pytest.raises(SourceError, match="after 2 attempts: HTTP 500 Internal Server Error"):
        fetch_bytes(URL, settings=_settings(retries=2), client=client, sleep=sleep)
    assert len(seen) == 2 and len(waits) == 1


def test_zero_retries_still_tries_once() -> None:
    client, seen = _client(httpx.Response(200, content=b"ok"))
    assert fetch_bytes(URL, settings=_settings(retries=0), client=client) == b"ok"
    assert len(seen) == 1

"""Hugging Face daily papers API: parsing the documented JSON, paging, and a real local server."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from papermail.errors import SourceError
from papermail.settings import Settings
from papermail.sources.hf_api import fetch_hf_daily_papers, parse_hf_daily_papers

FIXTURE = Path(__file__).parent / "data" / "hf_daily_papers.json"


def _settings() -> Settings:
    return Settings(_env_file=None, http_retries=3, http_timeout=5.0)  # type: ignore[call-arg]


def test_parses_the_documented_fields() -> None:
    result = parse_hf_daily_papers(FIXTURE.read_bytes())
    assert [r.arxiv_id for r in result.records] == ["2410.01234", "2410.00917"]
    first, second = result.records
    assert first.title == "Sparse Mixture-of-Adapters for Continual Instruction Tuning"
    assert first.abstract.startswith("Continual instruction tuning lets a language model")
    assert "experts & keeps the rest frozen" in first.abstract  # kept literally, one line
    assert "uses < 2% extra parameters." in first.abstract
    assert first.upvotes == 42  # from `paper`, not the top level
    assert first.organisation == "Example AI Lab"
    assert first.published == date(2024, 10, 1)
    assert first.listing_day == date(2024, 10, 2)
    assert first.url == "https://huggingface.co/papers/2410.01234"
    assert first.authors == ("Mei Lin", "Tomás Ortega", "Priya Raman")
    assert first.paper_id == "2410.01234"
    assert first.source == "hf-api"
    assert second.authors == ("Jonas Weber", "Aiko Tanaka")  # the hidden author is left out
    assert second.organisation is None
    assert result.listing_day == date(2024, 10, 2)


def test_withdrawn_and_incomplete_items_are_skipped_with_reasons() -> None:
    result = parse_hf_daily_papers(FIXTURE.read_text(encoding="utf-8"))
    assert len(result.skipped) == 2
    withdrawn, no_summary = result.skipped
    assert "2409.19876" in withdrawn and "withdrawn" in withdrawn
    assert "2410.01502" in no_summary and "no summary" in no_summary


def test_odd_items_do_not_sink_the_answer() -> None:
    good = json.loads(FIXTURE.read_text(encoding="utf-8"))[0]
    no_title = {"paper": {"id": "2410.09999", "summary": "An abstract."}}
    result = parse_hf_daily_papers(json.dumps([42, no_title, good]))
    assert [r.arxiv_id for r in result.records] == ["2410.01234"]
    assert result.skipped == ["item 0: not an object", "item 1 (2410.09999): no title"]


def test_empty_list_is_an_empty_day() -> None:
    result = parse_hf_daily_papers(b"[]")
    assert result.records == [] and result.listing_day is None


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"<!DOCTYPE html><html><body>Too many requests</body></html>", "got HTML"),
        (b'{"error": "Date is in the future"}', "got an object with error"),
        (b'[{"paper": ', "invalid JSON"),
        (b"", "empty"),
        (b'"a string"', "got str"),
        (b"\xff\xfe\x00garbage", "not UTF-8"),
    ],
)
def test_wrong_answers_are_source_errors(payload: bytes, message: str) -> None:
    with pytest.raises(SourceError, match=message) as caught:
        parse_hf_daily_papers(payload)
    assert str(caught.value).startswith("Hugging Face daily papers: ")


def _item(number: int) -> dict[str, Any]:
    return {
        "paper": {
            "id": f"2410.{number:05d}",
            "title": f"Paper number {number}",
            "summary": f"Abstract of paper {number}. It is short.",
            "upvotes": number,
            "submittedOnDailyAt": "2024-10-02T08:00:00.000Z",
            "authors": [],
        }
    }


def test_fetch_follows_pages_until_a_short_one() -> None:
    seen: list[dict[str, list[str]]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        query = parse_qs(request.url.query.decode())
        seen.append(query)
        page = int(query["p"][0])
        items = [_item(n) for n in range(page * 100, page * 100 + (100 if page == 0 else 3))]
        if page == 1:
            items.append(_item(0))  # a repeat across pages is kept once
        return httpx.Response(200, json=items)

    with httpx.Client(transport=httpx.MockTransport(answer)) as client:
        result = fetch_hf_daily_papers(date(2024, 10, 2), settings=_settings(), client=client)
    assert [q["p"] for q in seen] == [["0"], ["1"]]
    assert seen[0]["date"] == ["2024-10-02"] and seen[0]["limit"] == ["100"]
    assert len(result.records) == 103
    assert len({r.paper_id for r in result.records}) == 103
    assert result.listing_day == date(2024, 10, 2)


@pytest.fixture
def flaky_server() -> Iterator[tuple[str, list[str]]]:
    """A real HTTP server on a free port: 503 on the first request, then the fixture."""
    requests: list[str] = []
    body = FIXTURE.read_bytes()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # the name http.server calls
            requests.append(self.path)
            if len(requests) == 1:
                self.send_response(503)
                self.send_header("Retry-After", "0")
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"busy, try again")
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", requests
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_fetch_retries_a_real_server_then_parses(flaky_server: tuple[str, list[str]]) -> None:
    base_url, requests = flaky_server
    result = fetch_hf_daily_papers(date(2024, 10, 2), settings=_settings(), base_url=base_url)
    assert len(requests) == 2
    assert all(urlsplit(path).path == "/api/daily_papers" for path in requests)
    assert parse_qs(urlsplit(requests[1]).query) == {
        "date": ["2024-10-02"],
        "limit": ["100"],
        "p": ["0"],
    }
    assert [r.arxiv_id for r in result.records] == ["2410.01234", "2410.00917"]
    assert len(result.skipped) == 2

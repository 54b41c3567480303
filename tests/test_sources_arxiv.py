"""arXiv API answers and the daily RSS/Atom feed."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import httpx
import pytest

from papermail.errors import SourceError
from papermail.settings import Settings
from papermail.sources.arxiv import fetch_arxiv, parse_arxiv_atom

DATA = Path(__file__).parent / "data"
API = DATA / "arxiv_api.atom"
RSS = DATA / "arxiv_rss.atom"


def _settings() -> Settings:
    return Settings(_env_file=None, http_retries=1, http_timeout=5.0)  # type: ignore[call-arg]


def test_api_answer() -> None:
    result = parse_arxiv_atom(API.read_bytes())
    assert [r.arxiv_id for r in result.records] == ["2410.01234", "hep-th/9901001"]
    first, old_style = result.records
    assert first.title == "Sparse Mixture-of-Adapters for Continual Instruction Tuning"
    assert first.abstract.startswith("Continual instruction tuning lets a language model learn")
    assert "\n" not in first.abstract and "  " not in first.abstract
    assert "experts & keeps the rest frozen" in first.abstract
    assert first.abstract.endswith("uses < 2% extra parameters.")
    assert first.authors == ("Mei Lin", "Tomás Ortega", "Priya Raman")
    assert first.published == date(2024, 10, 1)
    assert first.url == "https://arxiv.org/abs/2410.01234"  # no version
    assert first.listing_day is None and result.listing_day is None  # a query, not a listing
    assert first.source == "arxiv"
    assert old_style.url == "https://arxiv.org/abs/hep-th/9901001"
    assert old_style.paper_id == "hep-th/9901001"


def test_entry_without_summary_is_skipped_with_a_reason() -> None:
    result = parse_arxiv_atom(API.read_text(encoding="utf-8"))
    assert result.skipped == [
        "entry 2 (2410.00388): 'An Entry Whose Abstract Went Missing' has no summary"
    ]


def test_rss_feed_keeps_new_and_cross_by_default() -> None:
    result = parse_arxiv_atom(RSS.read_bytes())
    assert [r.arxiv_id for r in result.records] == ["2410.01502", "2410.01777"]
    assert result.listing_day == date(2024, 10, 3)
    first = result.records[0]
    assert first.title == "Benchmarks Are Not Enough: Auditing Evaluation Pipelines"
    assert first.abstract == (
        "Leaderboards rank models by a single number. We audit twelve evaluation pipelines and "
        "find that prompt templates alone move accuracy by up to 9 points."
    )
    assert first.authors == ("Sofia Greco", "Daniel Kim", "Amara Nwosu")
    assert first.listing_day == date(2024, 10, 3)
    assert first.url == "https://arxiv.org/abs/2410.01502"
    assert result.records[1].authors == ("Hana Novak",)
    assert result.skipped == []  # replacements are left out on purpose, not failures


def test_rss_announce_types_can_be_chosen() -> None:
    every = parse_arxiv_atom(
        RSS.read_bytes(), announce_types={"new", "cross", "replace", "replace-cross"}
    )
    assert [r.arxiv_id for r in every.records] == [
        "2410.01502",
        "2410.01777",
        "2407.11111",
        "2405.02020",
    ]
    assert all(not r.abstract.startswith("arXiv:") for r in every.records)
    only_new = parse_arxiv_atom(RSS.read_bytes(), announce_types={"new"})
    assert [r.arxiv_id for r in only_new.records] == ["2410.01502"]


def test_weekend_feed_without_entries_is_empty_not_an_error() -> None:
    empty = RSS.read_text(encoding="utf-8").split("<entry>")[0] + "</feed>"
    result = parse_arxiv_atom(empty)
    assert result.records == [] and result.listing_day == date(2024, 10, 3)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"", "empty"),
        (b"<!DOCTYPE html><html><body><p>Service unavailable</p></body></html>", "Atom"),
        (b'[{"paper": {"id": "2410.01234"}}]', "Atom"),
        (b"<feed xmlns='http://www.w3.org/2005/Atom'", "Atom"),
    ],
)
def test_non_feeds_are_source_errors(payload: bytes, message: str) -> None:
    with pytest.raises(SourceError, match=message):
        parse_arxiv_atom(payload)


def test_feed_cut_short_keeps_what_came_and_says_so() -> None:
    text = RSS.read_text(encoding="utf-8")
    cut = text[: text.index("Discrete speech tokenizers")]
    result = parse_arxiv_atom(cut)
    assert [r.arxiv_id for r in result.records][:1] == ["2410.01502"]
    assert result.skipped and result.skipped[0].startswith("feed: broken XML")


def test_api_error_entry_is_a_source_error() -> None:
    payload = b"""<?xml version="1.0" encoding="UTF-8"?>
<feed xmlns="http://www.w3.org/2005/Atom">
  <title>ArXiv Query: search_query=&amp;id_list=1234</title>
  <id>http://arxiv.org/api/errors</id>
  <entry>
    <id>http://arxiv.org/api/errors#incorrect_id_format_for_1234</id>
    <title>Error</title>
    <summary>incorrect id format for 1234</summary>
  </entry>
</feed>"""
    with pytest.raises(SourceError, match="arXiv API error: incorrect id format for 1234"):
        parse_arxiv_atom(payload)


def test_a_string_payload_is_never_fetched_as_a_url() -> None:
    with pytest.raises(SourceError):
        parse_arxiv_atom("https://export.arxiv.org/api/query?search_query=cat:cs.LG")


def test_fetch_api_query() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=API.read_bytes())

    with httpx.Client(transport=httpx.MockTransport(answer)) as client:
        result = fetch_arxiv(
            settings=_settings(), client=client, search_query="cat:cs.LG", max_results=5000
        )
    assert len(result.records) == 2
    params = dict(seen[0].url.params)
    assert seen[0].url.host == "export.arxiv.org"
    assert params["search_query"] == "cat:cs.LG"
    assert params["max_results"] == "2000"  # arXiv's ceiling per call
    assert params["sortBy"] == "submittedDate"


def test_fetch_rss_feed() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=RSS.read_bytes())

    with httpx.Client(transport=httpx.MockTransport(answer)) as client:
        result = fetch_arxiv(settings=_settings(), client=client, categories=["cs.LG", "cs.CL"])
    assert str(seen[0].url) == "https://rss.arxiv.org/atom/cs.LG+cs.CL"
    assert len(result.records) == 2


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"search_query": "cat:cs.LG", "categories": ["cs.LG"]}, {"categories": ["cs.LG/../x"]}],
)
def test_fetch_refuses_unclear_requests(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        fetch_arxiv(settings=_settings(), **kwargs)  # type: ignore[arg-type]

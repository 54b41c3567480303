"""Hugging Face daily papers: the `/api/daily_papers` JSON, parsed and fetched page by page.

The parser is pure; the fetcher only adds paging on top of the shared polite GET. Field facts
(upvotes inside `paper`, `submittedOnDailyAt` as the listing day) are in FORMATS.md.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from datetime import date, datetime
from typing import Any

import httpx

from papermail.errors import SourceError
from papermail.settings import Settings
from papermail.sources.guard import parser
from papermail.sources.http import fetch_bytes
from papermail.sources.records import PaperRecord, ParseResult, normalize_arxiv_id

log = logging.getLogger(__name__)

SOURCE = "hf-api"
PAGE_SIZE = 100  # the API's maximum `limit`
MAX_PAGES = 20  # a day has a few dozen papers: more pages means the API stopped paging
_WHAT = "Hugging Face daily papers"


@parser("Hugging Face daily papers")
def parse_hf_daily_papers(payload: bytes | str) -> ParseResult:
    """Records from one answer of `/api/daily_papers`; withdrawn or incomplete items are skipped."""
    return _parse_items(_load_items(payload))


def fetch_hf_daily_papers(
    day: date,
    *,
    settings: Settings,
    client: httpx.Client | None = None,
    base_url: str = "https://huggingface.co",
) -> ParseResult:
    """All papers listed on `day`, following `p=0,1,...` until a page comes back short."""
    url = f"{base_url.rstrip('/')}/api/daily_papers"
    result = ParseResult(listing_day=day)
    seen: set[str] = set()
    for page in range(MAX_PAGES):
        params = {"date": day.isoformat(), "limit": PAGE_SIZE, "p": page}
        items = _load_items(fetch_bytes(url, params=params, settings=settings, client=client))
        parsed = _parse_items(items)
        result.skipped.extend(parsed.skipped)
        for record in parsed.records:
            if record.paper_id not in seen:
                seen.add(record.paper_id)
                result.records.append(record)
        if len(items) < PAGE_SIZE:
            break
    else:
        log.warning("%s for %s: stopped after %d full pages", _WHAT, day, MAX_PAGES)
    return result


def _load_items(payload: bytes | str) -> list[Any]:
    """The decoded JSON list, or a SourceError that says what came instead."""
    if isinstance(payload, bytes):
        try:
            payload = payload.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise SourceError(f"{_WHAT}: the answer is not UTF-8 text ({exc.reason})") from exc
    text = payload.strip()
    if not text:
        raise SourceError(f"{_WHAT}: expected a JSON list, got an empty answer")
    if text.startswith("<"):
        raise SourceError(f"{_WHAT}: expected a JSON list, got HTML")
    try:
        data = json.loads(text)
    except RecursionError as exc:
        raise SourceError(f"{_WHAT}: expected a JSON list, got JSON nested too deeply") from exc
    except ValueError as exc:
        raise SourceError(f"{_WHAT}: expected a JSON list, got invalid JSON ({exc})") from exc
    if isinstance(data, dict):
        error = data.get("error")
        detail = f" with error {error!r}" if error else ""
        raise SourceError(f"{_WHAT}: expected a JSON list, got an object{detail}")
    if not isinstance(data, list):
        raise SourceError(f"{_WHAT}: expected a JSON list, got {type(data).__name__}")
    return data


def _parse_items(items: list[Any]) -> ParseResult:
    result = ParseResult()
    for position, item in enumerate(items):
        outcome = _record(item, position)
        if isinstance(outcome, str):
            log.info("%s: skipped %s", _WHAT, outcome)
            result.skipped.append(outcome)
        else:
            result.records.append(outcome)
    days = Counter(record.listing_day for record in result.records if record.listing_day)
    result.listing_day = days.most_common(1)[0][0] if days else None
    return result


def _record(item: Any, position: int) -> PaperRecord | str:
    """One item as a record, or the reason it was skipped."""
    if not isinstance(item, dict):
        return f"item {position}: not an object"
    paper = item.get("paper") if isinstance(item.get("paper"), dict) else {}
    raw_id = _text(paper.get("id"))
    label = f"item {position} ({raw_id or 'no id'})"
    if paper.get("withdrawnAt"):
        return f"{label}: withdrawn on {paper['withdrawnAt']}"
    title = _text(paper.get("title")) or _text(item.get("title"))
    abstract = _text(paper.get("summary")) or _text(item.get("summary"))
    if not title:
        return f"{label}: no title"
    if not abstract:
        return f"{label}: {title[:60]!r} has no summary"
    authors = _authors(paper.get("authors"))
    upvotes = paper.get("upvotes")
    arxiv_id = normalize_arxiv_id(raw_id)
    keywords = paper.get("ai_keywords")
    return PaperRecord(
        title=title,
        abstract=abstract,
        source=SOURCE,
        authors=authors,
        author_count=len(authors) or None,
        organisation=_organisation(item.get("organization") or paper.get("organization")),
        published=_day(paper.get("publishedAt") or item.get("publishedAt")),
        listing_day=_day(paper.get("submittedOnDailyAt")),
        upvotes=upvotes if isinstance(upvotes, int) and not isinstance(upvotes, bool) else None,
        url=f"https://huggingface.co/papers/{raw_id}" if raw_id else None,
        arxiv_id=arxiv_id,
        hf_url=f"https://huggingface.co/papers/{raw_id}" if raw_id else None,
        pdf_url=f"https://arxiv.org/pdf/{arxiv_id}" if arxiv_id else None,
        code_url=_text(paper.get("githubRepo")) or None,
        code_stars=_count(paper.get("githubStars")),
        project_url=_text(paper.get("projectPage")) or None,
        thumbnail_url=_text(item.get("thumbnail")) or _text(paper.get("thumbnail")) or None,
        ai_summary=_text(paper.get("ai_summary")) or None,
        ai_keywords=tuple(filter(None, map(_text, keywords))) if isinstance(keywords, list) else (),
        comments_count=_count(item.get("numComments")),
    )


def _count(value: Any) -> int | None:
    """A non-negative integer, else missing (JSON booleans are not counts)."""
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
    return value if ok else None


def _text(value: Any) -> str:
    """Collapse whitespace; anything that is not a string counts as missing."""
    return " ".join(value.split()) if isinstance(value, str) else ""


def _authors(value: Any) -> tuple[str, ...]:
    """Visible author names: authors marked `hidden: true` are not shown on the paper page."""
    if not isinstance(value, list):
        return ()
    names = (
        _text(author.get("name"))
        for author in value
        if isinstance(author, dict) and not author.get("hidden")
    )
    return tuple(name for name in names if name)


def _organisation(value: Any) -> str | None:
    if not isinstance(value, dict):
        return None
    return _text(value.get("fullname")) or _text(value.get("name")) or None


def _day(value: Any) -> date | None:
    """The calendar date of an ISO timestamp such as `2024-10-02T17:59:58.000Z`."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        return datetime.fromisoformat(value.strip()).date()
    except ValueError:
        try:
            return date.fromisoformat(value.strip()[:10])
        except ValueError:
            return None

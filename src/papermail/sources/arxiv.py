"""arXiv: the query API (`export.arxiv.org/api/query`) and the daily RSS/Atom feed.

Both answer Atom, so one parser serves both. The RSS feed also lists replacements of old papers
(`arxiv:announce_type`); a digest wants new work, so only `new` and `cross` become records by
default, and replacements come back as `revisions`: they update papers already stored (a v2 is
shown as "updated" to those who had v1) and never add old papers.
feedparser never raises on bad input, so this module decides what counts as "not a feed".
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Collection, Sequence
from datetime import date, datetime
from typing import Any
from xml.sax import SAXException

import feedparser
import httpx

from papermail.errors import SourceError
from papermail.settings import Settings
from papermail.sources.guard import parser
from papermail.sources.http import fetch_bytes
from papermail.sources.records import (
    PaperRecord,
    ParseResult,
    arxiv_version,
    normalize_arxiv_id,
)

log = logging.getLogger(__name__)

SOURCE = "arxiv"
API_URL = "https://export.arxiv.org/api/query"
RSS_URL = "https://rss.arxiv.org/atom"
DEFAULT_ANNOUNCE_TYPES = frozenset({"new", "cross"})
MAX_API_RESULTS = 2000  # arXiv's documented ceiling for one call
_RSS_PREFIX = re.compile(r"^arXiv:\S+\s+Announce Type:\s*\S+\s+Abstract:\s*", re.IGNORECASE)
_CATEGORY = re.compile(r"[a-z][a-z\-]*(?:\.[A-Za-z\-]+)?")


@parser("arXiv")
def parse_arxiv_atom(
    payload: bytes | str, *, announce_types: Collection[str] = DEFAULT_ANNOUNCE_TYPES
) -> ParseResult:
    """Records from an arXiv API answer or RSS/Atom feed; RSS entries are filtered by type."""
    feed = _load_feed(payload)
    is_rss = _is_rss(feed)
    listing_day = _day(feed.feed, "updated", "published") if is_rss else None
    result = ParseResult(listing_day=listing_day)
    if isinstance(feed.get("bozo_exception"), SAXException):
        # feedparser recovers what it can from broken XML (say, a download cut short).
        result.skipped.append(
            f"feed: broken XML ({feed.bozo_exception}); later entries may be lost"
        )
    affiliations = _affiliations(payload)
    for position, entry in enumerate(feed.entries):
        announce_type = _text(entry.get("arxiv_announce_type")).lower()
        revision = announce_type.startswith("replace") and announce_type not in announce_types
        if announce_type and announce_type not in announce_types and not revision:
            log.debug("arXiv: leaving out %s (%s)", entry.get("id"), announce_type)
            continue
        outcome = _record(entry, position, listing_day=listing_day, affiliations=affiliations)
        if isinstance(outcome, str):
            log.info("arXiv: skipped %s", outcome)
            result.skipped.append(outcome)
        else:
            (result.revisions if revision else result.records).append(outcome)
    return result


def fetch_arxiv(
    *,
    settings: Settings,
    client: httpx.Client | None = None,
    search_query: str | None = None,
    categories: Sequence[str] | None = None,
    max_results: int = 100,
    announce_types: Collection[str] = DEFAULT_ANNOUNCE_TYPES,
    api_url: str = API_URL,
    rss_url: str = RSS_URL,
) -> ParseResult:
    """Query the API (`search_query`, e.g. `cat:cs.LG`) or read today's feed of `categories`."""
    if bool(search_query) == bool(categories):
        raise ValueError("give exactly one of search_query (API) or categories (RSS feed)")
    if search_query:
        params = {
            "search_query": search_query,
            "start": 0,
            "max_results": max(1, min(max_results, MAX_API_RESULTS)),
            "sortBy": "submittedDate",
            "sortOrder": "descending",
        }
        payload = fetch_bytes(api_url, params=params, settings=settings, client=client)
    else:
        bad = [name for name in categories or () if not _CATEGORY.fullmatch(name)]
        if bad:
            raise ValueError(f"not arXiv category names: {', '.join(bad)}")
        url = f"{rss_url.rstrip('/')}/{'+'.join(categories or ())}"
        payload = fetch_bytes(url, settings=settings, client=client)
    return parse_arxiv_atom(payload, announce_types=announce_types)


def _load_feed(payload: bytes | str) -> Any:
    """Parse with feedparser, refusing what is not a feed; a stream, so a str is never a URL."""
    data = payload.encode("utf-8") if isinstance(payload, str) else payload
    if not data.strip():
        raise SourceError("arXiv: the feed is empty")
    try:
        feed = feedparser.parse(io.BytesIO(data))
    except (UnicodeError, LookupError) as exc:  # an odd declared encoding
        raise SourceError(f"arXiv: not a readable Atom feed ({exc})") from exc
    if feed.bozo and not feed.entries:
        problem = feed.get("bozo_exception", "unreadable")
        raise SourceError(f"arXiv: not a readable Atom feed ({problem})")
    if not feed.version:
        raise SourceError("arXiv: expected an Atom feed, got another kind of document")
    for entry in feed.entries:
        if "/api/errors" in (entry.get("id") or ""):
            raise SourceError(f"arXiv API error: {_text(entry.get('summary')) or 'unknown'}")
    return feed


def _is_rss(feed: Any) -> bool:
    """The daily feed carries announce types and lives on rss.arxiv.org; the API does neither."""
    if any(entry.get("arxiv_announce_type") for entry in feed.entries):
        return True
    return "rss.arxiv.org" in f"{feed.feed.get('id') or ''}{feed.feed.get('link') or ''}"


def _record(
    entry: Any,
    position: int,
    *,
    listing_day: date | None,
    affiliations: dict[str, tuple[tuple[str, str], ...]] | None = None,
) -> PaperRecord | str:
    """One entry as a record, or the reason it was skipped."""
    raw_id = _text(entry.get("id"))
    arxiv_id = normalize_arxiv_id(raw_id)
    label = f"entry {position} ({arxiv_id or raw_id or 'no id'})"
    title = _text(entry.get("title"))
    abstract = _RSS_PREFIX.sub("", _text(entry.get("summary")))
    if not title:
        return f"{label}: no title"
    if not abstract:
        return f"{label}: {title[:60]!r} has no summary"
    return PaperRecord(
        title=title,
        abstract=abstract,
        source=SOURCE,
        authors=_authors(entry),
        published=_day(entry, "published", "updated"),
        listing_day=listing_day,
        url=f"https://arxiv.org/abs/{arxiv_id}" if arxiv_id else entry.get("link"),
        arxiv_id=arxiv_id,
        version=arxiv_version(raw_id),
        pdf_url=_pdf_link(entry) or (f"https://arxiv.org/pdf/{arxiv_id}" if arxiv_id else None),
        affiliations=(affiliations or {}).get(raw_id, ()),
        primary_category=_text((entry.get("arxiv_primary_category") or {}).get("term")) or None,
        comments=_text(entry.get("arxiv_comment")) or None,
        journal_ref=_text(entry.get("arxiv_journal_ref")) or None,
    )


def _pdf_link(entry: Any) -> str | None:
    for link in entry.get("links", []):
        if link.get("title") == "pdf" or link.get("type") == "application/pdf":
            return _text(link.get("href")).replace("http://arxiv.org/", "https://arxiv.org/")
    return None


_ATOM = "{http://www.w3.org/2005/Atom}"
_ARXIV = "{http://arxiv.org/schemas/atom}"


def _affiliations(payload: bytes | str) -> dict[str, tuple[tuple[str, str], ...]]:
    """Entry id -> (author, affiliation) pairs. feedparser keeps one affiliation per entry, not
    whose it is, so the API's `author/arxiv:affiliation` are read here (no entities, no network);
    a document lxml cannot read simply has none."""
    from lxml import etree

    data = payload.encode("utf-8") if isinstance(payload, str) else payload
    if b"affiliation" not in data:
        return {}
    parser = etree.XMLParser(resolve_entities=False, no_network=True, recover=True, huge_tree=False)
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError:
        return {}
    found: dict[str, tuple[tuple[str, str], ...]] = {}
    for entry in [] if root is None else root.iter(f"{_ATOM}entry"):
        pairs = []
        for author in entry.iter(f"{_ATOM}author"):
            name = _text(author.findtext(f"{_ATOM}name"))
            place = _text(author.findtext(f"{_ARXIV}affiliation"))
            if name and place:
                pairs.append((name, place))
        if pairs:
            found[_text(entry.findtext(f"{_ATOM}id"))] = tuple(pairs)
    return found


def _text(value: Any) -> str:
    """arXiv wraps titles and abstracts over lines: collapse all whitespace runs."""
    return " ".join(value.split()) if isinstance(value, str) else ""


def _authors(entry: Any) -> tuple[str, ...]:
    """API entries have one `author` each; the RSS feed puts all in one `dc:creator`."""
    names = [_text(author.get("name")) for author in entry.get("authors", [])]
    names = [name for name in names if name]
    if len(names) == 1 and "," in names[0]:
        names = [part.strip() for part in re.split(r",\s*(?:and\s+)?", names[0]) if part.strip()]
    return tuple(names)


def _day(node: Any, *keys: str) -> date | None:
    """The calendar date as written (arXiv's own time zone), from the first key present."""
    for key in keys:
        value = node.get(key)
        if not isinstance(value, str) or not value.strip():
            continue
        try:
            return datetime.fromisoformat(value.strip()).date()
        except ValueError:
            parsed = node.get(f"{key}_parsed")
            if parsed:
                return date(parsed.tm_year, parsed.tm_mon, parsed.tm_mday)
    return None

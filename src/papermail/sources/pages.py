"""Parse saved Hugging Face daily-papers pages: the text a person copies from the web page.

Saved pages come in several layouts (see FORMATS.md): title / abstract pairs separated by blank
lines or not, the first title glued to the header word "Subscribe", and an optional metadata
block after an abstract (`• 8 authors` or an organisation, then `·`, then a date and upvotes).
So the parser ignores blank lines and walks the rest as a strict title / abstract alternation; a
prose heuristic is used only to recover when the alternation breaks, so that one damaged entry
costs one paper (reported in `ParseResult.skipped`) and never the whole page.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from datetime import date

from papermail.errors import SourceError
from papermail.sources.guard import parser
from papermail.sources.records import PaperRecord, ParseResult

log = logging.getLogger(__name__)

_HEADER_LINES = frozenset(
    {
        "new",
        "get trending papers in your email inbox!",
        "get trending papers in your email inbox once a day!",
        "subscribe",
        "daily papers",
        "byak and the research community",
    }
)
_GLUED_HEADER_WORD = "Subscribe"
_MONTHS = {
    name: number
    for number, name in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"),
        start=1,
    )
}
# `Apr 22, 2023`, `Sep 20`, `Jan 27 2` (2 upvotes), `Aug 28, 2024 4` (4 upvotes).
_DATE = re.compile(
    r"(?P<month>[A-Za-z]{3,9})\.? (?P<day>\d{1,2})(?:, (?P<year>\d{4}))?(?: (?P<upvotes>\d+))?"
)
_AUTHORS = re.compile(r"•\s*(?P<count>\d+)\s+authors?", re.IGNORECASE)
_SEPARATOR = "·"
# A sentence ends at . ! or ? followed by a capitalised word, or at the end of the text.
_SENTENCE_END = re.compile(r"[.!?][\"')\]]?(?:\s+(?=[A-Z(\"'])|$)")
_MARKUP_START = re.compile(r"<[!?a-zA-Z]")


@dataclass(frozen=True, slots=True)
class _Line:
    number: int  # 1-based, in the original text, for messages a person can follow
    text: str


@dataclass(frozen=True, slots=True)
class _PageDate:
    month: int
    day: int
    year: int | None = None
    upvotes: int | None = None


@dataclass(frozen=True, slots=True)
class _Meta:
    author_count: int | None = None
    organisation: str | None = None
    published: _PageDate | None = None


@parser("daily-papers page")
def parse_daily_papers_page(
    text: str, *, source: str = "hf-page", year: int | None = None
) -> ParseResult:
    """Parse one saved page; `year` overrides the inferred year of dates shown without one."""
    _reject_non_page(text)
    lines = _content_lines(text)
    header_seen, header_date, body = _split_header(lines)
    today = date.today()
    current_year, from_today = _current_year(lines, year=year, today=today)
    listing_day = _resolve(header_date, current_year, not_after=today if from_today else None)
    result = ParseResult(listing_day=listing_day)
    for entry in _entries(body):
        if isinstance(entry, str):
            log.info("daily-papers page: skipped %s", entry)
            result.skipped.append(entry)
            continue
        title, abstract, meta = entry
        result.records.append(
            PaperRecord(
                title=title,
                abstract=abstract,
                source=source,
                author_count=meta.author_count,
                organisation=meta.organisation,
                published=_resolve(meta.published, current_year, not_after=listing_day),
                upvotes=meta.published.upvotes if meta.published else None,
                listing_day=listing_day,
            )
        )
    if not result.records and not header_seen:
        raise SourceError("no title / abstract pairs found: this is not a saved daily-papers page")
    return result


def _reject_non_page(text: str) -> None:
    """Fail early, with a message that names what was given instead of a page."""
    stripped = text.lstrip("\ufeff \t\r\n")
    if not stripped:
        raise SourceError("the daily-papers page is empty")
    if _MARKUP_START.match(stripped):
        raise SourceError("expected a saved daily-papers text page, got HTML or XML markup")
    if stripped[0] in "[{":
        try:
            json.loads(stripped)
        except (ValueError, RecursionError):
            return
        raise SourceError("expected a saved daily-papers text page, got JSON")


def _clean(text: str) -> str:
    return " ".join(text.split())


def _content_lines(text: str) -> list[_Line]:
    """Non-blank lines with their numbers; only \\r and \\n break lines (not form feeds...)."""
    raw = re.split(r"\r\n|\r|\n", text.removeprefix("\ufeff"))
    return [_Line(number, _clean(line)) for number, line in enumerate(raw, start=1) if line.strip()]


def _split_header(lines: list[_Line]) -> tuple[bool, _PageDate | None, list[_Line]]:
    """Strip the page header; returns (header seen, listing date, body lines)."""
    seen_words: set[str] = set()
    listing: _PageDate | None = None
    for index, line in enumerate(lines):
        folded = line.text.casefold()
        if folded in _HEADER_LINES:
            seen_words.add(folded)
            continue
        page_date = _parse_date(line.text)
        if seen_words and listing is None and page_date and page_date.upvotes is None:
            listing = page_date
            continue
        glued = _GLUED_HEADER_WORD.casefold()
        if seen_words and glued not in seen_words and line.text.startswith(_GLUED_HEADER_WORD):
            rest = _clean(line.text[len(_GLUED_HEADER_WORD) :])
            head = [_Line(line.number, rest)] if rest else []
            return True, listing, head + lines[index + 1 :]
        return bool(seen_words), listing, lines[index:]
    return bool(seen_words), listing, []


def _parse_date(text: str) -> _PageDate | None:
    match = _DATE.fullmatch(text)
    if not match:
        return None
    month = _MONTHS.get(match["month"][:3].casefold())
    day = int(match["day"])
    if month is None or not 1 <= day <= 31:
        return None
    return _PageDate(
        month=month,
        day=day,
        year=int(match["year"]) if match["year"] else None,
        upvotes=int(match["upvotes"]) if match["upvotes"] else None,
    )


def _current_year(lines: list[_Line], *, year: int | None, today: date) -> tuple[int, bool]:
    """The year of yearless dates, and whether it came from today's date.

    The page prints a year only for dates outside the current year, so the newest explicit year
    plus one is the page's current year; without explicit years, today's year is the best guess.
    """
    if year is not None:
        return year, False
    explicit = [d.year for line in lines if (d := _parse_date(line.text)) and d.year]
    if explicit:
        return max(explicit) + 1, False
    return today.year, True


def _resolve(
    page_date: _PageDate | None, current_year: int, *, not_after: date | None
) -> date | None:
    """A yearless date later than `not_after` (the listing day) belongs to the previous year."""
    if page_date is None:
        return None
    try:
        if page_date.year is not None:
            return date(page_date.year, page_date.month, page_date.day)
        resolved = date(current_year, page_date.month, page_date.day)
        if not_after is not None and resolved > not_after:
            resolved = date(current_year - 1, page_date.month, page_date.day)
    except ValueError:
        log.info("daily-papers page: impossible date %s", page_date)
        return None
    return resolved


def _sentences(text: str) -> int:
    return len(_SENTENCE_END.findall(text))


def _is_prose(text: str) -> bool:
    """Clearly an abstract: long and several sentences (the longest seen title is 213 chars)."""
    return len(text) >= 600 or (len(text) >= 300 and _sentences(text) >= 2)


def _is_short_prose(text: str) -> bool:
    """A short abstract: a full sentence, which titles almost never end with."""
    return len(text) >= 80 and text.endswith(".") and _sentences(text) >= 1


def _is_metadata(text: str) -> bool:
    return text == _SEPARATOR or bool(_AUTHORS.fullmatch(text)) or _parse_date(text) is not None


def _starts_metadata(body: list[_Line], index: int) -> bool:
    """A metadata line, or an organisation line (`kyutai Kyutai`) followed by the separator."""
    if _is_metadata(body[index].text):
        return True
    return index + 1 < len(body) and body[index + 1].text == _SEPARATOR


def _has_abstract(body: list[_Line], index: int) -> bool:
    """Whether `body[index]` is the abstract of the title just before it."""
    if index >= len(body) or _starts_metadata(body, index):
        return False
    candidate = body[index].text
    if _is_prose(candidate):
        return True
    if index + 1 < len(body) and _is_prose(body[index + 1].text):
        return False  # the candidate is the next title, followed by its own abstract
    return _is_short_prose(candidate)


def _read_metadata(body: list[_Line], index: int) -> tuple[_Meta, int]:
    """Consume an optional `authors | organisation`, `·`, `date [upvotes]` block."""
    author_count = organisation = published = None
    if index < len(body) and (match := _AUTHORS.fullmatch(body[index].text)):
        author_count = int(match["count"])
        index += 1
    elif (
        index + 1 < len(body)
        and body[index + 1].text == _SEPARATOR
        and not _is_metadata(body[index].text)
    ):
        organisation = _organisation_name(body[index].text)
        index += 1
    if index < len(body) and body[index].text == _SEPARATOR:
        index += 1
    if index < len(body) and (published := _parse_date(body[index].text)):
        index += 1
    return _Meta(author_count, organisation, published), index


def _organisation_name(text: str) -> str:
    """`furiosa-ai FuriosaAI` is the slug then the display name: keep the display name."""
    slug, _, display = text.partition(" ")
    return display.strip() or slug


def _entries(body: list[_Line]) -> list[tuple[str, str, _Meta] | str]:
    """Pair titles with abstracts; a string in the answer is a skip reason."""
    entries: list[tuple[str, str, _Meta] | str] = []
    index = 0
    while index < len(body):
        line = body[index]
        if _starts_metadata(body, index):
            _, after = _read_metadata(body, index)
            entries.append(f"line {line.number}: metadata {line.text!r} without a paper before it")
            index = max(after, index + 1)
            continue
        next_is_prose = index + 1 < len(body) and _is_prose(body[index + 1].text)
        if _is_prose(line.text) and not next_is_prose:
            entries.append(f"line {line.number}: abstract {_excerpt(line.text)!r} has no title")
            index += 1
            continue
        if not _has_abstract(body, index + 1):
            entries.append(f"line {line.number}: title {line.text!r} has no abstract")
            index += 1
            continue
        abstract = body[index + 1].text
        meta, index = _read_metadata(body, index + 2)
        entries.append((line.text, abstract, meta))
    return entries


def _excerpt(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"

"""Read a file of papers whatever its format, so `papermail ingest FILE` needs no format flag.

Formats are told apart by their first characters, which is cheap and unambiguous for the four
formats papermail knows: a JSON list (Hugging Face API), JSON Lines (an ad-hoc corpus), Atom XML
(arXiv) and anything else as a saved daily-papers text page.
"""

from __future__ import annotations

import json
import logging
import re
import stat
from datetime import date
from pathlib import Path
from typing import Any

from papermail.errors import SourceError
from papermail.sources.arxiv import parse_arxiv_atom
from papermail.sources.guard import parser
from papermail.sources.hf_api import parse_hf_daily_papers
from papermail.sources.pages import parse_daily_papers_page
from papermail.sources.records import PaperRecord, ParseResult

log = logging.getLogger(__name__)

JSONL_SOURCE = "jsonl"
MAX_GIVEN_ID = 64  # the papers table's key length
_FEED_ROOT = re.compile(r"<(?:[\w-]+:)?(?:feed|rss|RDF)\b")


def read_path(path: Path, *, year: int | None = None, strict: bool = False) -> ParseResult:
    """Parse `path` by sniffing its format; `year` is for daily-papers pages (see pages.py).
    `strict` (a file found in a folder, not named by a person) also refuses a text file that
    does not look like a saved daily-papers page: a log must not become "papers"."""
    try:
        if not stat.S_ISREG(path.stat().st_mode):  # a FIFO or a device would block or never end
            raise SourceError(f"{path}: cannot read (not a regular file)")
        data = path.read_bytes()
    except OSError as exc:
        raise SourceError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SourceError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    try:
        result = _parse(text, data, year=year)
    except SourceError as exc:
        raise SourceError(f"{path}: {exc}") from exc
    if strict and not _is_structured(text) and not _looks_like_page(text, result):
        raise SourceError(f"{path}: not a papers file (no daily-papers header, no abstracts)")
    return result


# The words a saved Hugging Face daily-papers page starts with (see pages.py).
_PAGE_HEADER = re.compile(
    r"^\s*(?:daily papers|subscribe|get trending papers in your email)", re.I | re.M
)
_MIN_ABSTRACT = 300  # characters: a real abstract is a paragraph, not a log line


def _is_structured(text: str) -> bool:
    """JSON, JSON Lines and Atom are told apart by structure, not guessed from prose."""
    return text.lstrip("\ufeff \t\r\n")[:1] in ("[", "{", "<")


def _looks_like_page(text: str, result: ParseResult) -> bool:
    """A daily-papers page: its header, or else abstracts that are paragraphs, not lines."""
    if _PAGE_HEADER.search(text[:2000]):
        return True
    if not result.records or len(result.skipped) > len(result.records):
        return False
    long = sum(len(r.abstract) >= _MIN_ABSTRACT for r in result.records)
    return long >= 0.8 * len(result.records)


def _parse(text: str, data: bytes, *, year: int | None) -> ParseResult:
    stripped = text.strip()
    if not stripped:
        raise SourceError("the file is empty")
    if stripped.startswith("["):
        return parse_hf_daily_papers(stripped)
    if stripped.startswith("{"):
        return parse_jsonl(stripped)
    if stripped.startswith("<") and _FEED_ROOT.search(stripped[:4096]):
        return parse_arxiv_atom(data)
    return parse_daily_papers_page(text, year=year)


@parser("JSON Lines")
def parse_jsonl(text: str) -> ParseResult:
    """One JSON object per line with `id`, `title`, `abstract` (optional `authors`, `url`,
    `published`); the given id is kept as the paper id, so the corpus keeps its own keys."""
    result = ParseResult()
    lines = text.splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        outcome = _jsonl_record(line, number)
        if isinstance(outcome, str):
            log.info("JSON Lines: skipped %s", outcome)
            result.skipped.append(outcome)
        else:
            result.records.append(outcome)
    if not result.records:
        if _is_single_object(text):
            raise SourceError("expected JSON Lines (one paper per line), got one JSON object")
        raise SourceError(f"no paper in the JSON Lines file ({'; '.join(result.skipped[:3])})")
    return result


def _jsonl_record(line: str, number: int) -> PaperRecord | str:
    try:
        item = json.loads(line)
    except RecursionError:
        return f"line {number}: JSON nested too deeply"
    except ValueError as exc:
        return f"line {number}: invalid JSON ({exc.msg})"
    if not isinstance(item, dict):
        return f"line {number}: expected an object, got {type(item).__name__}"
    given_id = _text(item.get("id")) or (str(item["id"]) if _is_int(item.get("id")) else "")
    title, abstract = _text(item.get("title")), _text(item.get("abstract"))
    missing = [
        name
        for name, value in (("id", given_id), ("title", title), ("abstract", abstract))
        if not value
    ]
    if missing:
        return f"line {number}: missing {', '.join(missing)}"
    if len(given_id) > MAX_GIVEN_ID:
        return f"line {number}: id longer than {MAX_GIVEN_ID} characters"
    return PaperRecord(
        title=title,
        abstract=abstract,
        source=JSONL_SOURCE,
        authors=_names(item.get("authors")),
        published=_date(item.get("published")),
        url=_text(item.get("url")) or None,
        given_id=given_id,
    )


def _text(value: Any) -> str:
    return " ".join(value.split()) if isinstance(value, str) else ""


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _names(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(name for name in map(_text, value) if name)


def _date(value: Any) -> date | None:
    try:
        return date.fromisoformat(value[:10]) if isinstance(value, str) else None
    except ValueError:
        return None


def _is_single_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except (ValueError, RecursionError):
        return False

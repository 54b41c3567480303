"""Make a parsed record safe to store, whatever a feed sent: one bad record is cleaned or skipped
with its reason, and never aborts the ingest of the records and files around it.

What the database (PostgreSQL above all) refuses or what would hurt later:
- NUL and other control characters (PostgreSQL rejects NUL in text; XML 1.0 in the Atom feed
  allows no C0 control but tab and newlines) and lone surrogates (not encodable as UTF-8);
- strings longer than their column (`organisation` 200, `url` 500, `source` 40, the id 64);
- integers beyond a 32-bit column (upvotes, author counts, versions) or negative;
- huge fields: a 1 MB title is nobody's paper and costs every scoring run, so text is capped.
"""

from __future__ import annotations

import re
from dataclasses import fields, replace
from datetime import date

from papermail.sources.records import PaperRecord, normalize_arxiv_id

INT_MAX = 2**31 - 1  # PostgreSQL `integer`
MAX_ID = 64  # the papers table's key
# Longest kept value per text field; a longer title or abstract is cut at a word boundary.
TEXT_CAPS = {
    "title": 1_000,
    "abstract": 20_000,
    "organisation": 200,
    "source": 40,
    "primary_category": 40,
    "journal_ref": 500,
}
MAX_URL = 500  # a cut URL is a wrong URL: a longer one is dropped instead
MAX_AUTHOR = 200  # characters in one author's name
MAX_AUTHORS = 1_000  # names kept per paper (author_count keeps the real number)
DEFAULT_TEXT_CAP = 20_000  # any other text field a parser adds
DEFAULT_ITEMS_CAP = 1_000

# C0 controls but tab, newline and carriage return; DEL and the C1 controls; non-characters.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufffe\uffff]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def clean_text(value: str) -> str:
    """Drop the characters no database column or XML document takes."""
    value = _CONTROL.sub("", value)
    return _SURROGATE.sub("\ufffd", value)


def _cut(value: str, cap: int) -> str:
    if len(value) <= cap:
        return value
    cut = value[: cap - 1]  # room for the ellipsis
    space = cut.rfind(" ", cap // 2)
    return (cut[:space] if space > 0 else cut).rstrip() + "…"


def _int(value: int) -> int:
    return min(max(value, 0), INT_MAX)


def clean_record(record: PaperRecord) -> tuple[PaperRecord | None, str | None]:
    """The record made storable, or (None, why) when it cannot be. Fields a parser adds later
    are cleaned by type: text, tuples of text and integers."""
    changes: dict[str, object] = {}
    for spec in fields(record):
        name, value = spec.name, getattr(record, spec.name)
        new: object = value
        if isinstance(value, str):
            new = clean_text(value)
            if name in ("title", "abstract", "organisation"):
                new = " ".join(new.split())  # newlines and runs of spaces: one space
            if name == "url" or name.endswith("_url"):
                new = new.strip()
                if len(new) > MAX_URL or any(c.isspace() for c in new):
                    new = None
            elif name == "arxiv_id":
                new = new if len(new) <= MAX_ID else normalize_arxiv_id(new)
            elif name != "given_id":
                new = _cut(new, TEXT_CAPS.get(name, DEFAULT_TEXT_CAP))
            if name != "title" and name != "abstract" and name != "source" and not new:
                new = None
        elif isinstance(value, bool | date):
            continue
        elif isinstance(value, int):
            new = _int(value)
        elif isinstance(value, tuple) and all(isinstance(item, str) for item in value):
            cap, limit = (
                (MAX_AUTHOR, MAX_AUTHORS)
                if name == "authors"
                else (DEFAULT_TEXT_CAP, DEFAULT_ITEMS_CAP)
            )
            items = (_cut(" ".join(clean_text(item).split()), cap) for item in value[:limit])
            new = tuple(item for item in items if item)
        elif isinstance(value, tuple) and all(isinstance(item, tuple) for item in value):
            # (author, affiliation) pairs and the like
            new = tuple(
                tuple(_cut(" ".join(clean_text(str(part)).split()), MAX_AUTHOR) for part in item)
                for item in value[:DEFAULT_ITEMS_CAP]
            )
        if new != value:
            changes[name] = new
    if "authors" in changes and record.author_count is None and len(record.authors) > MAX_AUTHORS:
        changes["author_count"] = _int(len(record.authors))
    cleaned = replace(record, **changes) if changes else record
    if not cleaned.title:
        return None, "no title left after cleaning"
    if cleaned.given_id is not None and len(cleaned.given_id) > MAX_ID:
        return None, f"{cleaned.title[:60]!r}: id longer than {MAX_ID} characters"
    if len(cleaned.paper_id) > MAX_ID:
        return None, f"{cleaned.title[:60]!r}: id longer than {MAX_ID} characters"
    return cleaned, None


def clean_records(records: list[PaperRecord], skipped: list[str]) -> list[PaperRecord]:
    """Each record cleaned; the ones that cannot be stored are left out, their reason appended
    to `skipped`."""
    kept = []
    for record in records:
        cleaned, reason = clean_record(record)
        if cleaned is None:
            skipped.append(reason or "unstorable record")
        else:
            kept.append(cleaned)
    return kept

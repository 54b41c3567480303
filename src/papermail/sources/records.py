"""What every source parser returns: plain records, no database, no network."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import date

_ARXIV_NEW = re.compile(r"(?P<id>\d{4}\.\d{4,5})(?:v\d+)?$")
_ARXIV_OLD = re.compile(r"(?P<id>[a-z][a-z\-]*(?:\.[A-Z]{2})?/\d{7})(?:v\d+)?$")


@dataclass(frozen=True, slots=True)
class PaperRecord:
    title: str
    abstract: str
    source: str
    authors: tuple[str, ...] = ()
    author_count: int | None = None
    organisation: str | None = None
    published: date | None = None
    listing_day: date | None = None
    upvotes: int | None = None
    url: str | None = None
    arxiv_id: str | None = None
    # Ad-hoc corpora (JSON Lines files) bring their own stable ids; keeping them lets a re-import
    # update the same rows and lets a person match papers back to their own data.
    given_id: str | None = None
    # The arXiv version ("v2" -> 2) when the source names it; a higher one than stored marks the
    # paper revised, so subscribers who had it see it as "updated" instead of it being resent.
    version: int | None = None
    # What a source says beyond the text (issue 12): links, code, summaries, arXiv metadata.
    pdf_url: str | None = None
    hf_url: str | None = None
    code_url: str | None = None
    code_stars: int | None = None
    project_url: str | None = None
    thumbnail_url: str | None = None
    ai_summary: str | None = None
    ai_keywords: tuple[str, ...] = ()
    affiliations: tuple[tuple[str, str], ...] = ()  # (author name, affiliation), when given
    comments_count: int | None = None
    primary_category: str | None = None
    comments: str | None = None  # arXiv's comment: "Accepted at ICLR 2025", "14 pages"
    journal_ref: str | None = None

    @property
    def paper_id(self) -> str:
        """The given id when the source brought one, else the arXiv id or a title hash."""
        if self.given_id:
            return self.given_id
        return paper_id(title=self.title, arxiv_id=self.arxiv_id)


@dataclass(slots=True)
class ParseResult:
    """Records that parsed, and one human-readable line per record that was skipped."""

    records: list[PaperRecord] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    listing_day: date | None = None
    # New versions of older papers (arXiv's "replace" announcements): they update papers already
    # stored and never add one, since a digest is for new work.
    revisions: list[PaperRecord] = field(default_factory=list)


# The fields above that ingest stores as they are (and lets a later sighting fill in).
DETAIL_FIELDS = (
    "pdf_url",
    "hf_url",
    "code_url",
    "code_stars",
    "project_url",
    "thumbnail_url",
    "ai_summary",
    "ai_keywords",
    "affiliations",
    "comments_count",
    "primary_category",
    "comments",
    "journal_ref",
)


def detail_values(record: PaperRecord) -> dict[str, object]:
    """The DETAIL_FIELDS of a record as Paper columns take them (JSON lists and objects)."""
    values: dict[str, object] = {name: getattr(record, name) for name in DETAIL_FIELDS}
    values["ai_keywords"] = list(record.ai_keywords)
    values["affiliations"] = dict(record.affiliations)
    return values


def normalize_arxiv_id(raw: str | None) -> str | None:
    """`http://arxiv.org/abs/2401.01234v2` -> `2401.01234`; old ids keep their archive prefix."""
    if not raw:
        return None
    text = raw.strip().rstrip("/")
    for prefix in ("arxiv:", "abs/", "pdf/"):
        if prefix in text.lower():
            text = text[text.lower().rindex(prefix) + len(prefix) :]
    text = text.removesuffix(".pdf")
    for pattern in (_ARXIV_NEW, _ARXIV_OLD):
        match = pattern.search(text)
        if match:
            return match.group("id")
    return None


_VERSION = re.compile(r"v(?P<n>\d+)(?:\.pdf)?/?$")


def arxiv_version(raw: str | None) -> int | None:
    """`http://arxiv.org/abs/2401.01234v2` -> 2; None when the id names no version."""
    match = _VERSION.search(raw.strip()) if raw and normalize_arxiv_id(raw) else None
    return int(match.group("n")) if match else None


def normalize_title(title: str) -> str:
    text = unicodedata.normalize("NFKC", title).casefold()
    return " ".join(re.findall(r"\w+", text))


def paper_id(*, title: str, arxiv_id: str | None = None) -> str:
    """Stable key: the arXiv id without version, else a hash of the normalized title."""
    normalized = normalize_arxiv_id(arxiv_id)
    if normalized:
        return normalized
    digest = hashlib.sha256(normalize_title(title).encode()).hexdigest()[:20]
    return f"t-{digest}"

"""Seed papers as readers give them: arXiv ids or URLs, titles, or a BibTeX / RIS export
(Zotero, Mendeley). Pure: parsing only; `services.interests` finds them in the corpus.

BibTeX is read with bibtexparser and RIS with rispy; an entry gives its arXiv id (eprint, URL,
arXiv DOI 10.48550/arXiv.ID, journal "arXiv preprint arXiv:ID") when it has one, else its title.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from papermail.sources.records import normalize_title

MAX_GIVEN = 500

_ID = r"(?P<id>\d{4}\.\d{4,5}|[a-z][a-z\-]*(?:\.[A-Z]{2})?/\d{7})(?:v\d+)?"
_GIVEN_ID = re.compile(
    r"(?:arxiv:\s*)?(?:(?:https?://)?(?:www\.|export\.)?"
    r"(?:arxiv\.org/(?:abs|pdf|html)/|(?:hf\.co|huggingface\.co)/papers/))?"
    + _ID
    + r"(?:\.pdf)?/?(?:[?#].*)?",
    re.IGNORECASE,
)
_ID_INSIDE = re.compile(
    r"(?:arxiv\.org/(?:abs|pdf)/|arxiv[:.]\s*|huggingface\.co/papers/)" + _ID, re.IGNORECASE
)


@dataclass(frozen=True, slots=True)
class Seed:
    given: str  # what the reader gave: the arXiv id, else the title
    arxiv_id: str | None = None
    title: str | None = None

    @property
    def title_key(self) -> str:
        return normalize_title(self.title) if self.title else ""


def _clean(text: str) -> str:
    return " ".join(text.replace("{", "").replace("}", "").split())


def parse_seed(text: str) -> Seed | None:
    """An arXiv id ("2401.01234", "2401.01234v2", "arXiv:2401.01234", "hep-th/9901001"), an
    arXiv or Hugging Face URL (abs/pdf, any version), else a title; None for nothing."""
    text = _clean(text)
    if not text:
        return None
    match = _GIVEN_ID.fullmatch(text)
    if match:
        return Seed(given=match.group("id"), arxiv_id=match.group("id"))
    return Seed(given=text[:MAX_GIVEN], title=text)


def _arxiv_in(*values: object) -> str | None:
    for value in values:
        for text in value if isinstance(value, list | tuple) else [value]:
            if not isinstance(text, str) or not text:
                continue
            match = _GIVEN_ID.fullmatch(text.strip()) or _ID_INSIDE.search(text)
            if match:
                return match.group("id")
    return None


def _entry_seed(arxiv_id: str | None, title: str | None) -> Seed | None:
    title = _clean(title or "") or None
    if arxiv_id:
        return Seed(given=arxiv_id, arxiv_id=arxiv_id, title=title)
    if title:
        return Seed(given=title[:MAX_GIVEN], title=title)
    return None


def parse_bibtex(text: str) -> list[Seed]:
    import bibtexparser

    seeds = []
    for entry in bibtexparser.parse_string(text).entries:
        fields = {k.lower(): str(f.value) for k, f in entry.fields_dict.items()}
        eprint = fields.get("eprint", "")
        prefix = fields.get("archiveprefix", fields.get("eprinttype", "")).lower()
        arxiv_id = _arxiv_in(eprint) if (prefix == "arxiv" or not prefix) else None
        arxiv_id = arxiv_id or _arxiv_in(
            fields.get("url"), fields.get("doi"), fields.get("journal"), fields.get("note")
        )
        seed = _entry_seed(arxiv_id, fields.get("title"))
        if seed:
            seeds.append(seed)
    return seeds


def parse_ris(text: str) -> list[Seed]:
    import rispy

    seeds = []
    for entry in rispy.loads(text):
        arxiv_id = _arxiv_in(
            entry.get("urls"),
            entry.get("url"),
            entry.get("doi"),
            entry.get("journal_name"),
            entry.get("secondary_title"),
            entry.get("notes"),
        )
        title = entry.get("title") or entry.get("primary_title")
        seed = _entry_seed(arxiv_id, title)
        if seed:
            seeds.append(seed)
    return seeds


def parse_seed_file(text: str) -> list[Seed]:
    """A BibTeX or RIS export, told apart by its content."""
    if re.search(r"^\s*TY\s+-", text, re.MULTILINE):
        return parse_ris(text)
    if "@" in text:
        return parse_bibtex(text)
    return [s for s in map(parse_seed, text.splitlines()) if s]


def unique(seeds: list[Seed]) -> list[Seed]:
    """One seed per arXiv id or title, first kept."""
    seen: set[str] = set()
    kept = []
    for seed in seeds:
        key = seed.arxiv_id or seed.title_key
        if key and key not in seen:
            seen.add(key)
            kept.append(seed)
    return kept

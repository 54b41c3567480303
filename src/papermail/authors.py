"""Author names as arXiv and Hugging Face spell them, matched the way a reader means them.

Pure: no database. "José García", "Jose Garcia", "J. Garcia" and "Garcia, José" are one author;
"Jane Smith" and "John Smith" are two. A name is compared as its surname (the last word, after
"Last, First" is turned around) and its given names: full given names must be equal, an initial
matches any given name with that first letter, and a missing middle name matches any.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

_SUFFIXES = frozenset({"jr", "sr", "ii", "iii", "iv"})
_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")


def _ascii_fold(text: str) -> str:
    """Accents stripped, case folded: "Łukasz Müller" -> "lukasz muller"."""
    text = text.replace("ł", "l").replace("Ł", "L").replace("ø", "o").replace("Ø", "O")
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


@dataclass(frozen=True, slots=True)
class AuthorName:
    surname: str
    given: tuple[str, ...]  # full names or single-letter initials, in order

    @property
    def key(self) -> tuple[str, str]:
        """(surname, first initial): every spelling of one author shares it (an index key)."""
        return (self.surname, self.given[0][0] if self.given else "")

    def __str__(self) -> str:
        return " ".join((*self.given, self.surname))


def parse_name(raw: str) -> AuthorName | None:
    """An author name in any of the usual spellings; None when it holds no letters."""
    text = _ascii_fold(" ".join(raw.split()))
    if "," in text:  # "Last, First" (a trailing ", Jr." is a suffix, not a given name)
        last, _, first = text.partition(",")
        if first.strip().strip(".") not in _SUFFIXES:
            text = f"{first} {last}"
    words = [w for w in _WORD.findall(text.replace("-", " ")) if w not in _SUFFIXES]
    if not words:
        return None
    return AuthorName(words[-1].replace("'", ""), tuple(words[:-1]))


def normalize_name(raw: str) -> str:
    """The stored, comparable form: "García, José A." -> "jose a garcia"."""
    name = parse_name(raw)
    return str(name) if name else ""


def _given_match(a: str, b: str) -> bool:
    if len(a) == 1 or len(b) == 1:
        return a[0] == b[0]
    return a == b


def same_author(followed: str | AuthorName | None, author: str | AuthorName | None) -> bool:
    """Whether `author` (as a paper lists it) is the `followed` author (as a reader typed it)."""
    a = parse_name(followed) if isinstance(followed, str) else followed
    b = parse_name(author) if isinstance(author, str) else author
    if a is None or b is None or a.surname != b.surname:
        return False
    if not a.given or not b.given:  # a surname alone matches only a surname alone
        return a.given == b.given
    return all(_given_match(x, y) for x, y in zip(a.given, b.given, strict=False))


class AuthorIndex:
    """The authors of many papers, indexed so that each followed name costs a dict lookup."""

    def __init__(self, papers_authors: list[list[str]] | list[tuple[str, ...]]) -> None:
        self.by_key: dict[tuple[str, str], list[tuple[int, AuthorName, str]]] = {}
        for index, authors in enumerate(papers_authors):
            for raw in authors or ():
                name = parse_name(raw)
                if name is not None:
                    self.by_key.setdefault(name.key, []).append((index, name, raw))

    def papers_by(self, followed: str) -> dict[int, str]:
        """{paper index: the author's name as the paper spells it} for a followed name."""
        wanted = parse_name(followed)
        if wanted is None:
            return {}
        found: dict[int, str] = {}
        for index, name, raw in self.by_key.get(wanted.key, ()):
            if index not in found and same_author(wanted, name):
                found[index] = raw
        return found

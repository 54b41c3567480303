"""A paper's TL;DR: the source's AI summary when it has one, else the abstract's contribution
sentence ("We propose ...", "This paper introduces ..."), else its first sentence. Pure."""

from __future__ import annotations

import re
from functools import lru_cache

TLDR_CHARS = 320  # a contribution sentence longer than this is cut at a word boundary
AI_SUMMARY = "AI summary"
FROM_ABSTRACT = "from the abstract"

# Abbreviations whose dot does not end a sentence.
_ABBREVIATIONS = re.compile(
    r"(?:\b(?:e\.g|i\.e|et al|etc|vs|cf|Fig|Figs|Eq|Eqs|Sec|resp|approx|Dr|Mr|Ms|No|al)\."
    r"|\b[A-Z]\.)$"
)
_BOUNDARY = re.compile(r"(?<=[.!?])[\"'”’)\]]*\s+(?=[\"'“‘(\[]*[A-Z0-9])")
_ADVERB = r"(?:(?:also|then|further|first|here|now|instead|\w+ly)\s+)?"
_SUBJECT = r"(?:we|here,? we|in this (?:paper|work|study),? we|this (?:paper|work|study|article))"
_STRONG = re.compile(
    rf"\b{_SUBJECT}\s+{_ADVERB}(?:propose|proposes|introduce|introduces|present|presents"
    r"|develop|develops|design|designs|release|releases|build|builds|contribute|contributes"
    r"|describe|describes)\b",
    re.IGNORECASE,
)
_WEAK = re.compile(
    rf"\b{_SUBJECT}\s+{_ADVERB}(?:show|shows|demonstrate|demonstrates|find|finds|study"
    r"|studies|investigate|investigates|explore|explores|analy[sz]e|analy[sz]es|provide"
    r"|provides|report|reports|argue|argues|address|addresses|revisit|revisits|audit)\b",
    re.IGNORECASE,
)


def sentences(text: str) -> list[str]:
    """Split on sentence ends, not on "e.g.", "et al." or initials."""
    text = " ".join(text.split())
    parts: list[str] = []
    start = 0
    for match in _BOUNDARY.finditer(text):
        head = text[start : match.start()]
        if _ABBREVIATIONS.search(text[max(start, match.start() - 8) : match.start()]):
            continue
        if head.strip():
            parts.append(text[start : match.end()].strip())
        start = match.end()
    if text[start:].strip():
        parts.append(text[start:].strip())
    return parts


def _shorten(text: str, limit: int = TLDR_CHARS) -> str:
    if len(text) <= limit:
        return text
    cut = text[:limit]
    if " " in cut[limit // 2 :]:
        cut = cut.rsplit(" ", 1)[0]
    return cut.rstrip(" ,;:.-") + "…"


@lru_cache(maxsize=8192)
def contribution_sentence(abstract: str) -> str:
    """The sentence that says what the paper does; the first sentence when none does; "" only
    for an empty abstract."""
    found = sentences(abstract)
    if not found:
        return ""
    for pattern in (_STRONG, _WEAK):
        for sentence in found:
            if pattern.search(sentence):
                return _shorten(sentence)
    return _shorten(found[0])


def tldr(ai_summary: str | None, abstract: str) -> tuple[str, str]:
    """(text, where it came from: AI_SUMMARY or FROM_ABSTRACT); ("", "") with neither."""
    summary = " ".join((ai_summary or "").split())
    if summary:
        return _shorten(summary, 2 * TLDR_CHARS), AI_SUMMARY
    sentence = contribution_sentence(abstract)
    return (sentence, FROM_ABSTRACT) if sentence else ("", "")

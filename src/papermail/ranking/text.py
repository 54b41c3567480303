"""Turning ML prose into terms: a tokenizer that knows acronyms and numbers, a light stemmer, and
unigrams + bigrams that never span punctuation.

Why not sklearn's analyzer: it drops "4" from "4-bit", keeps "LLMs" apart from "LLM", its stop
list removes "computer" and "system", and its bigrams run across commas and sentences, so
"state space, models" would look like the phrase "state space models".
"""

from __future__ import annotations

import re
from itertools import pairwise

from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, strip_accents_unicode

# Content words that sklearn's list treats as stop words; in paper titles they carry meaning
# ("computer vision", "two-stage", "top-k", "system prompt").
_KEEP = frozenset(
    {
        *("computer", "system", "bottom", "top", "front", "back", "side", "fire", "full"),
        *("empty", "fill", "move", "name", "call", "detail", "interest", "part", "amount"),
        *("bill", "mill", "thick", "thin", "first", "second", "third", "one", "two", "three"),
        *("four", "five", "six", "eight", "ten", "twelve", "fifteen", "twenty", "forty"),
        *("fifty", "sixty", "hundred", "serious", "well", "whole"),
    }
)
STOP_WORDS = frozenset(ENGLISH_STOP_WORDS - _KEEP)

# Bigrams stop at sentence ends, clause marks and brackets: "Mixture-of-Experts (MoE)" gives no
# "expert moe" bigram. A period inside a number ("1.58") is not a break.
# Every pattern here runs in linear time on any input (a 1 MB word must not stall scoring):
# possessive quantifiers never backtrack, and a run of marks is only tried from its start.
_BREAK = re.compile(r"(?<![.!?;:])[.!?;:]++(?=\s|$)|[,()\[\]{}\"“”|/]|\s[-–—]++\s")
# Decimal numbers stay whole ("1.58"); hyphens and underscores split words ("linear-attention").
_TOKEN = re.compile(r"\d++(?:\.\d++)+|[^\W_]++")
# Two capitals then a plural s: the first run has no capital, so it cannot backtrack.
_ACRONYM_PLURAL = re.compile(r"[A-Z][a-z0-9]*+[A-Z][A-Za-z0-9]*s")

# A light suffix stemmer (see stem()): (suffix, replacement, shortest stem left), first hit wins.
_RULES: tuple[tuple[str, str, int], ...] = (
    ("ization", "iz", 3),
    ("isation", "iz", 3),
    ("izer", "iz", 3),
    ("ation", "", 6),  # segmentation -> segment, augmentation -> augment
    ("ation", "at", 2),  # generation -> generat (as generate, generated, generative)
    ("ability", "abl", 3),
    ("ibility", "ibl", 3),
    ("ion", "", 5),  # prediction -> predict, compression -> compress
    ("ment", "", 5),  # alignment -> align (but segment stays)
    ("ness", "", 4),
    ("ity", "", 4),  # sparsity -> spars (as sparse)
    ("ive", "", 5),  # generative -> generat, adaptive -> adapt
    ("ing", "", 3),  # tuning -> tun (as tune, tuned)
    ("ied", "y", 3),
    ("ed", "", 3),
    ("ly", "", 5),
)
# Words the rules would get wrong ("position" is not "positive"); a word maps to its stem.
_EXCEPTIONS = {
    "adaptation": "adapt",
    "position": "position",
    "positive": "positive",
    "implement": "implement",
    "experiment": "experiment",
    "complement": "complement",
    "supplement": "supplement",
    "instrument": "instrument",
    "series": "series",
    "species": "species",
    "news": "news",
    "string": "string",
    "spring": "spring",
    "speed": "speed",
    "embed": "embed",
    "breed": "breed",
}
_KEEP_S = ("ss", "us", "is")  # corpus, loss, analysis: no plural s to drop
_AS_WORDS = frozenset(
    {"bias", "alias", "atlas", "canvas", "whereas", "pandas", "gas", "has", "was"}
)


def stem(word: str) -> str:
    """A light English suffix stemmer for lowercase words: plurals, -ing/-ed and the common
    derivational endings, never below a few letters. Lighter than Porter (which merges "general"
    with "generation"); no data files, so it runs anywhere."""
    if len(word) <= 3 or not word.isalpha():
        return word
    if word in _EXCEPTIONS:
        return _EXCEPTIONS[word]
    if word.endswith("ies") and len(word) > 4:
        word = word[:-3] + "y"
    elif word.endswith(("sses", "xes", "ches", "shes")):
        word = word[:-2]
    elif word.endswith("s") and not word.endswith(_KEEP_S) and word not in _AS_WORDS:
        word = word[:-1]
    if word in _EXCEPTIONS:
        return _EXCEPTIONS[word]
    for suffix, replacement, shortest in _RULES:
        if word.endswith(suffix) and len(word) - len(suffix) >= shortest:
            word = word[: -len(suffix)] + replacement
            doubled = suffix in ("ing", "ed") and len(word) > 3 and word[-1] == word[-2]
            if doubled and (word[-1] not in "lsz" or (word[-1] == "l" and len(word) > 5)):
                word = word[:-1]  # embedd -> embed, modell -> model (but pass, fall)
            break
    if word.endswith("e") and len(word) > 3:  # scale / scaled / scaling -> scal
        word = word[:-1]
    return word


def _is_acronym(token: str) -> bool:
    """MoE, LoRA, ViT, RLHF: two capitals, or a capital after the first letter."""
    return sum(c.isupper() for c in token) >= 2 or any(c.isupper() for c in token[1:])


TEXTS_KEPT = 4096  # analyzed texts an Analyzer remembers


SURFACES_KEPT = 4096  # texts whose word forms an Analyzer keeps (a few days of papers)


class Analyzer:
    """Text -> terms (unigrams then bigrams). A picklable callable: models keep it.

    Acronyms are lowercased but never stemmed ("SAM" must not become "sam" -> "sa"); acronym
    plurals lose their s ("LLMs" -> "llm"); single letters go, single digits stay ("4-bit").
    """

    def __init__(self, *, stemming: bool = True, bigrams: bool = True) -> None:
        self.stemming = stemming
        self.bigrams = bigrams
        self._cache: dict[str, str] = {}
        self._surfaces: dict[str, dict[str, str]] = {}  # a day's papers, asked again per batch

    def __getstate__(self) -> dict:
        return {"stemming": self.stemming, "bigrams": self.bigrams}

    def __setstate__(self, state: dict) -> None:
        self.__init__(**state)  # type: ignore[misc]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Analyzer) and self.__getstate__() == other.__getstate__()

    def __hash__(self) -> int:
        return hash((self.stemming, self.bigrams))

    def normalize(self, token: str) -> str:
        """One raw token -> its term, or "" for a stop word or a lone letter. Cached."""
        term = self._cache.get(token)
        if term is None:
            term = self._normalize(token)
            if len(self._cache) > 500_000:
                self._cache.clear()
            self._cache[token] = term
        return term

    def _normalize(self, token: str) -> str:
        if _ACRONYM_PLURAL.fullmatch(token):
            token = token[:-1]
        acronym = _is_acronym(token)
        lower = token.lower()
        if lower in STOP_WORDS and not acronym:
            return ""
        if len(lower) == 1 and not lower.isdigit():
            return ""
        if self.stemming and not acronym:
            return stem(lower)
        return lower

    def words(self, text: str) -> list[list[str]]:
        """The terms of each run of text between punctuation breaks."""
        runs = []
        for part in _BREAK.split(strip_accents_unicode(text)):
            terms = [t for t in map(self.normalize, _TOKEN.findall(part)) if t]
            if terms:
                runs.append(terms)
        return runs

    def __call__(self, text: str) -> tuple[str, ...]:
        """The text's terms. Remembered for the last TEXTS_KEPT texts: fitting a model and
        vectorizing the same papers (``papermail rank``, a day's papers inside its corpus)
        analyzes each text once."""
        texts = self.__dict__.setdefault("_texts", {})
        found = texts.get(text)
        if found is None:
            runs = self.words(text)
            terms = [t for run in runs for t in run]
            if self.bigrams:
                terms.extend(f"{a} {b}" for run in runs for a, b in pairwise(run))
            found = tuple(terms)
            if len(texts) >= TEXTS_KEPT:
                texts.clear()
            texts[text] = found
        return found

    def surface(self, text: str) -> dict[str, str]:
        """Each unigram term found in `text` -> the lowercase word it came from (the first seen),
        so that stems can be shown as words ("segment" -> "segmentation"). Kept for the last
        SURFACES_KEPT texts: do not change the dict returned."""
        found = self._surfaces.get(text)
        if found is None:
            if len(self._surfaces) >= SURFACES_KEPT:
                self._surfaces.clear()
            found = self._surfaces[text] = self._surface(text)
        return found

    def _surface(self, text: str) -> dict[str, str]:
        found: dict[str, str] = {}
        for part in _BREAK.split(strip_accents_unicode(text)):
            for token in _TOKEN.findall(part):
                term = self.normalize(token)
                if term:
                    found.setdefault(term, token.lower())
        return found


def phrase_terms(tokens: tuple[str, ...]) -> list[str]:
    """The terms of an analyzed phrase: its words, then its bigrams (no repeats)."""
    return list(dict.fromkeys([*tokens, *(f"{a} {b}" for a, b in pairwise(tokens))]))

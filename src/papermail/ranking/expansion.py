"""Query expansion: a phrase also matches its acronym or long form ("MoE" <-> "mixture of
experts") and its listed synonyms.

Two sources, both turned into the same analyzed terms the papers are made of:
- acronyms papers define themselves, "Mixture-of-Experts (MoE)", found with the Schwartz & Hearst
  (2003) rule: the acronym's letters appear in order in the words before the parenthesis, its
  first letter starting a word;
- an editable synonyms file (one group of equivalent phrases per line, ``a | b | c``), shipped in
  the package (``papermail/synonyms.txt``) and optionally extended by the operator's own file.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from papermail.ranking.text import Analyzer

# "long form words (SHORT)": the acronym has 2-10 characters, at least two capitals or digits.
_DEFINITION = re.compile(r"\(\s*([A-Za-z][A-Za-z0-9\-]{1,9})\s*[;,)]")
_CAPITALS = re.compile(r"[A-Z0-9]")
MIN_DEFINITIONS = 2  # a long form must be seen this often before a corpus acronym expands
MAX_ALTERNATIVES = 6


def _long_form(short: str, before: str) -> str | None:
    """Schwartz & Hearst's best long form for `short` at the end of `before`, or None."""
    words = before.split()
    window = " ".join(words[-min(len(short) + 5, len(short) * 2) :])
    s, i = len(short) - 1, len(window) - 1
    while s >= 0:
        char = short[s].lower()
        if not char.isalnum():
            s -= 1
            continue
        while i >= 0 and (
            window[i].lower() != char or (s == 0 and i > 0 and window[i - 1].isalnum())
        ):
            i -= 1
        if i < 0:
            return None
        i -= 1
        s -= 1
    start = window.rfind(" ", 0, i + 1) + 1
    return window[start:]


def find_definitions(text: str) -> Iterable[tuple[str, str]]:
    """(acronym, long form) pairs defined in `text`, e.g. ("MoE", "Mixture-of-Experts")."""
    for match in _DEFINITION.finditer(text):
        short = match.group(1)
        if short.endswith("s") and short[:-1] and short[-2].isupper():
            short = short[:-1]  # "(LLMs)"
        if len(_CAPITALS.findall(short)) < 2 or short.isdigit():
            continue
        before = re.split(r"[.;:()\[\]]", text[: match.start()])[-1]
        long = _long_form(short, before)
        if long and len(re.findall(r"[^\W_]+", long)) >= 2 and long.lower() != short.lower():
            yield short, long


@dataclass
class Acronyms:
    """Counts of (acronym term, long-form terms) definitions seen in a corpus."""

    counts: dict[str, Counter[tuple[str, ...]]] = field(default_factory=dict)
    written: dict[tuple[str, ...], str] = field(default_factory=dict)  # first spelling seen

    def add(self, analyzer: Analyzer, text: str) -> None:
        for short, long in find_definitions(text):
            key = analyzer.normalize(short)
            words = tuple(t for run in analyzer.words(long) for t in run)
            if key and len(words) >= 2:
                self.counts.setdefault(key, Counter())[words] += 1
                self.written.setdefault(words, long.lower())
                self.written.setdefault((key,), short.lower())

    def pairs(self) -> Iterable[tuple[str, tuple[str, ...], bool]]:
        """(acronym, long form, dominant): the acronym's majority meaning, seen at least
        MIN_DEFINITIONS times; `dominant` if it is the meaning in at least two thirds of the
        definitions (only then may the long form also expand to the acronym: "ASR" is automatic
        speech recognition in most papers, attack success rate in some)."""
        for key, forms in self.counts.items():
            total = sum(forms.values())
            for words, count in forms.items():
                if count >= MIN_DEFINITIONS and count * 2 > total:
                    yield key, words, count * 3 >= total * 2


def read_synonyms(text: str) -> list[list[str]]:
    """Groups of equivalent phrases: one group per line, members split by `|` (or `=`);
    `#` starts a comment."""
    groups = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        members = [m.strip() for m in re.split(r"[|=]", line) if m.strip()]
        if len(members) >= 2:
            groups.append(members)
    return groups


def packaged_synonyms() -> str:
    return resources.files("papermail").joinpath("synonyms.txt").read_text(encoding="utf-8")


def load_synonyms(extra: Path | str | None = None, *, packaged: bool = True) -> list[list[str]]:
    """The shipped synonyms, plus an operator's file if given (a missing file is an error)."""
    groups = read_synonyms(packaged_synonyms()) if packaged else []
    if extra:
        groups += read_synonyms(Path(extra).read_text(encoding="utf-8"))
    return groups


class Expander:
    """Rewrites an analyzed phrase into its alternatives by swapping one known span at a time:
    "moe inference" -> "mixtur expert inference"."""

    def __init__(
        self,
        rules: dict[tuple[str, ...], list[tuple[str, ...]]],
        written: dict[tuple[str, ...], str],
    ) -> None:
        self.rules = rules
        self.written = written  # how each form is spelled, to show it ("mixture of experts")
        self.longest = max((len(k) for k in rules), default=0)

    @classmethod
    def build(
        cls, analyzer: Analyzer, synonyms: list[list[str]], acronyms: Acronyms | None
    ) -> Expander:
        rules: dict[tuple[str, ...], list[tuple[str, ...]]] = defaultdict(list)
        written: dict[tuple[str, ...], str] = {}

        def link(a: tuple[str, ...], b: tuple[str, ...]) -> None:
            if a and b and a != b and b not in rules[a]:
                rules[a].append(b)

        for group in synonyms:
            forms = [tuple(t for run in analyzer.words(m) for t in run) for m in group]
            for form, member in zip(forms, group, strict=True):
                written.setdefault(form, member)
            for a in forms:
                for b in forms:
                    link(a, b)
        for key, words, dominant in acronyms.pairs() if acronyms else ():
            link((key,), words)
            if dominant:
                link(words, (key,))
            for form in ((key,), words):
                written.setdefault(form, acronyms.written.get(form, " ".join(form)))
        return cls(dict(rules), written)

    def other_senses(self, analyzer: Analyzer, text: str) -> set[str]:
        """Acronyms that `text` defines with a long form other than the ones this expander
        knows: there the acronym means something else, and must not match the known sense."""
        found = set()
        for short, long in find_definitions(text):
            key = analyzer.normalize(short)
            known = self.rules.get((key,))
            words = tuple(t for run in analyzer.words(long) for t in run)
            if known and words not in known:
                found.add(key)
        return found

    def alternatives(self, tokens: tuple[str, ...]) -> list[tuple[tuple[str, ...], str]]:
        """Other wordings of `tokens` (not itself), at most MAX_ALTERNATIVES, each with how the
        swapped-in form is spelled: (("mixtur", "expert", "inference"), "mixture of experts")."""
        found: dict[tuple[str, ...], str] = {}
        for size in range(min(self.longest, len(tokens)), 0, -1):
            for start in range(len(tokens) - size + 1):
                span = tokens[start : start + size]
                for other in self.rules.get(span, ()):
                    alternative = tokens[:start] + other + tokens[start + size :]
                    if alternative != tokens:
                        found.setdefault(alternative, self.written.get(other, " ".join(other)))
        return list(found.items())[:MAX_ALTERNATIVES]

"""The fitted model: document frequencies of a rolling corpus, the acronyms it defines, and the
analyzer, which together turn papers and phrases into comparable TF-IDF vectors.

Vectors are open-vocabulary: a term the corpus never saw gets the idf of a term seen once, and a
paper's norm counts all its terms, so a paper's vector never depends on what else is in a batch.
"""

from __future__ import annotations

import hashlib
import math
import re
import threading
from collections import Counter, OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import overload

import numpy as np
import scipy.sparse as sp

from papermail.ranking.base import ModelConfig, PaperText
from papermail.ranking.expansion import Acronyms, Expander, load_synonyms
from papermail.ranking.text import Analyzer


@dataclass(frozen=True, slots=True)
class Vectors:
    """Papers in one batch: `columns` maps each term they contain to a column."""

    columns: dict[str, int]
    tfidf: sp.csr_matrix  # papers x columns, L2-normalized, title weighted, sublinear tf
    title: sp.csr_matrix  # papers x columns: 1 where the title has the term
    abstract: sp.csr_matrix  # papers x columns: 1 where the abstract has the term


def _other_sense(term: str, senses: set[str]) -> str:
    """Marks an acronym used in another sense ("asr" -> "asr~"), alone or inside a bigram."""
    if " " in term:
        return " ".join(_other_sense(t, senses) for t in term.split(" "))
    return f"{term}~" if term in senses else term


SUGGEST_MAX_SHARE = 0.1  # a suggested term is in at most this share of the corpus
SUGGEST_COLLOCATION = 0.3  # a suggested bigram is in this share of the papers with its rarer word
FITTED_KEPT = 4  # fitted models fit_cached keeps per process


class RelevanceModel:
    """Fitted on the corpus the caller passes (the last CORPUS_DAYS of papers). Picklable."""

    def __init__(
        self,
        analyzer: Analyzer,
        idf: dict[str, float],
        unseen_idf: float,
        config: ModelConfig,
        expander: Expander,
        acronyms: Acronyms,
    ) -> None:
        self.analyzer = analyzer
        self.idf = idf
        self.unseen_idf = unseen_idf
        self.config = config
        self.expander = expander
        self.acronyms = acronyms

    @classmethod
    def fit(cls, corpus: Sequence[PaperText], config: ModelConfig | None = None) -> RelevanceModel:
        """Raises ValueError if the corpus has no words at all."""
        config = config or ModelConfig()
        analyzer = Analyzer(stemming=config.stemming)
        df: Counter[str] = Counter()
        acronyms = Acronyms()
        for paper in corpus:
            terms = set(analyzer(paper.title))
            terms.update(analyzer(paper.abstract))
            df.update(terms)
            if config.learn_acronyms:
                acronyms.add(analyzer, paper.title)
                acronyms.add(analyzer, paper.abstract)
        if not df:
            raise ValueError("the corpus has no words to fit a model on")
        n = len(corpus)
        # Smooth idf as sklearn's; a word in every paper still counts (idf 1). Terms seen once
        # are not stored: any term missing from the table gets their idf, which keeps the model
        # small (most bigrams are seen once).
        idf = {t: math.log((1 + n) / (1 + c)) + 1 for t, c in df.items() if c > 1}
        unseen = math.log((1 + n) / 2) + 1
        groups = load_synonyms(config.synonyms_file or None, packaged=config.synonyms)
        expander = Expander.build(analyzer, groups, acronyms)
        return cls(analyzer, idf, unseen, config, expander, acronyms)

    def idf_of(self, terms: Sequence[str]) -> np.ndarray:
        get, unseen = self.idf.get, self.unseen_idf
        return np.fromiter((get(t, unseen) for t in terms), float, len(terms))

    def tokens(self, phrase: str) -> tuple[str, ...]:
        """A typed phrase as analyzed words: "Mixture-of-Experts" -> ("mixtur", "expert").
        Remembered: every batch asks again for the phrases subscribers share."""
        cache = self.__dict__.setdefault("_tokens", {})
        found = cache.get(phrase)
        if found is None:
            found = tuple(t for run in self.analyzer.words(phrase) for t in run)
            if len(cache) > 200_000:
                cache.clear()
            cache[phrase] = found
        return found

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k not in ("_tokens", "_last")}

    def vectors(self, papers: Sequence[PaperText]) -> Vectors:
        """TF-IDF rows for papers: tf = title_weight x title count + abstract count, then
        1 + log(tf), times idf, L2-normalized over every term of the paper. The last papers'
        rows are kept: a day's scoring ranks the same candidates once per batch of subscribers.
        Do not change the arrays returned."""
        key = tuple(papers)
        last = getattr(self, "_last", None)
        if last is not None and last[0] == key:
            return last[1]
        found = self._vectors(key)
        self._last = (key, found)
        return found

    def _vectors(self, papers: Sequence[PaperText]) -> Vectors:
        columns: dict[str, int] = {}
        fields: list[tuple[list[int], list[int]]] = [([], []), ([], [])]
        for i, paper in enumerate(papers):
            senses = self.expander.other_senses(self.analyzer, f"{paper.title}. {paper.abstract}")
            for (rows, cols), text in zip(fields, (paper.title, paper.abstract), strict=True):
                terms = self.analyzer(text)
                if senses:
                    terms = [_other_sense(t, senses) for t in terms]
                ids = [columns.setdefault(t, len(columns)) for t in terms]
                cols.extend(ids)
                rows.extend([i] * len(ids))
        shape = (len(papers), len(columns))
        counts = [  # duplicates add up: counts
            sp.csr_matrix((np.ones(len(r)), (r, c)), shape=shape) for r, c in fields
        ]
        raw = (counts[0] * self.config.title_weight + counts[1]).tocsr()
        raw.sort_indices()
        terms = list(columns)
        idf = self.idf_of(terms)
        weights = raw.copy()
        weights.data = (1.0 + np.log(raw.data)) * idf[raw.indices]
        norms = np.sqrt(np.asarray(weights.multiply(weights).sum(axis=1)).ravel())
        weights = sp.csr_matrix(sp.diags(1.0 / np.where(norms > 0, norms, 1.0)) @ weights)
        title, abstract = ((c > 0).astype(float).tocsr() for c in counts)
        return Vectors(columns, weights, title, abstract)

    def vectorize(self, papers: Sequence[PaperText]) -> VectorizedPapers:
        """The papers with their vectors, for ranking them many times (the live preview, per
        keystroke): ``rank(model, model.vectorize(papers), ...)`` skips the tokenizing, most of
        the cost of ranking a few hundred papers for one subscriber."""
        return VectorizedPapers(self, tuple(papers), self.vectors(papers))

    def transform(self, papers: Sequence[PaperText]) -> sp.csr_matrix:
        """One L2-normalized TF-IDF row per paper (columns are this batch's own)."""
        return self.vectors(papers).tfidf

    def top_terms(
        self, papers: Sequence[PaperText], *, limit: int, exclude: Sequence[str] = ()
    ) -> list[str]:
        """The phrases that best characterize `papers`, for "more like this" keyword suggestions:
        summed TF-IDF times idf (specific terms first), bigrams and title terms preferred, each in
        at least two of the papers when there are two, shown as readers write them ("mixture of
        experts", not the stems "mixtur expert"). A bigram must be a phrase, not one paper's
        wording: other papers of the corpus use it, it is in a fair share of the papers that have
        its rarer word, and it is spelled across a stop word ("adoption of large") only when it
        is a known long form. Words of `exclude` phrases, and
        forms of a phrase already chosen (its acronym, its words), are skipped."""
        if not papers or limit <= 0:
            return []
        vectors = self.vectors(papers)
        terms = list(vectors.columns)
        held = np.asarray((vectors.title + vectors.abstract > 0).sum(axis=0)).ravel()
        idf = self.idf_of(terms)
        weight = np.asarray(vectors.tfidf.sum(axis=0)).ravel() * idf
        weight *= np.array([2.0 if " " in t else 1.0 for t in terms])
        weight *= 1.0 + (np.asarray(vectors.title.sum(axis=0)).ravel() > 0)
        n = 2 * math.exp(self.unseen_idf - 1) - 1  # corpus size, from the idf of a term seen once
        df = (1 + n) * np.exp(1 - idf) - 1
        weight[df > max(SUGGEST_MAX_SHARE * n, 2 * len(papers))] = 0  # common words
        for col, term in enumerate(terms):  # a bigram must be a phrase, not two words that met
            words = term.split(" ")
            if len(words) > 1 and weight[col] > 0:
                apart = (1 + n) * np.exp(1 - self.idf_of(words)) - 1
                phrase = df[col] >= max(SUGGEST_COLLOCATION * apart.min(), held[col] + 0.5)
                weight[col] *= phrase  # ... and other papers of the corpus use it too
        texts = [f"{p.title}. {p.abstract}" for p in papers]
        banned = set()
        for phrase in exclude:
            tokens = self.tokens(phrase)
            banned.update(tokens)
            banned.update(
                t for alternative, _ in self.expander.alternatives(tokens) for t in alternative
            )
        chosen: list[str] = []
        taken: set[str] = set()
        for col in np.lexsort((np.arange(len(terms)), -weight)):
            words = tuple(terms[col].split(" "))
            if weight[col] <= 0:
                break
            if held[col] < min(2, len(papers)) or banned & set(words) or taken & set(words):
                continue
            if any(w.endswith("~") or w.replace(".", "").isdigit() for w in words):
                continue
            shown = _spelling(self.analyzer, words, texts)
            if shown is None:
                continue
            crosses = len(shown.split()) > len(words)  # "adoption of large"
            if crosses and not any(True for _ in self.expander.alternatives(words)):
                continue
            chosen.append(shown)
            taken.update(words)
            for alternative, _ in self.expander.alternatives(words):
                taken.update(alternative)
            if len(chosen) == limit:
                break
        return chosen


@dataclass(frozen=True, eq=False)
class VectorizedPapers(Sequence[PaperText]):
    """Papers and their vectors under one model: a sequence of the papers, which rank() and
    rank_one() take in place of the papers."""

    model: RelevanceModel
    papers: tuple[PaperText, ...]
    vectors: Vectors

    def __len__(self) -> int:
        return len(self.papers)

    @overload
    def __getitem__(self, index: int) -> PaperText: ...
    @overload
    def __getitem__(self, index: slice) -> tuple[PaperText, ...]: ...
    def __getitem__(self, index: int | slice) -> PaperText | tuple[PaperText, ...]:
        return self.papers[index]


_fitted: OrderedDict[tuple[str, ModelConfig, int], RelevanceModel] = OrderedDict()
_fitted_lock = threading.Lock()


def fit_cached(corpus: Sequence[PaperText], config: ModelConfig | None = None) -> RelevanceModel:
    """RelevanceModel.fit, remembered per process for the last FITTED_KEPT corpora: every
    scoring task of a day fits on the same corpus, and hashing it costs a small part of fitting.
    Keyed on a digest of the texts, the config, and the synonyms file's mtime (an edit refits).
    Callers share the model: it is never changed after fitting."""
    config = config or ModelConfig()
    digest = hashlib.blake2b(digest_size=16)
    for paper in corpus:
        for text in (paper.title, paper.abstract):
            data = text.encode("utf-8", "surrogatepass")
            digest.update(len(data).to_bytes(8, "little"))
            digest.update(data)
    mtime = Path(config.synonyms_file).stat().st_mtime_ns if config.synonyms_file else 0
    key = (digest.hexdigest(), config, mtime)
    with _fitted_lock:
        model = _fitted.get(key)
        if model is not None:
            _fitted.move_to_end(key)
            return model
    model = RelevanceModel.fit(corpus, config)  # outside the lock: two tasks may both fit once
    with _fitted_lock:
        _fitted[key] = model
        while len(_fitted) > FITTED_KEPT:
            _fitted.popitem(last=False)
    return model


def _spelling(analyzer: Analyzer, words: tuple[str, ...], texts: Sequence[str]) -> str | None:
    """The most common way `texts` write the analyzed `words`: a run of raw tokens whose terms
    are `words`, small words between them kept ("mixture of experts")."""
    seen: Counter[str] = Counter()
    for text in texts:
        tokens = re.findall(r"\d+(?:\.\d+)+|[^\W_]+", text)
        terms = [analyzer.normalize(t) for t in tokens]
        for start, term in enumerate(terms):
            if term != words[0]:
                continue
            place, end = 1, start + 1
            while place < len(words) and end < len(terms) and end - start <= 2 * len(words):
                if terms[end] == words[place]:
                    place += 1
                elif terms[end]:
                    break
                end += 1
            if place == len(words):
                seen[" ".join(tokens[start:end]).lower()] += 1
    return seen.most_common(1)[0][0] if seen else None

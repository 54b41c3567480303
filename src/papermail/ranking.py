"""Relevance ranking: TF-IDF cosine between subscribers' keyword profiles and papers.

Pure on purpose (no database, Celery or web): it takes data and returns data, so it can be tested
and timed alone. All subscribers are ranked in one batch: each unique phrase is analyzed once and
scores come from sparse products, in chunks of profiles so memory stays bounded.
"""

from __future__ import annotations

from collections.abc import Collection, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer

# Hyphens split words ("linear-attention" -> "linear attention"); acronyms and numbers of two or
# more characters are kept (lowercased); single letters are dropped.
_WORDS = TfidfVectorizer(
    lowercase=True,
    strip_accents="unicode",
    stop_words="english",
    token_pattern=r"(?u)\b\w\w+\b",
    ngram_range=(1, 2),
).build_analyzer()


@dataclass(frozen=True, slots=True)
class PaperText:
    title: str
    abstract: str


@dataclass(frozen=True, slots=True)
class Keyword:
    phrase: str
    weight: float = 1.0
    negative: bool = False


@dataclass(frozen=True, slots=True)
class Profile:
    key: Hashable  # the subscriber id
    keywords: tuple[Keyword, ...]
    limit: int = 10  # top-N


@dataclass(frozen=True, slots=True)
class Match:
    index: int  # position of the paper in the `papers` passed to rank()
    score: float  # cosine relevance in [0, 1]
    matched: tuple[str, ...]  # the phrases (or their words) found in the paper, strongest first


def _analyze(doc: PaperText | str) -> list[str]:
    """Terms of a phrase, or of a paper with its title counted twice (a title says what the paper
    is about). Fields are analyzed apart so that no bigram spans the title/abstract seam."""
    if isinstance(doc, str):
        return _WORDS(doc)
    title = _WORDS(doc.title)
    return title + title + _WORDS(doc.abstract)


class RelevanceModel:
    """A TF-IDF vocabulary fitted on a corpus. Picklable: the analyzer is a module function."""

    def __init__(self, vectorizer: TfidfVectorizer) -> None:
        self.vectorizer = vectorizer

    @classmethod
    def fit(cls, corpus: Sequence[PaperText]) -> RelevanceModel:
        """Raises ValueError if the corpus has no words at all."""
        # max_df=1.0: on a tiny corpus a word in every paper must still count.
        vectorizer = TfidfVectorizer(analyzer=_analyze, sublinear_tf=True, min_df=1, max_df=1.0)
        vectorizer.fit(list(corpus))
        return cls(vectorizer)

    def transform(self, papers: Sequence[PaperText]) -> sp.csr_matrix:
        """One L2-normalized TF-IDF row per paper."""
        return sp.csr_matrix(self.vectorizer.transform(list(papers)))


def _keywords(profiles: Sequence[Profile]) -> tuple[list[str], sp.csr_matrix, sp.csr_matrix]:
    """Unique phrases, sorted so that a profile's arithmetic never depends on the rest of the
    batch, and profiles x phrases matrices of positive weights and of negative flags."""
    phrases = sorted({kw.phrase.strip() for p in profiles for kw in p.keywords})
    ids = {phrase: i for i, phrase in enumerate(phrases)}
    pos_rc: tuple[list[int], list[int]] = ([], [])
    neg_rc: tuple[list[int], list[int]] = ([], [])
    weights: list[float] = []
    for row, profile in enumerate(profiles):
        for kw in profile.keywords:
            if kw.negative or kw.weight > 0:  # a zero or negative weight adds nothing
                rows, cols = neg_rc if kw.negative else pos_rc
                rows.append(row)
                cols.append(ids[kw.phrase.strip()])
                if not kw.negative:
                    weights.append(kw.weight)
    shape = (len(profiles), len(phrases))
    pos = sp.csr_matrix((weights, pos_rc), shape, dtype=float)
    neg = sp.csr_matrix((np.ones(len(neg_rc[0])), neg_rc), shape, dtype=float)
    pos.sum_duplicates()  # the same phrase twice in a profile: weights add up
    return phrases, pos, neg


@dataclass(frozen=True, slots=True)
class _Batch:
    """What rank() derives once per call; every chunk of profiles reads it."""

    pos: sp.csr_matrix  # profiles x phrases: positive weights
    neg: sp.csr_matrix  # profiles x phrases: negative flags
    shares: sp.csr_matrix  # phrases x papers: cosine of each phrase with each paper
    norms: np.ndarray  # per profile: |sum of weighted phrase vectors| (1 if zero)
    contains: sp.csr_matrix  # phrases x papers: the paper contains the whole phrase
    unigrams: sp.csr_matrix  # phrases x terms: the phrase's words (data: 1 + place in phrase)
    present: sp.csr_matrix  # papers x terms: the paper has the term
    labels: np.ndarray  # phrases, then terms


def _containment(
    model: RelevanceModel, phrases: list[str], papers: Sequence[PaperText]
) -> tuple[sp.csr_matrix, sp.csr_matrix, sp.csr_matrix, list[str]]:
    """A paper contains a phrase if it has every word of it and each of its bigrams that the
    vocabulary knows. Words are looked up in the papers, not in the fitted vocabulary, so a word
    new to the model still triggers a negative keyword. Returns the phrases x papers `contains`,
    phrases x terms `unigrams`, papers x terms `present`, and the terms."""
    known = model.vectorizer.vocabulary_
    wanted = [
        [t for t in dict.fromkeys(_analyze(p)) if " " not in t or t in known] for p in phrases
    ]
    terms = sorted({t for ts in wanted for t in ts})
    column = {t: i for i, t in enumerate(terms)}
    sizes = np.array([len(ts) for ts in wanted], dtype=np.intp)
    rows = np.repeat(np.arange(len(phrases)), sizes)
    place = np.arange(len(rows)) - np.repeat(np.cumsum(sizes) - sizes, sizes)  # unigrams first
    cols = np.fromiter((column[t] for ts in wanted for t in ts), np.intp, len(rows))
    word = np.fromiter((" " not in t for ts in wanted for t in ts), bool, len(rows))
    shape = (len(phrases), len(terms))
    required = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape)
    unigrams = sp.csr_matrix((place[word] + 1.0, (rows[word], cols[word])), shape)
    present = sp.csr_matrix((len(papers), len(terms)))
    if terms:
        binary = CountVectorizer(analyzer=_analyze, vocabulary=column, binary=True, dtype=float)
        present = sp.csr_matrix(binary.transform(list(papers)))
    hits = sp.csr_matrix(required @ present.T)
    hit_rows = np.repeat(np.arange(len(phrases)), np.diff(hits.indptr))
    full = hits.data == np.diff(required.indptr)[hit_rows]
    contains = (np.ones(full.sum()), (hit_rows[full], hits.indices[full]))
    return sp.csr_matrix(contains, (len(phrases), len(papers))), unigrams, present, terms


def _prepare(
    model: RelevanceModel, papers: Sequence[PaperText], profiles: Sequence[Profile]
) -> _Batch:
    """Score(profile, paper) = sum_p w_p cos(phrase_p, paper) / |sum_p w_p phrase_p|, so the
    phrases x papers `shares` give both the scores and each phrase's part in them."""
    phrases, pos, neg = _keywords(profiles)
    vectors = sp.csr_matrix((0, len(model.vectorizer.vocabulary_)))
    if phrases:  # each unique phrase is analyzed once
        vectors = model.vectorizer.transform(phrases)
    norms = np.sqrt(np.asarray((pos @ vectors).power(2).sum(axis=1)).ravel())
    shares = sp.csr_matrix(vectors @ model.transform(papers).T)
    contains, unigrams, present, terms = _containment(model, phrases, papers)
    labels = np.array(phrases + terms, dtype=object)
    return _Batch(
        pos, neg, shares, np.where(norms > 0, norms, 1.0), contains, unigrams, present, labels
    )


def _at(matrix: sp.csr_matrix, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Elementwise lookup of sparse entries (scipy gives a 1 x n matrix, and fails when empty)."""
    return np.asarray(matrix[rows, cols]).ravel() if rows.size else np.zeros(0)


def _expand(indptr: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each of `rows` of a CSR matrix, the positions of its stored entries: (owner, slot)."""
    counts = indptr[rows + 1] - indptr[rows]
    owner = np.repeat(np.arange(len(rows)), counts)
    slot = indptr[rows][owner] + np.arange(counts.sum()) - (np.cumsum(counts) - counts)[owner]
    return owner, slot


def _top(scores: np.ndarray, limits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row, column) of each row's best `limits[row]` positive scores, best first, ties by column.
    A partition finds each row's cut-off score; what reaches it is then sorted exactly."""
    n = scores.shape[1]
    limits = np.minimum(limits, n)
    cut = np.full(len(scores), np.inf)
    some = limits > 0
    if some.any():
        part = np.partition(scores, np.unique(n - limits[some]), axis=1)
        cut[some] = part[some, n - limits[some]]
    rows, cols = np.nonzero((scores >= cut[:, None]) & (scores > 0))
    order = np.lexsort((cols, -scores[rows, cols], rows))
    rows, cols = rows[order], cols[order]
    keep = np.arange(len(rows)) - np.searchsorted(rows, rows) < limits[rows]
    return rows[keep], cols[keep]


def _explain(batch: _Batch, rows: np.ndarray, cols: np.ndarray) -> list[tuple[str, ...]]:
    """For each picked (profile, paper): the positive phrases the paper contains, by their share
    of the score; then the words it has of phrases it contains only in part."""
    pair, slot = _expand(batch.pos.indptr, rows)
    phrase, paper = batch.pos.indices[slot], cols[pair]
    share = batch.pos.data[slot] * _at(batch.shares, phrase, paper)
    full = _at(batch.contains, phrase, paper) > 0
    part, uslot = _expand(batch.unigrams.indptr, phrase[~full])
    term = batch.unigrams.indices[uslot]
    has = _at(batch.present, paper[~full][part], term) > 0
    owner = np.concatenate([pair[full], pair[~full][part][has]])
    tier = np.concatenate([np.zeros(full.sum()), np.ones(has.sum())])
    weight = np.concatenate([share[full], share[~full][part][has]])
    place = np.concatenate([np.zeros(full.sum()), batch.unigrams.data[uslot][has]])
    offset = len(batch.labels) - batch.unigrams.shape[1]
    label = np.concatenate([phrase[full], offset + term[has]])
    order = np.lexsort((label, place, -weight, tier, owner))
    names = batch.labels[label[order]].tolist()
    bounds = np.searchsorted(owner[order], np.arange(len(rows) + 1)).tolist()
    return [tuple(dict.fromkeys(names[a:b])) for a, b in pairwise(bounds)]


def rank(
    model: RelevanceModel,
    papers: Sequence[PaperText],
    profiles: Sequence[Profile],
    *,
    min_score: float,
    eligible: Mapping[Hashable, Collection[int]] | None = None,
    chunk_size: int = 2048,
) -> dict[Hashable, list[Match]]:
    """Every profile's top matches among `papers`, best first. If `eligible` has an entry for a
    profile key, only those paper indexes may be returned for it (papers already sent are not)."""
    found: list[list[Match]] = [[] for _ in profiles]
    if not papers or not profiles:
        return {profile.key: [] for profile in profiles}
    batch = _prepare(model, papers, profiles)
    limits = np.array([p.limit for p in profiles], dtype=np.intp)
    step = max(chunk_size, 1)
    for start in range(0, len(profiles), step):
        chunk = slice(start, min(start + step, len(profiles)))
        scores = (batch.pos[chunk] @ batch.shares).toarray() / batch.norms[chunk, None]
        excluded = (batch.neg[chunk] @ batch.contains).tocoo()
        scores[excluded.row, excluded.col] = 0.0
        for row, profile in enumerate(profiles[chunk]):
            allowed = None if eligible is None else eligible.get(profile.key)
            if allowed is not None:
                mask = np.ones(len(papers), bool)
                mask[[i for i in allowed if 0 <= i < len(papers)]] = False
                scores[row, mask] = 0.0
        scores[scores < min_score] = 0.0
        rows, cols = _top(scores, limits[chunk])
        values = np.minimum(scores[rows, cols], 1.0).tolist()
        reasons = _explain(batch, rows + start, cols)
        for row, col, value, why in zip(rows.tolist(), cols.tolist(), values, reasons, strict=True):
            if why:  # never empty when the score is positive; a guard all the same
                found[start + row].append(Match(col, value, why))
    return {profile.key: matches for profile, matches in zip(profiles, found, strict=True)}


def rank_one(
    model: RelevanceModel,
    papers: Sequence[PaperText],
    keywords: Iterable[Keyword],
    *,
    min_score: float,
    limit: int,
) -> list[Match]:
    """One subscriber's matches (preview page, CLI): the batch path, so results agree with it."""
    profile = Profile(key=None, keywords=tuple(keywords), limit=limit)
    return rank(model, papers, [profile], min_score=min_score)[None]

"""rank(): every subscriber's top papers in one batch, with why each was picked.

Each unique phrase is scored against every paper once (phrases.py); a profile's keyword score is
the probabilistic OR of its phrases, weight as exponent:
    score = 1 - prod_p (1 - s_p) ** w_p,
so one strong match is enough, several add up, and the score never depends on how many phrases a
profile has. In log space that is one sparse product per chunk of profiles. Then, in order:
feedback, excluded phrases, the papers each profile may still receive, `min_score`, the
popularity prior, and the pick (top-N, or MMR for diversity).
"""

from __future__ import annotations

import gc
from collections.abc import Collection, Hashable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from itertools import pairwise

import numpy as np
import scipy.sparse as sp

from papermail.ranking import diversity, learning
from papermail.ranking.base import (
    FEEDBACK_LABEL,
    Feedback,
    Keyword,
    Match,
    PaperText,
    Profile,
    RankOptions,
)
from papermail.ranking.model import RelevanceModel, Vectors
from papermail.ranking.phrases import NEAR_BIT, WHERE, PhraseTable, _expand, build_table

POPULAR = 100  # upvotes that earn the whole prior
_PLACES = np.array(["", WHERE[1], WHERE[2], WHERE[3]], dtype=object)


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


def _popularity(upvotes: Sequence[int | None] | None, n: int, prior: float) -> np.ndarray:
    """1 + prior x log-scaled upvotes (0 for none, 1 from POPULAR up)."""
    if upvotes is None or prior == 0:
        return np.ones(n)
    votes = np.array([max(v or 0, 0) for v in upvotes], dtype=float)
    return 1.0 + prior * np.minimum(np.log1p(votes) / np.log1p(POPULAR), 1.0)


class _Explainer:
    """Turns picked (profile, paper) pairs into matched phrases, places and reasons."""

    def __init__(self, table: PhraseTable, pos: sp.csr_matrix, cosine: bool) -> None:
        self.table, self.pos, self.cosine = table, pos, cosine
        self.labels = np.array(table.phrases + table.alternatives, dtype=object)

    def __call__(self, rows: np.ndarray, cols: np.ndarray) -> list[tuple[tuple, tuple, tuple]]:
        """Per pair: (phrases, places, details), strongest first (see Match.details)."""
        t = self.table
        pair, slot = _expand(self.pos.indptr, rows)
        phrase, paper = self.pos.indices[slot], cols[pair]
        pos = t.lookup(phrase, paper)
        hit = pos >= 0
        pair, phrase, pos, weight = pair[hit], phrase[hit], pos[hit], self.pos.data[slot][hit]
        miss = t.log_miss.data[pos]
        share = weight * -np.expm1(miss) if self.cosine else -weight * miss
        order = np.lexsort((phrase, -share, pair))
        pair, phrase, pos, share = pair[order], phrase[order], pos[order], share[order]
        bits, via = t.where[pos], t.via[pos]
        names = self.labels[phrase]
        vias = np.full(len(pos), "", dtype=object)
        some = np.flatnonzero(via)
        vias[some] = self.labels[len(t.phrases) + via[some] - 1]
        vias[some[vias[some] == names[some]]] = ""
        names_t = tuple(names.tolist())
        places = tuple(_PLACES[bits & 3].tolist())
        details = (tuple(vias.tolist()), tuple(((bits & NEAR_BIT) == 0).tolist()), share.tolist())
        bounds = np.searchsorted(pair, np.arange(len(rows) + 1)).tolist()
        return [(names_t[a:b], places[a:b], (*details, a, b)) for a, b in pairwise(bounds)]


def _feedback_rows(
    feedback: Mapping[Hashable, Feedback] | None, profiles: Sequence[Profile]
) -> tuple[list[PaperText], dict[int, tuple[np.ndarray, np.ndarray]]]:
    """The rated papers' texts (each once) and, per profile row, its liked / disliked rows."""
    if not feedback:
        return [], {}
    texts: dict[PaperText, int] = {}
    rows: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for row, profile in enumerate(profiles):
        given = feedback.get(profile.key)
        if given is None or not len(given):
            continue
        liked = [texts.setdefault(p, len(texts)) for p in given.liked]
        disliked = [texts.setdefault(p, len(texts)) for p in given.disliked]
        rows[row] = (np.array(liked, dtype=np.intp), np.array(disliked, dtype=np.intp))
    return list(texts), rows


@contextmanager
def _gc_paused() -> Iterator[None]:
    """A batch creates a million small acyclic objects (matches and their tuples); the cyclic
    garbage collector would rescan them again and again (a third of the run time)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _similarity(vectors: Vectors, n: int) -> np.ndarray:
    x = vectors.tfidf[:n]
    return np.asarray((x @ x.T).toarray(), dtype=np.float32)


def rank(
    model: RelevanceModel,
    papers: Sequence[PaperText],
    profiles: Sequence[Profile],
    *,
    min_score: float,
    eligible: Mapping[Hashable, Collection[int]] | None = None,
    chunk_size: int = 2048,
    options: RankOptions | None = None,
    upvotes: Sequence[int | None] | None = None,
    feedback: Mapping[Hashable, Feedback] | None = None,
) -> dict[Hashable, list[Match]]:
    """Every profile's top matches among `papers`, best first (in MMR order when diversity is
    on). If `eligible` has an entry for a profile key, only those paper indexes may be returned
    for it (papers already sent are not). `upvotes` (one per paper) feeds the popularity prior;
    `feedback` (per profile key) the Rocchio shift and the classifier."""
    options = options or RankOptions()
    if not papers or not profiles:
        return {profile.key: [] for profile in profiles}
    with _gc_paused():
        return _rank(
            model, papers, profiles, min_score, eligible, chunk_size, options, upvotes, feedback
        )


def _rank(
    model: RelevanceModel,
    papers: Sequence[PaperText],
    profiles: Sequence[Profile],
    min_score: float,
    eligible: Mapping[Hashable, Collection[int]] | None,
    chunk_size: int,
    options: RankOptions,
    upvotes: Sequence[int | None] | None,
    feedback: Mapping[Hashable, Feedback] | None,
) -> dict[Hashable, list[Match]]:
    n = len(papers)
    rated, rated_rows = _feedback_rows(feedback, profiles)
    vectors = model.vectors([*papers, *rated])
    phrases, pos, neg = _keywords(profiles)
    own = Vectors(vectors.columns, vectors.tfidf[:n], vectors.title[:n], vectors.abstract[:n])
    table = build_table(model, own, phrases, options)
    cosine = options.combine == "cosine"
    if cosine:
        shares = table.log_miss.copy()
        shares.data = -np.expm1(shares.data)
        norms = np.sqrt(np.asarray((pos @ table.own).power(2).sum(axis=1)).ravel())
        norms[norms == 0] = 1.0
    popularity = _popularity(upvotes, n, options.prior)
    similarity = _similarity(vectors, n) if options.diversity < 1 else None
    explain = _Explainer(table, pos, cosine)
    limits = np.array([p.limit for p in profiles], dtype=np.intp)
    found: list[list[Match]] = [[] for _ in profiles]
    for start in range(0, len(profiles), max(chunk_size, 1)):
        chunk = slice(start, min(start + max(chunk_size, 1), len(profiles)))
        if cosine:
            scores = (pos[chunk] @ shares).toarray() / norms[chunk, None]
        else:
            scores = -np.expm1((pos[chunk] @ table.log_miss).toarray())
        learned: dict[int, np.ndarray] = {}
        rated_here = [row for row in range(chunk.start, chunk.stop) if row in rated_rows]
        if rated_here:
            local = np.array(rated_here) - start
            blended, shifts = learning.blend(
                scores[local],
                vectors.tfidf,
                n,
                [n + rated_rows[row][0] for row in rated_here],
                [n + rated_rows[row][1] for row in rated_here],
                options,
            )
            scores[local] = blended
            learned = dict(zip(rated_here, shifts, strict=True))
        excluded = (neg[chunk] @ table.contains).tocoo()
        scores[excluded.row, excluded.col] *= options.negative_factor
        for row, profile in enumerate(profiles[chunk]):
            allowed = None if eligible is None else eligible.get(profile.key)
            if allowed is not None:
                mask = np.ones(n, bool)
                mask[[i for i in allowed if 0 <= i < n]] = False
                scores[row, mask] = 0.0
        scores[scores < min_score] = 0.0
        scores *= popularity
        if similarity is not None:
            rows, cols = diversity.select(
                scores, limits[chunk], similarity, options.diversity, _top
            )
        else:
            rows, cols = _top(scores, limits[chunk])
        values = np.minimum(scores[rows, cols], 1.0).tolist()
        details = explain(rows + start, cols)
        for row, col, value, why in zip(rows.tolist(), cols.tolist(), values, details, strict=True):
            shift = learned.get(start + row)
            if shift is not None and shift[col] > 0:
                why = _with_feedback(why, float(shift[col]))
            if why[0]:  # never empty when the score is positive; a guard all the same
                found[start + row].append(Match(col, value, *why))
    return {profile.key: matches for profile, matches in zip(profiles, found, strict=True)}


def _with_feedback(why: tuple[tuple, tuple, tuple], share: float) -> tuple[tuple, tuple, tuple]:
    """Adds "similar to papers you liked" to a match's reasons, in order of share."""
    names, places, (vias, exact, shares, a, b) = why
    rows = [*zip(names, places, vias[a:b], exact[a:b], shares[a:b], strict=True)]
    rows.append((FEEDBACK_LABEL, "", "", True, share))
    rows.sort(key=lambda d: -d[4])
    n, p, v, e, s = (list(c) for c in zip(*rows, strict=True))
    return tuple(n), tuple(p), (v, e, s, 0, len(rows))


def rank_one(
    model: RelevanceModel,
    papers: Sequence[PaperText],
    keywords: Iterable[Keyword],
    *,
    min_score: float,
    limit: int,
    options: RankOptions | None = None,
    upvotes: Sequence[int | None] | None = None,
    feedback: Feedback | None = None,
) -> list[Match]:
    """One subscriber's matches (preview page, CLI): the batch path, so results agree with it."""
    profile = Profile(key=None, keywords=tuple(keywords), limit=limit)
    return rank(
        model,
        papers,
        [profile],
        min_score=min_score,
        options=options,
        upvotes=upvotes,
        feedback={None: feedback} if feedback else None,
    )[None]

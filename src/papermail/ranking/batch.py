"""rank(): every subscriber's top papers in one batch, with why each was picked.

Each unique phrase is scored against every paper once (phrases.py); a profile's keyword score is
the probabilistic OR of its phrases, weight as exponent:
    score = 1 - prod_p (1 - s_p) ** w_p,
so one strong match is enough, several add up, and the score never depends on how many phrases a
profile has. In log space that is one sparse x dense product per chunk of profiles. Then, in
order: feedback, excluded phrases, the papers each profile may still receive, `min_score`, the
popularity prior, and the pick (top-N, or MMR for diversity).

A profile's arithmetic never depends on the rest of the batch, and subscribers share interests, so
sharing changes no result and saves most of the work: profiles with the same keywords, limit and
eligible papers (and no ratings) are ranked once, and identical matches (same paper, score and
reasons; one per paper and phrase set, give or take) are one Match object however many digests
carry them.
"""

from __future__ import annotations

import gc
from collections.abc import (
    Callable,
    Collection,
    Hashable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from itertools import chain, pairwise, repeat
from operator import attrgetter

import numpy as np
import scipy.sparse as sp

from papermail.ranking import diversity, learning, prf
from papermail.ranking.base import (
    FEEDBACK_LABEL,
    Feedback,
    Keyword,
    Match,
    Meaning,
    PaperText,
    Profile,
    RankOptions,
)
from papermail.ranking.model import RelevanceModel, VectorizedPapers, Vectors
from papermail.ranking.phrases import (
    MEANING,
    NEAR_BIT,
    WHERE,
    PhraseTable,
    _expand,
    build_table,
    partial_label,
)

POPULAR = 100  # upvotes that earn the whole prior
MINOR_REASON = 0.1  # a phrase adding less than this share of the top reason's is not named
_PLACES = np.array(["", WHERE[1], WHERE[2], WHERE[3]], dtype=object)


class _Eligible:
    """The distinct sets of papers profiles may receive, as rows of a boolean matrix. Each
    collection object is read once (plan_digests gives every subscriber with the same start the
    same list): `numbers` maps its id to its row, -1 when it holds every paper."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.numbers: dict[int, int] = {}
        self.by_content: dict[bytes, int] = {}
        self.kept: list[Collection[int]] = []  # alive until the end, so no id is reused
        self.masks: list[np.ndarray] = []

    def add(self, allowed: Collection[int]) -> int:
        index = np.fromiter(allowed, np.intp, len(allowed))
        mask = np.zeros(self.n, bool)
        mask[index[(index >= 0) & (index < self.n)]] = True
        number = -1
        if not mask.all():
            number = self.by_content.setdefault(mask.tobytes(), len(self.masks))
            if number == len(self.masks):
                self.masks.append(mask)
        self.kept.append(allowed)
        self.numbers[id(allowed)] = number
        return number

    def number(self, allowed: Collection[int] | None) -> int:
        """The row of `allowed`: -1 for None (every paper), each collection object read once."""
        if allowed is None:
            return -1
        number = self.numbers.get(id(allowed))
        return self.add(allowed) if number is None else number

    def matrix(self) -> np.ndarray:
        return np.array(self.masks, dtype=bool).reshape(-1, self.n)


@dataclass(frozen=True, slots=True)
class _Rows:
    """The batch's distinct profiles (rows) and, per profile, which row it is."""

    keys: list[Hashable]  # per profile, its key
    of: list[int]  # per profile, its row
    phrases: list[str]  # unique stripped phrases, sorted: a row's arithmetic is batch-independent
    pos: sp.csr_matrix  # rows x phrases: positive weights
    neg: sp.csr_matrix  # rows x phrases: 1 for an excluded phrase
    limits: np.ndarray
    mask: np.ndarray  # per row: its number in `masks`, -1 when it may receive every paper
    masks: np.ndarray  # distinct eligible sets x papers: True where a paper may be sent
    rated: dict[int, tuple[np.ndarray, np.ndarray]]  # row -> its liked / disliked `texts`
    texts: list[PaperText]  # the rated papers, each once


def _rows(
    profiles: Sequence[Profile],
    n: int,
    eligible: Mapping[Hashable, Collection[int]] | None,
    feedback: Mapping[Hashable, Feedback] | None,
) -> _Rows:
    """A signature per profile (limit, eligible set, keywords), each distinct one a row, in
    order of first use; a profile with ratings is always a row of its own. Built with
    comprehensions over the profiles (the one part of rank() per subscriber in Python)."""
    keys = [profile.key for profile in profiles]
    masks = _Eligible(n)
    numbers: Iterable[int] = repeat(-1)
    if eligible:
        numbers = list(map(masks.number, map(eligible.get, keys)))
    signatures: Iterable[tuple] = zip(
        map(_LIMIT, profiles), numbers, map(_KEYWORDS, profiles), strict=False
    )
    rated_at = [i for i, key in enumerate(keys) if feedback.get(key)] if feedback else []
    if rated_at:  # a rated profile learns on its own: its signature names it
        signatures = list(signatures)
        for i in rated_at:
            signatures[i] = (*signatures[i], i)
    seen: dict[tuple, int] = {}
    of = [seen.setdefault(signature, len(seen)) for signature in signatures]
    texts: dict[PaperText, int] = {}
    rated: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for i in rated_at:
        given = feedback[keys[i]]  # type: ignore[index]
        liked = [texts.setdefault(p, len(texts)) for p in given.liked]
        disliked = [texts.setdefault(p, len(texts)) for p in given.disliked]
        rated[of[i]] = (np.array(liked, dtype=np.intp), np.array(disliked, dtype=np.intp))
    distinct = list(seen)
    sizes = [len(signature[2]) for signature in distinct]
    keywords = list(chain.from_iterable(chain.from_iterable(s[2] for s in distinct)))

    typed = keywords[0::3]
    phrases = sorted({phrase.strip() for phrase in set(typed)})
    ids = {phrase: i for i, phrase in enumerate(phrases)}
    column = {phrase: ids[phrase.strip()] for phrase in set(typed)}
    cols = np.fromiter(map(column.__getitem__, typed), np.intp, len(typed))
    weight = np.array(keywords[1::3], dtype=float)
    negative = np.array(keywords[2::3], dtype=bool)
    rows = np.repeat(np.arange(len(sizes)), sizes)
    positive = ~negative & (weight > 0)  # a zero or negative weight adds nothing
    shape = (len(sizes), len(phrases))
    pos = sp.csr_matrix((weight[positive], (rows[positive], cols[positive])), shape, dtype=float)
    pos.sum_duplicates()  # the same phrase twice in a profile: weights add up
    neg = sp.csr_matrix(
        (np.ones(int(negative.sum())), (rows[negative], cols[negative])), shape, dtype=float
    )
    limit = np.fromiter((s[0] for s in distinct), np.intp, len(distinct))
    mask = np.fromiter((s[1] for s in distinct), np.intp, len(distinct))
    return _Rows(keys, of, phrases, pos, neg, limit, mask, masks.matrix(), rated, list(texts))


_LIMIT = attrgetter("limit")
_KEYWORDS = attrgetter("keywords")


def _top(
    scores: np.ndarray, limits: np.ndarray, floor: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Each row's best `limits[row]` scores above `floor` (and above 0), best first, ties by
    column: a rows x width matrix of columns (-1 past a row's end) and one of their scores (-inf
    there). Only a few papers per row score at all, so those entries are sorted as one unsigned
    key each, (row, score descending, column): a positive float32's bits order like the float,
    and a plain sort of ~50 keys per row beats sorting whole rows."""
    scores = scores.astype(np.float32, copy=False)
    n_rows, n = scores.shape
    lowest = max(np.float32(floor), np.nextafter(np.float32(0), np.float32(1)))
    flat = np.flatnonzero(scores >= lowest)
    rows, cols = np.divmod(flat, n)
    col_bits = max(n - 1, 1).bit_length()
    row_shift = np.uint64(32 + col_bits)
    descending = ~scores.ravel()[flat].view(np.uint32)
    key = rows.astype(np.uint64) << row_shift
    key |= descending.astype(np.uint64) << np.uint64(col_bits)
    key |= cols.astype(np.uint64)
    key.sort()
    rows = (key >> row_shift).astype(np.intp)
    counts = np.bincount(rows, minlength=n_rows)
    place = np.arange(len(rows)) - np.repeat(np.cumsum(counts) - counts, counts)
    keep = place < np.minimum(limits, n)[rows]
    key, rows, place = key[keep], rows[keep], place[keep]
    width = int(place.max(initial=-1)) + 1
    value = np.full((n_rows, width), -np.inf)
    column = np.full((n_rows, width), -1, dtype=np.intp)
    bits = (key >> np.uint64(col_bits)).astype(np.uint32)  # the low 32 bits: ~score
    value[rows, place] = (~bits).view(np.float32)
    column[rows, place] = (key & np.uint64((1 << col_bits) - 1)).astype(np.intp)
    return column, value


def _popularity(upvotes: Sequence[int | None] | None, n: int, prior: float) -> np.ndarray | None:
    """1 + prior x log-scaled upvotes (0 for none, 1 from POPULAR up); None: no prior."""
    if upvotes is None or prior == 0:
        return None
    votes = np.array([max(v or 0, 0) for v in upvotes], dtype=float)
    return 1.0 + prior * np.minimum(np.log1p(votes) / np.log1p(POPULAR), 1.0)


def _norms(pos: sp.csr_matrix, table: PhraseTable) -> np.ndarray:
    """Per row, the norm of its phrases' combined query vector (cosine mode)."""
    norms = np.sqrt(np.asarray((pos @ table.own).power(2).sum(axis=1)).ravel())
    norms[norms == 0] = 1.0
    return norms


@dataclass(frozen=True, slots=True)
class _Chunk:
    """A chunk of rows with the phrases they use: `part` (rows x used phrases) and `block`, those
    phrases' log(1 - s) against every paper, dense. A chunk's rows use few phrases, so a row's
    scores are a handful of dense vector additions (no sparse product with its symbolic pass),
    and whether a paper has a row's phrase is one lookup in `block`.

    The arithmetic is float32: half the memory traffic of the dense passes (scores, sort), and
    scores move by < 1e-7 (the 300k-profile bench: the same papers, order and reasons)."""

    part: sp.csr_matrix
    used: np.ndarray  # the phrase of each column of `part`
    block: np.ndarray
    weights: np.ndarray  # `part`'s weights, as given (float64): they key shared matches

    @classmethod
    def of(cls, pos: sp.csr_matrix, log_miss: sp.csr_matrix, start: int, stop: int) -> _Chunk:
        part = pos[start:stop]
        used, local = np.unique(part.indices, return_inverse=True)
        shape = (part.shape[0], len(used))
        single = sp.csr_matrix((part.data.astype(np.float32), local.ravel(), part.indptr), shape)
        return cls(single, used, log_miss[used].toarray().astype(np.float32), part.data)

    def scores(self, norms: np.ndarray | None) -> np.ndarray:
        """OR: 1 - exp(sum w log(1 - s)); cosine (given the rows' norms): sum w s / norm."""
        if norms is None:
            return -np.expm1(self.part @ self.block)
        return (self.part @ -np.expm1(self.block)) / norms[:, None].astype(np.float32)

    def fingerprints(self, rows: np.ndarray, cols: np.ndarray, spread: np.ndarray) -> np.ndarray:
        """A 64-bit hash per (row of the chunk, paper) pair of the phrases (and weights) of the
        row that the paper has. `spread` holds a random number per phrase; a pair's hash is the
        sum of its hits' (so order does not matter)."""
        pair, slot = _expand(self.part.indptr, rows)
        local = self.part.indices[slot]
        hit = self.block[local, cols[pair]] != 0  # log(1 - s) < 0 wherever s > 0
        pair, phrase, weight = pair[hit], self.used[local[hit]], self.weights[slot[hit]]
        sums = np.zeros(len(rows), dtype=np.uint64)
        if len(pair):
            starts = np.flatnonzero(np.r_[True, pair[1:] != pair[:-1]])
            salted = spread[phrase] ^ (weight.view(np.uint64) * _ODD[0])
            sums[pair[starts]] = np.add.reduceat(salted, starts)
        return sums


class _Matches:
    """Match objects for picked (row, paper) pairs, one object per distinct match.

    A match is its paper, its score and the (phrase, weight) pairs that found it (the phrase
    table says the rest: where, via, exact, share). Pairs share a Match when paper, score and
    a 64-bit hash of those pairs agree (see _groups). Pairs of rated rows
    (feedback reasons) are never shared."""

    def __init__(
        self,
        table: PhraseTable,
        pos: sp.csr_matrix,
        cosine: bool,
        labels: Callable[[int, int, int, int], str],
    ) -> None:
        self.table, self.pos, self.cosine = table, pos, cosine
        self.labels = np.array(table.phrases + table.alternatives, dtype=object)
        self.label_of = labels  # (phrase, bits, related, paper) -> a truthful label

    def __call__(
        self,
        rows: np.ndarray,
        cols: np.ndarray,
        values: np.ndarray,
        prints: np.ndarray,
        learned: Mapping[int, np.ndarray],
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per pair, its Match (None for a pair nothing explains, which no positive score is),
        and whether it has one."""
        alone = np.isin(rows, np.fromiter(learned, np.intp, len(learned)))
        group, first = _groups(cols, values, prints, alone)
        explained = self._explain(rows[first], cols[first])
        made: list[Match | None] = []
        heads = (rows[first].tolist(), cols[first].tolist(), values[first].tolist())
        for row, col, value, why in zip(*heads, explained, strict=True):
            shift = learned.get(row)
            if shift is not None and shift[col] > 0:
                why = _with_feedback(why, float(shift[col]))
            made.append(Match(col, value, *why) if why[0] else None)
        shared = np.empty(len(made), dtype=object)
        shared[:] = made
        explained = np.fromiter((m is not None for m in made), bool, len(made))
        return shared[group], explained[group]

    def _explain(self, rows: np.ndarray, cols: np.ndarray) -> list[tuple[tuple, tuple, tuple]]:
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
        paper = cols[pair]
        if len(pair):  # a reason names what moved the paper: not a stray word's crumb of score
            first = np.r_[True, pair[1:] != pair[:-1]]
            top = share[first][np.cumsum(first) - 1]
            keep = share >= MINOR_REASON * top
            pair, phrase, pos, share = pair[keep], phrase[keep], pos[keep], share[keep]
            paper = paper[keep]
        bits, via = t.where[pos], t.via[pos]
        names = self.labels[phrase]
        vias = np.full(len(pos), "", dtype=object)
        some = np.flatnonzero(via)
        vias[some] = self.labels[len(t.phrases) + via[some] - 1]
        vias[some[vias[some] == names[some]]] = ""
        # Never a phrase the paper does not hold: a partial match names the words it has, and
        # a paper the feedback brought names the top paper it resembles.
        related = t.related[pos]
        partial = ((bits & NEAR_BIT) != 0) & (via == 0)
        told = np.flatnonzero(partial | (related != -1))
        if len(told):  # one label per distinct (phrase, words held, related paper, paper)
            held = np.where(partial[told], t.present[pos[told]], -1)
            target = np.where(related[told] >= 0, paper[told], -1)
            distinct, inverse = _distinct_rows(
                np.stack([phrase[told], held, related[told], target])
            )
            labels = np.array(
                [self.label_of(int(p), int(h), int(r), int(d)) for p, h, r, d in distinct.tolist()],
                dtype=object,
            )
            names[told] = labels[inverse.ravel()]
            moved = told[related[told] != -1]
            vias[moved], bits[moved] = "", NEAR_BIT
        names_t = tuple(names.tolist())
        places = tuple(_PLACES[bits & 3].tolist())
        details = (tuple(vias.tolist()), tuple(((bits & NEAR_BIT) == 0).tolist()), share.tolist())
        bounds = np.searchsorted(pair, np.arange(len(rows) + 1)).tolist()
        return [(names_t[a:b], places[a:b], (*details, a, b)) for a, b in pairwise(bounds)]


def _distinct_rows(columns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """np.unique(columns.T, axis=0, return_inverse=True), by one 1-D unique of the rows' mixed
    -radix numbers when they fit in 63 bits (axis=0 sorts structured rows: ~5x slower)."""
    low = columns.min(axis=1, keepdims=True)
    sizes = (columns.max(axis=1) - low.ravel() + 1).tolist()
    if float(np.prod(sizes, dtype=float)) >= 2.0**63:
        distinct, inverse = np.unique(columns.T, axis=0, return_inverse=True)
        return distinct, inverse.ravel()
    numbers, inverse = np.unique(
        np.ravel_multi_index(tuple(columns - low), sizes), return_inverse=True
    )
    return np.stack(np.unravel_index(numbers, sizes), axis=1) + low.T, inverse.ravel()


def _groups(
    cols: np.ndarray, values: np.ndarray, prints: np.ndarray, alone: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Pairs with the same paper, score and hits: per pair its group, per group its first pair.
    `alone` pairs get a group of their own.

    The hash of the hits, mixed with paper and score, is sorted with the pair's number in
    its low bits (a plain sort is 4x an argsort); the first pair of each key represents it, and
    a pair joins its representative only if paper, score and the whole hash agree. Showing a
    wrong reason would take two different hit sets that give the same paper the same score and
    the same random 64-bit sum (about 2^-64 for such a pair); a key collision alone only costs
    sharing."""
    n = len(cols)
    key = _mix(prints ^ (cols.astype(np.uint64) * _ODD[2]) ^ (values.view(np.uint64) * _ODD[3]))
    low = np.uint64((1 << max(n - 1, 1).bit_length()) - 1)
    packed = np.sort((key & ~low) | np.arange(n, dtype=np.uint64))
    order, high = (packed & low).astype(np.intp), packed & ~low
    new = np.empty(n, dtype=bool)
    new[:1] = True
    np.not_equal(high[1:], high[:-1], out=new[1:])
    rep = np.empty(n, dtype=np.intp)
    rep[order] = order[new][np.cumsum(new) - 1]
    same = (cols == cols[rep]) & (values == values[rep])
    same &= prints == prints[rep]
    same &= ~alone & ~alone[rep]
    own = np.where(same, rep, np.arange(n))
    heads = own == np.arange(n)
    return (np.cumsum(heads) - 1)[own], np.flatnonzero(heads)


_ODD = (  # odd 64-bit constants: each field of a key spread before they are combined
    np.uint64(0x9E3779B97F4A7C15),
    np.uint64(0xC2B2AE3D27D4EB4F),
    np.uint64(0x165667B19E3779F9),
    np.uint64(0xD6E8FEB86659FD93),
)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer, in place (give it a fresh array): spreads every input bit over
    the whole 64-bit hash."""
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return x


def _similarity(vectors: Vectors, n: int) -> np.ndarray:
    x = vectors.tfidf[:n]
    return np.asarray((x @ x.T).toarray(), dtype=np.float32)


def _vectors(
    model: RelevanceModel, papers: Sequence[PaperText], rated: Sequence[PaperText]
) -> Vectors:
    """The papers' vectors, then the rated papers': reused when the caller vectorized the
    papers with this model and there is nothing else to add."""
    if isinstance(papers, VectorizedPapers) and papers.model is model and not rated:
        return papers.vectors
    return model.vectors([*papers, *rated])


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
    meaning: Meaning | None = None,
) -> dict[Hashable, list[Match]]:
    """Every profile's top matches among `papers`, best first (in MMR order when diversity is
    on). If `eligible` has an entry for a profile key, only those paper indexes may be returned
    for it (papers already sent are not). `upvotes` (one per paper) feeds the popularity prior;
    `feedback` (per profile key) the Rocchio shift and the classifier. `papers` may be
    `model.vectorize(papers)`, to rank the same papers again without vectorizing them again.
    Each profile gets its own list; equal matches are one (frozen) Match object. `meaning`
    (the papers' sentence embeddings and a phrase encoder) fuses a dense semantic score into
    every phrase's, with weight `options.dense`."""
    options = options or RankOptions()
    if not papers or not profiles:
        return {profile.key: [] for profile in profiles}
    with _gc_paused():
        return _rank(
            model,
            papers,
            profiles,
            min_score,
            eligible,
            chunk_size,
            options,
            upvotes,
            feedback,
            meaning if options.dense > 0 else None,
        )


@contextmanager
def _gc_paused() -> Iterator[None]:
    """A batch creates a hundred thousand lists at once; the cyclic garbage collector would
    rescan every object of the process again and again while it does."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class _Picker:
    """Scores chunks of rows and picks each row's papers; keeps the feedback shifts it used."""

    def __init__(
        self,
        rows: _Rows,
        table: PhraseTable,
        vectors: Vectors,
        n: int,
        min_score: float,
        options: RankOptions,
        upvotes: Sequence[int | None] | None,
        similarity: np.ndarray | None,
    ) -> None:
        self.rows, self.table, self.vectors, self.n = rows, table, vectors, n
        self.min_score, self.options = min_score, options
        self.norms = _norms(rows.pos, table) if options.combine == "cosine" else None
        self.popularity = _popularity(upvotes, n, options.prior)
        self.similarity = similarity if options.diversity < 1 else None
        self.learned: dict[int, np.ndarray] = {}  # rated row -> its feedback part per paper
        # a random number per phrase: the hash of a pick's hits (_Chunk.fingerprints)
        seeds = np.random.default_rng(0).integers(0, 2**63, len(rows.phrases), np.int64)
        self.spread = seeds.view(np.uint64)

    def __call__(self, start: int, stop: int) -> tuple[np.ndarray, ...]:
        """(row, paper, score) of the picks of rows start..stop, by row then pick order, and the
        hash of the phrases each picked paper has."""
        rows, options, n = self.rows, self.options, self.n
        chunk = _Chunk.of(rows.pos, self.table.log_miss, start, stop)
        scores = chunk.scores(None if self.norms is None else self.norms[start:stop])
        if options.context > 0:
            scores = prf.in_context(chunk.part, chunk.block, scores, options.context)
        rated = [row for row in range(start, stop) if row in rows.rated] if rows.rated else []
        if rated:
            local = np.array(rated) - start
            blended, shifts = learning.blend(
                scores[local],
                self.vectors.tfidf,
                n,
                [n + rows.rated[row][0] for row in rated],
                [n + rows.rated[row][1] for row in rated],
                options,
            )
            scores[local] = blended
            self.learned.update(zip(rated, shifts, strict=True))
        excluded = (rows.neg[start:stop] @ self.table.contains).tocoo()
        scores[excluded.row, excluded.col] *= options.negative_factor
        masked = np.flatnonzero(rows.mask[start:stop] >= 0)
        if len(masked):
            allowed = rows.masks[rows.mask[start:stop][masked]]
            scores[masked] = np.where(allowed, scores[masked], 0.0)
        floor = self.min_score  # below it, never sent: _top drops those, or zero them first
        if self.popularity is not None:
            scores[scores < floor] = 0.0
            scores *= self.popularity
            floor = 0.0
        limits = rows.limits[start:stop]
        if self.similarity is None and options.aspects <= 0:
            choice, _ = _top(scores, limits, floor)
        else:
            cand, relevance = _top(scores, limits * diversity.POOL, floor)
            aspects = None
            if options.aspects > 0:
                ids, share, keep = diversity.aspect_weights(chunk.part, options.aspects)
                safe = np.where(cand >= 0, cand, 0)
                cover = -np.expm1(chunk.block[ids[:, None, :], safe[:, :, None]])
                aspects, relevance = (cover, share), relevance * keep[:, None]
            choice = diversity.select(
                cand, relevance, limits, self.similarity, options.diversity, aspects
            )
        picked = np.flatnonzero(choice >= 0)
        row, col = picked // choice.shape[1], choice.ravel()[picked]
        best = np.minimum(scores[row, col], 1.0).astype(float)
        return row + start, col, best, chunk.fingerprints(row, col, self.spread)


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
    meaning: Meaning | None,
) -> dict[Hashable, list[Match]]:
    n = len(papers)
    rows = _rows(profiles, n, eligible, feedback)
    vectors = _vectors(model, papers, rows.texts)
    own = Vectors(vectors.columns, vectors.tfidf[:n], vectors.title[:n], vectors.abstract[:n])
    similarity = _similarity(vectors, n) if options.diversity < 1 or options.prf > 0 else None
    semantic = meaning.scores(rows.phrases, n) if meaning is not None else None
    table = build_table(model, own, rows.phrases, options, similarity, semantic)
    pick = _Picker(rows, table, vectors, n, min_score, options, upvotes, similarity)
    total, step = len(rows.limits), max(chunk_size, 1)
    parts = [pick(start, min(start + step, total)) for start in range(0, total, step)]
    pair_rows, cols, values, prints = (
        np.concatenate(column) for column in zip(*parts, strict=True)
    )
    label = _labeller(model, rows.phrases, papers, vectors)
    matches, explained = _Matches(table, rows.pos, options.combine == "cosine", label)(
        pair_rows, cols, values, prints, pick.learned
    )
    matches, pair_rows = matches[explained].tolist(), pair_rows[explained]
    bounds = np.searchsorted(pair_rows, np.arange(total + 1))
    of = np.asarray(rows.of, dtype=np.intp)
    spans = map(slice, bounds[of].tolist(), bounds[of + 1].tolist())
    return dict(zip(rows.keys, map(matches.__getitem__, spans), strict=True))


RELATED_PREFIX = "like “"  # a reason "like “<title>”": the feedback paper a match resembles
MEANING_PREFIX = "close in meaning to “"  # a reason the dense score gave (semantic ranking)
TITLE_CHARS = 60


def _labeller(
    model: RelevanceModel, phrases: Sequence[str], papers: Sequence[PaperText], vectors: Vectors
) -> Callable[[int, int, int, int], str]:
    """(phrase, present-word bits or -1, related paper or -1, the paper) -> the reason's label,
    cached. A paper the feedback brought names the top paper it resembles and the expansion
    terms they share most (their heaviest common TF-IDF terms, spelled as the paper has them)."""

    @lru_cache(maxsize=1)
    def terms() -> np.ndarray:  # only when some paper came by feedback
        return np.array(list(vectors.columns), dtype=object)

    @lru_cache(maxsize=4096)
    def spelled(paper: int) -> dict[str, str]:  # a paper's stems -> its words, once per paper
        text = papers[paper]
        return model.analyzer.surface(f"{text.title}. {text.abstract}")

    @lru_cache(maxsize=65536)
    def label(phrase: int, bits: int, related: int, paper: int) -> str:
        if related == MEANING:
            return f"{MEANING_PREFIX}{phrases[phrase]}”"
        if related >= 0:
            title = " ".join(papers[related].title.split())
            if len(title) > TITLE_CHARS:
                title = title[: TITLE_CHARS - 1].rsplit(" ", 1)[0] + "…"
            shared = _shared_terms(vectors, terms(), spelled, related, paper)
            return f"{RELATED_PREFIX}{title}”" + (f" ({', '.join(shared)})" if shared else "")
        return partial_label(model, phrases[phrase], bits)

    return label


SHARED_TERMS = 2  # expansion terms named with a paper the feedback brought


def _shared_terms(
    vectors: Vectors,
    terms: np.ndarray,
    spelled: Callable[[int], dict[str, str]],
    source: int,
    paper: int,
) -> list[str]:
    """The heaviest terms two papers share (product of their TF-IDF weights), as `paper` writes
    them; a bigram's words are not named again on their own."""
    if paper < 0:
        return []
    x = vectors.tfidf  # CSR: two rows read off indptr, no sparse slicing per label
    a, b = slice(*x.indptr[source : source + 2]), slice(*x.indptr[paper : paper + 2])
    common, left, right = np.intersect1d(
        x.indices[a], x.indices[b], assume_unique=True, return_indices=True
    )
    if not len(common):
        return []
    weight = x.data[a][left] * x.data[b][right]
    words_of = spelled(paper)
    chosen: list[str] = []
    taken: set[str] = set()
    for column in common[np.lexsort((common, -weight))]:  # heaviest first, then by column
        words = str(terms[column]).rstrip("~").split(" ")
        if taken & set(words) or any(w.endswith("~") for w in words):
            continue
        chosen.append(" ".join(words_of.get(w, w) for w in words))
        taken.update(words)
        if len(chosen) == SHARED_TERMS:
            break
    return chosen


def _with_feedback(why: tuple[tuple, tuple, tuple], share: float) -> tuple[tuple, tuple, tuple]:
    """Adds "similar to papers you liked" to a match's reasons, in order of share."""
    names, places, (vias, exact, shares, a, b) = why
    entries = [*zip(names, places, vias[a:b], exact[a:b], shares[a:b], strict=True)]
    entries.append((FEEDBACK_LABEL, "", "", True, share))
    entries.sort(key=lambda d: -d[4])
    n, p, v, e, s = (list(c) for c in zip(*entries, strict=True))
    return tuple(n), tuple(p), (v, e, s, 0, len(entries))


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
    """One subscriber's matches (preview page, CLI): the batch path, so results agree with it.
    `papers` may be `model.vectorize(papers)` (the preview ranks the same papers per keystroke)."""
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

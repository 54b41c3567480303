"""Every unique phrase of a batch scored against every paper, once, however many subscribers
share it.

A phrase is scored through its alternatives (itself, then its acronym / long form / synonyms).
An alternative's score is its TF-IDF cosine with the paper (unigrams + bigrams, so word order
counts), gated by how much of it the paper holds (its *coverage*: the idf-weighted share of its
words and bigrams present):

- all of it (every word and bigram, in title or abstract): the full cosine;
- at least `near` of it (say "state space layers" for "state space models"): cosine x coverage²;
- less: nothing. "state" in one sentence and "models" in another is not "state space models",
  and a four-word query sharing one word with a paper does not match it.

A phrase's score is the probabilistic OR of its alternatives' scores, kept as log(1 - s) so that
profiles combine phrases with one sparse product.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import scipy.sparse as sp

from papermail.ranking import prf
from papermail.ranking.base import RankOptions
from papermail.ranking.model import RelevanceModel, Vectors
from papermail.ranking.text import _TOKEN as _WORD
from papermail.ranking.text import phrase_terms

FULL = 1.0 - 1e-9
MAX_WORDS = 20  # words of a phrase tracked for partial-match explanations (2 bits each)
SCORE_FLOOR = 0.01  # phrase scores below this are dropped (keeps the table sparse)
KEPT_FLOOR = 0.02  # ... and, after feedback, phrase scores below this (crumbs: cost, no evidence)
PRF_FLOOR = SCORE_FLOOR  # feedback alone adds no entry below this
MEANING = -2  # `related` of an entry the dense score explains
MAX_SCORE = 0.999  # keeps log(1 - s) finite
WHERE = {1: "title", 2: "abstract", 3: "title+abstract"}
NEAR_BIT = 4


@dataclass(frozen=True, slots=True)
class PhraseTable:
    phrases: list[str]  # unique stripped phrases, sorted
    log_miss: sp.csr_matrix  # phrases x papers: log(1 - s), s the phrase's score
    contains: sp.csr_matrix  # phrases x papers: 1 where the paper has it (or an alternative) fully
    # Aligned with log_miss's stored entries (sorted by phrase, then paper), for lookups by key:
    keys: np.ndarray  # phrase * n_papers + paper
    where: np.ndarray  # bits 1 title, 2 abstract, 4 near (not exact)
    via: np.ndarray  # 1 + index into `alternatives` of the form that matched, 0: itself
    alternatives: list[str]  # how each alternative is spelled ("mixture-of-experts")
    own: sp.csr_matrix  # phrases x terms: each phrase's own normalized query vector
    present: np.ndarray  # per entry: bit i set where the paper has the phrase's i-th word
    related: np.ndarray  # per entry: the feedback paper that explains it (prf.py), or -1

    def lookup(self, phrase: np.ndarray, paper: np.ndarray) -> np.ndarray:
        """Positions of (phrase, paper) entries in the aligned arrays, -1 where none."""
        query = phrase.astype(np.int64) * self.log_miss.shape[1] + paper
        pos = np.searchsorted(self.keys, query)
        pos[pos >= len(self.keys)] = 0
        return np.where(len(self.keys) and self.keys[pos] == query, pos, -1)


def _empty(phrases: Sequence[str], n_papers: int) -> PhraseTable:
    def nothing() -> sp.csr_matrix:
        return sp.csr_matrix((len(phrases), n_papers))

    own = sp.csr_matrix((len(phrases), 0))
    none = np.zeros(0, dtype=np.int64)
    return PhraseTable(list(phrases), nothing(), nothing(), none, none, none, [], own, none, none)


def _rows_cols(matrix: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    return np.repeat(np.arange(matrix.shape[0]), np.diff(matrix.indptr)), matrix.indices


def _at(matrix: sp.csr_matrix, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Elementwise lookup of sparse entries (scipy gives a 1 x n matrix, and fails when empty)."""
    return np.asarray(matrix[rows, cols]).ravel() if rows.size else np.zeros(0)


def _with_data(pattern: sp.csr_matrix, data: np.ndarray) -> sp.csr_matrix:
    out = sp.csr_matrix((data, pattern.indices.copy(), pattern.indptr.copy()), pattern.shape)
    out.eliminate_zeros()
    return out


def _forms(
    model: RelevanceModel, phrase: str, options: RankOptions
) -> list[tuple[tuple[str, ...], float, str]]:
    """(words, weight, spelling) of each way a paper may say `phrase`: itself; with its head
    word first, as English does in "distilling knowledge" or "segmentation of medical images"
    (weight `reorder`); its acronyms, long forms and synonyms."""
    tokens = model.tokens(phrase)
    if not tokens:
        return []
    forms = [(tokens, 1.0, phrase)]
    if options.phrases and options.reorder and len(tokens) > 1:
        forms.append(((tokens[-1], *tokens[:-1]), options.reorder, phrase))
    if options.expand:
        forms += [(words, 1.0, spelled) for words, spelled in model.expander.alternatives(tokens)]
    return forms


def build_table(
    model: RelevanceModel,
    vectors: Vectors,
    phrases: Sequence[str],
    options: RankOptions,
    similarity: np.ndarray | None = None,
    meaning: np.ndarray | None = None,
) -> PhraseTable:
    """`similarity` (papers x papers) feeds pseudo-relevance feedback; `meaning` (phrases x
    papers, in [0, 1]) is the dense semantic score fused in with weight `options.dense`."""
    n_papers = vectors.tfidf.shape[0]
    alternatives: dict[tuple[tuple[str, ...], float], int] = {}  # (words, weight) -> index
    shown: list[str] = []  # how each alternative is spelled when it is not the phrase itself
    links: list[tuple[int, int]] = []  # (phrase, alternative), its own alternative first
    for p, phrase in enumerate(phrases):
        for form in _forms(model, phrase, options):
            if form[:2] not in alternatives:
                alternatives[form[:2]] = len(alternatives)
                shown.append(form[2])
            links.append((p, alternatives[form[:2]]))
    if not links:
        return _empty(phrases, n_papers)
    alt_weight = np.array([w for _, w in alternatives])
    alt_terms = [phrase_terms(a) for a, _ in alternatives]
    terms = list(dict.fromkeys(t for ts in alt_terms for t in ts))
    term_id = {t: i for i, t in enumerate(terms)}
    idf = model.idf_of(terms)

    # alternatives x terms: the query vectors, and the coverage weights (rows sum to 1)
    sizes = np.array([len(ts) for ts in alt_terms], dtype=np.intp)
    rows = np.repeat(np.arange(len(alt_terms)), sizes)
    cols = np.fromiter((term_id[t] for ts in alt_terms for t in ts), np.intp, int(sizes.sum()))
    weight = idf[cols]
    shape = (len(alt_terms), len(terms))
    mass = np.bincount(rows, weight, len(alt_terms))
    sq = np.sqrt(np.bincount(rows, weight**2, len(alt_terms)))
    query = sp.csr_matrix((weight / sq[rows], (rows, cols)), shape)
    cover = sp.csr_matrix((weight / mass[rows], (rows, cols)), shape)

    # papers x terms, through a batch-columns x terms selector (terms no paper has stay empty)
    known = [(vectors.columns[t], i) for i, t in enumerate(terms) if t in vectors.columns]
    selector = sp.csr_matrix(
        (np.ones(len(known)), tuple(np.array(known, dtype=np.intp).T.reshape(2, -1))),
        (vectors.tfidf.shape[1], len(terms)),
    )
    x = (vectors.tfidf @ selector).T.tocsr()
    cosine = sp.csr_matrix(query @ x)
    # A phrase is held by one field: "low rank" in the abstract and "rank adapt" in the title do
    # not make "low-rank adaptation".
    fields = tuple(
        sp.csr_matrix(cover @ (f @ selector).T) for f in (vectors.title, vectors.abstract)
    )
    coverage = fields[0].maximum(fields[1]).tocsr()
    if options.phrases:
        c = coverage.data
        if options.gate == "soft":
            gate = _with_data(coverage, np.where(c >= FULL, 1.0, c**options.coverage_power))
        else:
            near = np.where(c >= options.near, c**2, 0)
            gate = _with_data(coverage, np.where(c >= FULL, 1.0, near))
        score = sp.csr_matrix(cosine.multiply(gate))
    else:
        score = cosine
    score = sp.csr_matrix(sp.diags(alt_weight) @ score)
    score.data[score.data < SCORE_FLOOR] = 0.0  # crumbs: a stray shared word, no evidence
    score.eliminate_zeros()
    full = _with_data(coverage, (coverage.data >= FULL).astype(float))

    link = np.array(links, dtype=np.intp).reshape(-1, 2)
    to_alt = sp.csr_matrix(
        (np.ones(len(link)), (link[:, 0], link[:, 1])), (len(phrases), len(alternatives))
    )
    log_alt = _with_data(score, np.log1p(-np.minimum(score.data, MAX_SCORE)))
    log_miss = sp.csr_matrix(to_alt @ log_alt)
    log_miss.sort_indices()
    contains = sp.csr_matrix(to_alt @ full)
    contains.data[:] = 1.0
    where, via = _explanations(link, score, coverage, fields, options.near)
    present = _present(model, phrases, vectors, log_miss)
    related = np.full(len(where), -1, dtype=np.intp)
    if len(phrases) and (meaning is not None or (options.prf > 0 and similarity is not None)):
        log_miss, where, via, present, related = _rescore(
            log_miss, where, via, present, similarity, meaning, options
        )
    keys = _keys(log_miss)
    own_alt = link[np.r_[True, link[1:, 0] != link[:-1, 0]]] if len(link) else link
    own = sp.csr_matrix(
        (np.ones(len(own_alt)), (own_alt[:, 0], own_alt[:, 1])),
        (len(phrases), len(alternatives)),
    )
    return PhraseTable(
        list(phrases),
        log_miss,
        contains,
        keys,
        where,
        via,
        shown,
        sp.csr_matrix(own @ query),
        present,
        related,
    )


def _present(
    model: RelevanceModel, phrases: Sequence[str], vectors: Vectors, log_miss: sp.csr_matrix
) -> np.ndarray:
    """Per (phrase, paper) entry, bits of what the paper holds of the phrase, in its title or
    abstract: bit i for its i-th analyzed word, bit MAX_WORDS + i for the bigram of words i and
    i + 1. A partial match names only what is there, and shows where the words are apart."""
    tokens = [model.tokens(p)[:MAX_WORDS] for p in phrases]
    rows, cols, bits, terms = [], [], [], {}
    for p, ts in enumerate(tokens):
        parts = [(t, i) for i, t in enumerate(ts)]
        parts += [(f"{a} {b}", MAX_WORDS + i) for i, (a, b) in enumerate(pairwise(ts))]
        for term, bit in parts:
            rows.append(p)
            cols.append(terms.setdefault(term, len(terms)))
            bits.append(float(1 << bit))
    known = [(vectors.columns[t], i) for t, i in terms.items() if t in vectors.columns]
    selector = sp.csr_matrix(
        (np.ones(len(known)), tuple(np.array(known, dtype=np.intp).T.reshape(2, -1))),
        (vectors.tfidf.shape[1], len(terms)),
    )
    held = ((vectors.title + vectors.abstract) @ selector > 0).astype(float).T.tocsr()
    weights = sp.csr_matrix((bits, (rows, cols)), (len(phrases), len(terms)))
    weights.sum_duplicates()  # a word twice in a phrase: its two bits (distinct: sum is OR)
    mask = sp.csr_matrix(weights @ held)
    entry_rows = np.repeat(np.arange(len(phrases)), np.diff(log_miss.indptr))
    return _at(mask, entry_rows, log_miss.indices).astype(np.int64)


def _rescore(
    log_miss: sp.csr_matrix,
    where: np.ndarray,
    via: np.ndarray,
    present: np.ndarray,
    similarity: np.ndarray | None,
    meaning: np.ndarray | None,
    options: RankOptions,
) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Phrase scores fused with their dense `meaning` scores (weight `options.dense`), then
    pseudo-relevance feedback per phrase (prf.py): each phrase's scores move toward its top
    papers' centroid. Entries these add (the paper holds none of the phrase's words) are
    explained by the top paper they resemble most (`related`), or by the phrase's meaning
    (MEANING), whichever added more; -1 elsewhere. Scores below KEPT_FLOOR are dropped: crumbs
    of a score carry no evidence, and each one makes a (paper, reasons) pair that digests could
    otherwise share (100,000 subscribers: 43,000 distinct matches instead of 208,000)."""
    words = -np.expm1(log_miss.toarray())
    own = words
    if meaning is not None:
        own = (1.0 - options.dense) * words + options.dense * meaning
    final, added, top, weight = own, np.zeros_like(own), None, None
    if options.prf > 0 and similarity is not None:
        moved, top, weight = prf.shift(own, similarity, options.prf_docs)
        added = options.prf * moved
        # Feedback alone (the paper holds none of the phrase) must be worth a reason of its own;
        # on a paper that holds it, any amount only reorders.
        added[(added < PRF_FLOOR) & (own <= 0)] = 0.0
        final = (1.0 - options.prf) * own + added
    final = np.minimum(final, MAX_SCORE)
    final[final < KEPT_FLOOR] = 0.0
    new = sp.csr_matrix(np.log1p(-final))
    new.sort_indices()
    old_keys, keys = _keys(log_miss), _keys(new)
    pos = np.minimum(np.searchsorted(old_keys, keys), max(len(old_keys) - 1, 0))
    had = old_keys[pos] == keys if len(old_keys) else np.zeros(len(keys), bool)

    def carried(values: np.ndarray) -> np.ndarray:
        """An old entry's explanation field for each new entry, 0 for entries feedback added."""
        return np.where(had, values[pos], 0) if len(values) else np.zeros(len(keys), np.int64)

    rows, cols = (keys // own.shape[1]).astype(np.intp), new.indices
    # What moved each entry most: its words, its meaning, or its resemblance to top papers.
    scale = 1.0 - options.prf if top is not None else 1.0
    alpha = options.dense if meaning is not None else 0.0
    by_words = scale * (1.0 - alpha) * words[rows, cols]
    by_meaning = scale * alpha * meaning[rows, cols] if meaning is not None else 0 * by_words
    by_others = added[rows, cols]
    # A paper that holds (some of) the phrase is explained by its words, whatever else added.
    source = np.full(len(keys), -1, dtype=np.intp)
    source[(by_words <= 0) & (by_meaning >= by_others)] = MEANING
    if top is not None and weight is not None and similarity is not None:
        pulled = np.flatnonzero((by_words <= 0) & (by_others > by_meaning))
        r, c = rows[pulled], cols[pulled]
        candidates = np.where(top[r] >= 0, top[r], 0)
        pull = weight[r] * similarity[candidates, c[:, None]]
        pull[candidates == c[:, None]] = -1.0  # a paper is not explained by itself
        source[pulled] = candidates[np.arange(len(r)), np.argmax(pull, axis=1)]
    return new, carried(where), carried(via), carried(present), source


def _keys(matrix: sp.csr_matrix) -> np.ndarray:
    """Each stored entry of a (sorted) CSR matrix as row * columns + column: sorted too."""
    rows = np.repeat(np.arange(matrix.shape[0], dtype=np.int64), np.diff(matrix.indptr))
    return rows * matrix.shape[1] + matrix.indices


def _expand(indptr: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each of `rows` of a CSR matrix, the positions of its stored entries: (owner, slot)."""
    counts = indptr[rows + 1] - indptr[rows]
    owner = np.repeat(np.arange(len(rows)), counts)
    slot = indptr[rows][owner] + np.arange(counts.sum()) - (np.cumsum(counts) - counts)[owner]
    return owner, slot


def _explanations(
    link: np.ndarray,
    score: sp.csr_matrix,
    coverage: sp.csr_matrix,
    field_coverage: tuple[sp.csr_matrix, sp.csr_matrix],
    near: float,
) -> tuple[np.ndarray, np.ndarray]:
    """For each (phrase, paper) with a score, in (phrase, paper) order, its best alternative (the
    phrase itself on ties): where it was found (bits) and which one it was (1 + index, 0 for the
    phrase itself)."""
    owner, slot = _expand(score.indptr, link[:, 1])
    phrase, alt = link[owner, 0], link[owner, 1]
    paper, value = score.indices[slot], score.data[slot]
    order = np.lexsort((owner, -value, paper, phrase))
    phrase, alt, paper, owner = phrase[order], alt[order], paper[order], owner[order]
    first = np.r_[True, (phrase[1:] != phrase[:-1]) | (paper[1:] != paper[:-1])][: len(phrase)]
    phrase, alt, paper, owner = phrase[first], alt[first], paper[first], owner[first]
    full = _at(coverage, alt, paper) >= FULL
    threshold = np.where(full, FULL, near)
    in_title, in_abstract = (_at(c, alt, paper) for c in field_coverage)
    bits = (in_title >= threshold) * 1 + (in_abstract >= threshold) * 2
    split = bits == 0  # found only across both fields together: name the stronger one
    bits[split] = np.where(in_title[split] >= in_abstract[split], 1, 2)
    bits = bits + np.where(full, 0, NEAR_BIT)
    own = np.r_[True, link[1:, 0] != link[:-1, 0]][owner]
    return bits, np.where(own, 0, alt + 1)


def partial_label(model: RelevanceModel, phrase: str, bits: int) -> str:
    """What a paper holds of `phrase` (bits: see _present), as typed: "audio codec" for
    "neural audio codec", and "state … models" where the words stand apart. The phrase itself
    when the paper holds all of it as written, or when nothing is known (-1)."""
    tokens = model.tokens(phrase)[:MAX_WORDS]
    if bits < 0 or not tokens:
        return phrase
    held = [bits >> i & 1 for i in range(len(tokens))]
    joined = [bits >> (MAX_WORDS + i) & 1 for i in range(len(tokens) - 1)]
    if all(held) and all(joined):
        return phrase
    spelled = {}
    for word in _WORD.findall(phrase):
        spelled.setdefault(model.analyzer.normalize(word), word)
    label = ""
    for i, token in enumerate(tokens):
        if not held[i]:
            continue
        if label:
            label += " " if i > 0 and held[i - 1] and joined[i - 1] else " … "
        label += spelled.get(token, token)
    return label or phrase

"""Diversity for a whole chunk of profiles at once: maximal marginal relevance (Carbonell &
Goldstein, 1998), so a digest is not ten near-copies of one paper, and aspect coverage (xQuAD,
Santos et al., 2010), so that each keyword of a profile gets its share.

Each step picks, in every row, the candidate maximizing
    lambda * ((1 - mu) * relevance + mu * sum_a P(a) * s_a(d) * prod_{picked p} (1 - s_a(p)))
    - (1 - lambda) * (its highest similarity to a paper already picked),
with similarity the cosine of the papers' TF-IDF vectors, `a` the profile's keywords (P(a) their
weights' shares, s_a(d) the keyword's score for the paper) and `mu` the aspect weight: a keyword
whose papers are already picked counts less, so "linear attention" is not drowned by "state space
models". The first pick is always the most relevant paper; lambda = 1 and mu = 0 is plain ranking.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

POOL = 3  # candidates per pick: MMR reorders the best limit x POOL papers


def select(
    cand: np.ndarray,
    relevance: np.ndarray,
    limits: np.ndarray,
    similarity: np.ndarray | None,
    lam: float,
    aspects: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Each row's picks in order: a rows x steps matrix of columns, -1 once a row is done.
    `cand` holds each row's candidates best first (-1 past its end), `relevance` their scores
    (-inf there); `similarity` is papers x papers (None: no redundancy term); `aspects` is
    (s_a of each candidate: rows x candidates x aspects, mu x P(a): rows x aspects), with
    `relevance` already scaled by 1 - mu (see aspect_weights).

    Rows are sorted by how many picks they make, so the rows still picking at any step are a
    prefix: every step works on views, never on rows that are done."""
    n_rows = len(cand)
    steps = np.minimum(limits, (cand >= 0).sum(axis=1))
    order = np.argsort(-steps, kind="stable")
    steps = steps[order]
    cand, gain = cand[order], lam * relevance[order]
    cover = share = novelty = None
    if aspects is not None:
        cover, share = aspects[0][order], aspects[1][order]
        novelty = np.ones(share.shape)
    picks = np.full((n_rows, int(steps.max(initial=0))), -1, dtype=np.intp)
    taken = cand < 0
    safe = np.where(taken, 0, cand)
    flat = similarity.ravel() if similarity is not None else None
    width = similarity.shape[1] if similarity is not None else 0
    if cover is None:
        _redundancy_only(picks, cand, gain, steps, order, safe, flat, width, 1 - lam)
        return picks
    closest = np.zeros(cand.shape)
    for step in range(picks.shape[1]):
        live = int(np.count_nonzero(steps > step))
        at = np.arange(live)
        value = gain[:live] - (1 - lam) * closest[:live]
        fresh = (share[:live] * novelty[:live])[:, None, :]
        value = value + lam * (cover[:live] * fresh).sum(axis=2)
        value[taken[:live]] = -np.inf
        best = np.argmax(value, axis=1)
        choice = cand[at, best]
        picks[order[:live], step] = choice
        taken[at, best] = True
        if step + 1 < picks.shape[1]:
            novelty[:live] *= 1 - cover[at, best]
            if flat is not None:
                sims = flat.take(choice[:, None] * width + safe[:live])  # = sim[choice, safe]
                np.maximum(closest[:live], sims, out=closest[:live])
    return picks


def _redundancy_only(
    picks: np.ndarray,
    cand: np.ndarray,
    gain: np.ndarray,
    steps: np.ndarray,
    order: np.ndarray,
    safe: np.ndarray,
    flat: np.ndarray | None,
    width: int,
    weight: float,
) -> None:
    """MMR without aspects, kept as one running value per candidate: gain - weight x the
    highest similarity so far only ever falls, so each step is a minimum with the new pick's
    penalty (the same floats as recomputing it), and a picked candidate is -inf for good.
    float32, like the scores and similarities it starts from (the 300k-profile bench: the
    same picks in the same order as float64)."""
    gain = gain.astype(np.float32)
    value = gain.copy()  # -inf past each row's candidates
    weight = np.float32(weight)
    for step in range(picks.shape[1]):
        live = int(np.count_nonzero(steps > step))
        at = np.arange(live)
        best = np.argmax(value[:live], axis=1)
        choice = cand[at, best]
        picks[order[:live], step] = choice
        value[at, best] = -np.inf
        if flat is not None and step + 1 < picks.shape[1]:
            sims = flat.take(choice[:, None] * width + safe[:live])  # = sim[choice, safe]
            penalty = gain[:live] - weight * sims
            np.minimum(value[:live], penalty, out=value[:live])


def aspect_weights(part: sp.csr_matrix, mu: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """From rows x phrases keyword weights: each row's phrases (rows x aspects, padded with 0),
    mu x their shares P(a) (0 in the padding), and each row's relevance factor 1 - mu. Rows with
    one keyword have no aspects to balance: mu is 0 for them."""
    counts = np.diff(part.indptr)
    width = int(counts.max(initial=0))
    ids = np.zeros((part.shape[0], width), dtype=np.intp)
    share = np.zeros((part.shape[0], width))
    rows = np.repeat(np.arange(part.shape[0]), counts)
    place = np.arange(len(rows)) - np.repeat(part.indptr[:-1], counts)
    ids[rows, place] = part.indices
    share[rows, place] = part.data
    total = share.sum(axis=1, keepdims=True)
    share = np.divide(share, total, out=np.zeros_like(share), where=total > 0)
    row_mu = np.where(counts > 1, mu, 0.0)
    return ids, share * row_mu[:, None], 1.0 - row_mu

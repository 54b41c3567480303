"""Maximal marginal relevance (Carbonell & Goldstein, 1998), for a whole chunk of profiles at
once, so a digest is not ten near-copies of one paper.

Each step picks, in every row, the candidate maximizing
    lambda * relevance - (1 - lambda) * (its highest similarity to a paper already picked),
with similarity the cosine of the papers' TF-IDF vectors. The first pick is always the most
relevant paper; lambda = 1 is plain ranking.
"""

from __future__ import annotations

import numpy as np

POOL = 3  # candidates per pick: MMR reorders the best limit x POOL papers


def select(
    cand: np.ndarray,
    relevance: np.ndarray,
    limits: np.ndarray,
    similarity: np.ndarray,
    lam: float,
) -> np.ndarray:
    """Each row's picks in MMR order: a rows x steps matrix of columns, -1 once a row is done.
    `cand` holds each row's candidates best first (-1 past its end), `relevance` their scores
    (-inf there); `similarity` is papers x papers.

    Rows are sorted by how many picks they make, so the rows still picking at any step are a
    prefix: every step works on views, never on rows that are done."""
    n_rows = len(cand)
    steps = np.minimum(limits, (cand >= 0).sum(axis=1))
    order = np.argsort(-steps, kind="stable")
    steps = steps[order]
    cand, gain = cand[order], lam * relevance[order]
    picks = np.full((n_rows, int(steps.max(initial=0))), -1, dtype=np.intp)
    closest = np.zeros(cand.shape)
    taken = cand < 0
    safe = np.where(taken, 0, cand)
    for step in range(picks.shape[1]):
        live = int(np.count_nonzero(steps > step))
        at = np.arange(live)
        value = gain[:live] - (1 - lam) * closest[:live]
        value[taken[:live]] = -np.inf
        best = np.argmax(value, axis=1)
        choice = cand[at, best]
        picks[order[:live], step] = choice
        taken[at, best] = True
        if step + 1 < picks.shape[1]:
            sims = similarity[choice[:, None], safe[:live]]
            np.maximum(closest[:live], sims, out=closest[:live])
    return picks

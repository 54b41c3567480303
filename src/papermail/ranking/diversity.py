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
    scores: np.ndarray,
    limits: np.ndarray,
    similarity: np.ndarray,
    lam: float,
    top: object,
) -> tuple[np.ndarray, np.ndarray]:
    """(row, column) picks in MMR order. `top(scores, k)` gives each row's best k, best first;
    `similarity` is papers x papers."""
    rows, cols = top(scores, limits * POOL)  # type: ignore[operator]
    if not len(rows):
        return rows, cols
    n_rows = len(scores)
    counts = np.bincount(rows, minlength=n_rows)
    width = int(counts.max())
    start = np.cumsum(counts) - counts
    place = np.arange(len(rows)) - start[rows]
    cand = np.full((n_rows, width), -1, dtype=np.intp)
    cand[rows, place] = cols
    relevance = np.full((n_rows, width), -np.inf)
    relevance[rows, place] = scores[rows, cols]
    closest = np.zeros((n_rows, width))
    taken = cand < 0
    picked_rows, picked_cols = [], []
    safe = np.where(cand < 0, 0, cand)
    for step in range(int(min(limits.max(), width))):
        active = (step < limits) & ~taken.all(axis=1)
        if not active.any():
            break
        value = lam * relevance - (1 - lam) * closest
        value[taken] = -np.inf
        best = np.argmax(value, axis=1)
        live = np.flatnonzero(active)
        choice = best[live]
        picked_rows.append(live)
        picked_cols.append(cand[live, choice])
        taken[live, choice] = True
        sims = similarity[cand[live, choice][:, None], safe[live]]
        closest[live] = np.maximum(closest[live], sims)
    if not picked_rows:
        return rows[:0], cols[:0]
    out_rows = np.concatenate(picked_rows)
    out_cols = np.concatenate(picked_cols)
    order = np.argsort(out_rows, kind="stable")  # steps are in order within each row
    return out_rows[order], out_cols[order]

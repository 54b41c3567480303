"""Pseudo-relevance feedback and keyword context: what a profile's keywords find best says
what else the profile is about.

Feedback (Rocchio 1971 on the first pass; Lavrenko and Croft's relevance models make the same
move) works per phrase, in the phrase table (phrases.py): a phrase's top `docs` papers, weighted
by their scores, form a centroid, and every paper's score for the phrase moves toward its
similarity to that centroid:
    final(d) = (1 - weight) * first(d) + weight * sum_j w_j cos(d_j, d),  w_j = first(d_j) / sum,
so a paper that says "kernelized attention" without "linear attention" rises next to the papers
that say both. Per phrase, not per profile, so one keyword's papers never pull another keyword's
away (each aspect of a profile keeps its own), and a phrase shared by many subscribers is fed
back once. With paper-paper similarities computed once per batch it costs one small product.

Context works per profile (in_context): a paper matching several of a profile's keywords beats
one matching a single keyword in another sense.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

CONTEXT_HIT = 0.05  # a keyword scoring this much for a paper counts as matched (in_context)


def shift(scores: np.ndarray, similarity: np.ndarray, docs: int) -> tuple[np.ndarray, ...]:
    """rows x papers: each row's score-weighted mean similarity to its top `docs` papers, and
    those papers (rows x docs, -1 where a row has fewer positive scores) with their weights."""
    n_rows, n = scores.shape
    k = min(docs, n)
    if k <= 0 or n_rows == 0:
        return np.zeros_like(scores), np.zeros((n_rows, 0), np.intp), np.zeros((n_rows, 0))
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    weight = np.take_along_axis(scores, top, axis=1)
    weight = np.where(weight > 0, weight, 0.0)
    total = weight.sum(axis=1, keepdims=True)
    weight = np.divide(weight, total, out=np.zeros_like(weight), where=total > 0)
    moved = np.zeros_like(scores)
    for j in range(k):
        moved += weight[:, j, None] * similarity[top[:, j]]
    return moved, np.where(weight > 0, top, -1), weight


def in_context(
    part: sp.csr_matrix, block: np.ndarray, scores: np.ndarray, context: float
) -> np.ndarray:
    """Scores of rows with several keywords, times 1 - context + context x the share of the
    row's keyword weight that the paper matches (score >= CONTEXT_HIT): the other keywords are
    the context that tells a word's senses apart, so "circuits" with "mechanistic
    interpretability" beats "circuits" alone (probabilistic circuits), and "segmentation" with
    "medical imaging" beats Vietnamese word segmentation. Papers of a profile's separate aspects
    ("linear attention" beside "state space models") each match one keyword, so their order
    among themselves does not change. `block` holds the phrases' log(1 - s)."""
    several = np.diff(part.indptr) > 1
    if not several.any():
        return scores
    totals = np.asarray(part.sum(axis=1)).ravel()
    hits = (block <= np.log1p(-CONTEXT_HIT)).astype(scores.dtype)
    share = part @ hits  # keyword weight each paper matches, per row
    share /= np.where(totals > 0, totals, 1.0)[:, None]
    factor = 1.0 - context + context * share
    factor[~several] = 1.0  # one keyword: nothing to tell its senses apart with
    return scores * factor

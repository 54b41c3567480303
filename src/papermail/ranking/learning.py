"""Learning from a subscriber's ratings: Rocchio from the first rating, and once there are
enough, a linear classifier on TF-IDF features (a linear SVM, as arxiv-sanity uses).

Rocchio (1971) moves the query toward the centroid of liked papers and away from disliked ones:
    feedback(d) = beta * (cos(liked centroid, d) - cos(disliked centroid, d) / 2),
computed for every rated profile of a chunk with two sparse products. The classifier sees liked
papers as positives, disliked ones as negatives, and a sample of the day's papers as weak
negatives (weight 0.1), so that likes alone are enough to train it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

from papermail.ranking.base import RankOptions

BACKGROUND = 200  # papers of the day used as weak negatives
BACKGROUND_WEIGHT = 0.1


def _centroids(x: sp.csr_matrix, groups: Sequence[np.ndarray]) -> sp.csr_matrix:
    """One L2-normalized mean row of `x` per group of row indexes (empty group: zero row)."""
    sizes = np.array([len(g) for g in groups], dtype=float)
    rows = np.repeat(np.arange(len(groups)), sizes.astype(np.intp))
    cols = np.concatenate([*groups, np.zeros(0, np.intp)]).astype(np.intp)
    mean = sp.csr_matrix((1.0 / sizes[rows], (rows, cols)), shape=(len(groups), x.shape[0])) @ x
    norms = np.sqrt(np.asarray(mean.multiply(mean).sum(axis=1)).ravel())
    return sp.csr_matrix(sp.diags(1.0 / np.where(norms > 0, norms, 1.0)) @ mean)


def rocchio(
    x: sp.csr_matrix,
    n_papers: int,
    liked: Sequence[np.ndarray],
    disliked: Sequence[np.ndarray],
    weight: float,
) -> np.ndarray:
    """profiles x papers: the Rocchio shift of each rated profile. `x` holds the papers' rows,
    then the rated papers' rows, which `liked` / `disliked` index."""
    papers = x[:n_papers].T.tocsc()
    toward = (_centroids(x, liked) @ papers).toarray()
    away = (_centroids(x, disliked) @ papers).toarray()
    return weight * (toward - 0.5 * away)


def classifier(
    x: sp.csr_matrix, n_papers: int, liked: np.ndarray, disliked: np.ndarray
) -> np.ndarray:
    """A score in (0, 1) per paper from a linear SVM over the features the rated papers use
    (so that it never depends on which other subscribers share the batch)."""
    from sklearn.svm import LinearSVC  # only subscribers with many ratings need it

    papers = x[:n_papers]
    background = np.linspace(0, n_papers - 1, min(BACKGROUND, n_papers)).astype(np.intp)
    rated = np.r_[liked, disliked].astype(np.intp)
    used = np.unique(x[rated].indices)
    if not len(used) or not len(liked):
        return np.zeros(n_papers)
    train = sp.vstack([x[rated], papers[background]]).tocsr()[:, used]
    labels = np.r_[np.ones(len(liked)), np.zeros(len(disliked) + len(background))]
    weights = np.r_[np.ones(len(rated)), np.full(len(background), BACKGROUND_WEIGHT)]
    svm = LinearSVC(C=1.0, class_weight="balanced", max_iter=2000)
    svm.fit(train, labels, sample_weight=weights)
    return 1.0 / (1.0 + np.exp(-2.0 * svm.decision_function(papers[:, used])))


def blend(
    keyword: np.ndarray,
    x: sp.csr_matrix,
    n_papers: int,
    liked: Sequence[np.ndarray],
    disliked: Sequence[np.ndarray],
    options: RankOptions,
) -> tuple[np.ndarray, np.ndarray]:
    """(final scores, the feedback part), profiles x papers, for rated profiles whose keyword
    scores are `keyword`: keyword + Rocchio shift, then with enough ratings
    (1 - w) * that + w * classifier."""
    final = keyword + rocchio(x, n_papers, liked, disliked, options.feedback_weight)
    for row, (good, bad) in enumerate(zip(liked, disliked, strict=True)):
        if len(good) + len(bad) >= options.classifier_min_ratings and len(good):
            w = options.classifier_weight
            final[row] = (1 - w) * final[row] + w * classifier(x, n_papers, good, bad)
    final = np.clip(final, 0.0, 1.0)
    return final, final - keyword

"""Okapi BM25 (k1 = 1.2, b = 0.75) over papermail's tokenizer: the classic baseline the
evaluation compares against. Queries are bags of words: a profile's phrases, words pooled."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

from papermail.ranking.base import PaperText
from papermail.ranking.text import Analyzer


class BM25:
    def __init__(
        self,
        papers: Sequence[PaperText],
        *,
        k1: float = 1.2,
        b: float = 0.75,
        stemming: bool = False,
    ) -> None:
        self.analyzer = Analyzer(stemming=stemming, bigrams=False)
        self.columns: dict[str, int] = {}
        rows: list[int] = []
        cols: list[int] = []
        for i, paper in enumerate(papers):
            ids = [
                self.columns.setdefault(t, len(self.columns))
                for t in self.analyzer(f"{paper.title}. {paper.abstract}")
            ]
            cols.extend(ids)
            rows.extend([i] * len(ids))
        counts = sp.csr_matrix(
            (np.ones(len(rows)), (rows, cols)), shape=(len(papers), len(self.columns))
        )
        length = np.asarray(counts.sum(axis=1)).ravel()
        df = np.bincount(counts.indices, minlength=len(self.columns))
        n = len(papers)
        self.idf = np.log(1 + (n - df + 0.5) / (df + 0.5))
        norm = k1 * (1 - b + b * length / max(length.mean(), 1e-9))
        tf = counts.copy()
        row_of = np.repeat(np.arange(n), np.diff(tf.indptr))
        tf.data = tf.data * (k1 + 1) / (tf.data + norm[row_of]) * self.idf[tf.indices]
        self.weights = tf.tocsc()

    def scores(self, phrases: Sequence[str]) -> np.ndarray:
        """Each paper's BM25 score for the words of `phrases` (each word once)."""
        words = {t for p in phrases for t in self.analyzer(p)}
        cols = [self.columns[w] for w in sorted(words) if w in self.columns]
        if not cols:
            return np.zeros(self.weights.shape[0])
        return np.asarray(self.weights[:, cols].sum(axis=1)).ravel()

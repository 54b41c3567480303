"""Relevance ranking: subscribers' keyword profiles against the day's papers, in one batch.

Pure on purpose (no database, Celery or web): it takes data and returns data, so it can be tested
and timed alone. The pipeline, one module per step:

- ``text``: ML-aware tokens (acronyms, "1.58-bit"), a light stemmer, unigrams + bigrams;
- ``expansion``: acronyms the corpus defines ("Mixture-of-Experts (MoE)") and a synonyms file;
- ``model``: the fitted document frequencies (``fit_cached``: once per corpus and process);
  title-weighted, sublinear TF-IDF vectors (``model.vectorize``: once for papers ranked often);
- ``phrases``: each unique phrase against each paper: its TF-IDF cosine times how much of it the
  paper holds (a soft coverage, no cliff), fused with a dense semantic score (optional), then
  moved toward its best papers (``prf``: pseudo-relevance feedback);
- ``batch``: ``rank`` / ``rank_one``: profiles combined, feedback, exclusions, prior, top-N or MMR;
- ``learning``: Rocchio and a per-subscriber classifier from ratings; ``diversity``: MMR and
  xQuAD; ``prf``: pseudo-relevance feedback and keyword context; ``dense``: sentence embeddings
  (``papermail[semantic]``, lazy: importing ranking never imports torch);
- ``corpus``: papers from files (``papermail rank``); ``bm25``: the baseline;
- ``evaluation`` and ``report``: the labelled-set harness behind ``papermail eval``.
"""

from papermail.ranking.base import (
    FEEDBACK_LABEL,
    Feedback,
    Keyword,
    Match,
    Meaning,
    ModelConfig,
    PaperText,
    Profile,
    RankOptions,
    Reason,
    model_config,
)
from papermail.ranking.batch import rank, rank_one
from papermail.ranking.model import RelevanceModel, VectorizedPapers, fit_cached

__all__ = [
    "FEEDBACK_LABEL",
    "Feedback",
    "Keyword",
    "Match",
    "Meaning",
    "ModelConfig",
    "PaperText",
    "Profile",
    "RankOptions",
    "Reason",
    "RelevanceModel",
    "VectorizedPapers",
    "fit_cached",
    "model_config",
    "rank",
    "rank_one",
]

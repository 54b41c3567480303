"""The values ranking takes and gives: plain frozen dataclasses (and one NamedTuple), no
behaviour."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, NamedTuple

import numpy as np

if TYPE_CHECKING:
    from papermail.settings import Settings

FEEDBACK_LABEL = "similar to papers you liked"


@dataclass(frozen=True, slots=True)
class PaperText:
    title: str
    abstract: str


class Keyword(NamedTuple):
    """A NamedTuple, not a dataclass: a batch keys its rows on profiles' keyword tuples, and a
    tuple of tuples hashes in C (300,000 profiles: 60 ms less than reading each field)."""

    phrase: str
    weight: float = 1.0
    negative: bool = False


@dataclass(frozen=True, slots=True)
class Profile:
    key: Hashable  # the subscriber id
    keywords: tuple[Keyword, ...]
    limit: int = 10  # top-N


@dataclass(frozen=True, slots=True)
class Feedback:
    """A subscriber's rated papers, as text: ranking needs no database to learn from them."""

    liked: tuple[PaperText, ...] = ()
    disliked: tuple[PaperText, ...] = ()

    def __len__(self) -> int:
        return len(self.liked) + len(self.disliked)


@dataclass(frozen=True, slots=True)
class Reason:
    """One part of why a paper was picked."""

    term: str  # the phrase as the subscriber typed it, or FEEDBACK_LABEL
    where: tuple[str, ...] = ()  # "title", "abstract": where the phrase was found
    via: str = ""  # the acronym or synonym that matched instead, e.g. "mixture expert" for "MoE"
    exact: bool = True  # False: the paper has most, not all, of the phrase's words
    share: float = 0.0  # its part of the score


@dataclass(frozen=True, slots=True)
class Match:
    index: int  # position of the paper in the `papers` passed to rank()
    score: float  # relevance in [0, 1]
    matched: tuple[str, ...]  # the phrases found in the paper, strongest first
    where: tuple[str, ...] = ()  # per matched phrase: "title", "abstract" or "title+abstract"
    # (vias, exact flags, shares, start, stop): a slice of lists shared by the whole batch,
    # because building Reason objects for a million matches costs seconds and only previews and
    # the CLI read them.
    details: tuple = field(default=(), compare=False, repr=False)

    @property
    def reasons(self) -> tuple[Reason, ...]:
        """Why the paper was picked, one Reason per matched phrase, strongest first."""
        if not self.details:
            return tuple(
                Reason(t, tuple(w.split("+")) if w else ())
                for t, w in zip(self.matched, self.where, strict=False)
            )
        vias, exact, shares, a, b = self.details
        return tuple(
            Reason(term, tuple(w.split("+")) if w else (), v, e, s)
            for term, w, v, e, s in zip(
                self.matched, self.where, vias[a:b], exact[a:b], shares[a:b], strict=True
            )
        )


@dataclass(frozen=True, eq=False)
class Meaning:
    """Dense sentence embeddings for ranking (papermail[semantic]): one L2-normalized row per
    paper passed to rank(), and the function that embeds phrases the same way. A phrase's
    semantic score for a paper is its cosine rescaled from [floor, 1] to [0, 1]: below `floor`
    (unrelated texts still share some direction) it is 0."""

    papers: np.ndarray  # papers x dimensions
    encode: Callable[[Sequence[str]], np.ndarray]
    floor: float = 0.2

    def scores(self, phrases: Sequence[str], n: int) -> np.ndarray:
        if not phrases:
            return np.zeros((0, n))
        cosine = self.encode(list(phrases)) @ self.papers[:n].T
        return np.clip((cosine - self.floor) / (1.0 - self.floor), 0.0, 1.0)


@dataclass(frozen=True, slots=True)
class ModelConfig:
    """What is fixed when the model is fitted (the eval harness switches these one by one)."""

    stemming: bool = True
    title_weight: float = 3.0  # a title occurrence counts as this many abstract occurrences
    learn_acronyms: bool = True  # "Mixture-of-Experts (MoE)" in the corpus teaches MoE
    synonyms: bool = True  # the packaged synonyms file
    synonyms_file: str = ""  # the operator's extra synonyms file


@dataclass(frozen=True, slots=True)
class RankOptions:
    """How scores are computed and picked. Defaults were chosen on the dev split of the
    labelled set only (bench/data/README.md); the test split reports them."""

    phrases: bool = True  # a phrase scores by how much of it the paper holds (its coverage)
    gate: Literal["soft", "hard"] = "soft"  # soft: cosine x coverage**coverage_power, no cliff
    coverage_power: float = 1.5  # how steeply a partial phrase loses score (soft gate)
    near: float = 0.7  # share of a phrase's idf mass (words and bigrams) that makes a near match
    reorder: float = 0.8  # weight of the head-first word order ("distilling knowledge"); 0: off
    combine: Literal["or", "cosine"] = "or"  # phrases as independent interests, or one query
    expand: bool = True  # acronyms <-> long forms, synonyms
    prf: float = 0.4  # pseudo-relevance feedback: weight of the top papers' centroid; 0: off
    prf_docs: int = 5  # how many top papers form it
    context: float = 0.0  # share of a score that depends on matching the profile's other keywords
    dense: float = 0.0  # weight of the dense semantic score in each phrase's (needs `meaning`)
    negative_factor: float = 0.0  # score multiplier for a paper with an excluded phrase
    prior: float = 0.05  # popularity: up to +5% for a paper with 100+ upvotes
    diversity: float = 0.9  # MMR lambda: 1 ranks by relevance only
    aspects: float = 0.0  # xQuAD mu: how much a profile's keywords each get their share; 0: off
    feedback_weight: float = 0.5  # Rocchio: how far the profile moves toward liked papers
    classifier_min_ratings: int = 10  # ratings before a per-subscriber classifier joins in
    classifier_weight: float = 0.3  # its share of the final score

    @classmethod
    def from_settings(cls, settings: Settings) -> RankOptions:
        return cls(
            negative_factor=settings.negative_factor,
            prior=settings.popularity_prior,
            diversity=settings.diversity_lambda,
            feedback_weight=settings.feedback_weight,
            classifier_min_ratings=settings.classifier_min_ratings,
            classifier_weight=settings.classifier_weight,
            prf=settings.pseudo_feedback,
            context=settings.keyword_context,
            aspects=settings.aspect_balance,
            dense=settings.semantic_weight if settings.semantic else 0.0,
        )


def model_config(settings: Settings) -> ModelConfig:
    return ModelConfig(title_weight=settings.title_weight, synonyms_file=settings.synonyms_file)

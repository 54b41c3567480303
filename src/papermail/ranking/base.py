"""The values ranking takes and gives: plain frozen dataclasses, no behaviour."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from papermail.settings import Settings

FEEDBACK_LABEL = "similar to papers you liked"


@dataclass(frozen=True, slots=True)
class PaperText:
    title: str
    abstract: str


@dataclass(frozen=True, slots=True)
class Keyword:
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
    """How scores are computed and picked; defaults are the tuned full model (see bench/data)."""

    phrases: bool = True  # a phrase counts only where the paper has it (or most of it)
    near: float = 0.7  # share of a phrase's idf mass (words and bigrams) that makes a near match
    reorder: float = 0.8  # weight of the head-first word order ("distilling knowledge"); 0: off
    combine: Literal["or", "cosine"] = "or"  # phrases as independent interests, or one query
    expand: bool = True  # acronyms <-> long forms, synonyms
    negative_factor: float = 0.0  # score multiplier for a paper with an excluded phrase
    prior: float = 0.05  # popularity: up to +5% for a paper with 100+ upvotes
    diversity: float = 0.9  # MMR lambda: 1 ranks by relevance only
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
        )


def model_config(settings: Settings) -> ModelConfig:
    return ModelConfig(title_weight=settings.title_weight, synonyms_file=settings.synonyms_file)

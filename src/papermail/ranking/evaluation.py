"""The evaluation harness behind ``papermail eval`` and ``python -m bench.ranking``: graded
judgements (bench/data/) -> nDCG@10, precision@5, recall@20 per ranking variant, each feature
switched on in turn, and what the digests sent hold. ``report`` adds cost and feedback and prints.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from papermail.ranking.base import (
    Feedback,
    Keyword,
    Meaning,
    ModelConfig,
    PaperText,
    Profile,
    RankOptions,
)
from papermail.ranking.batch import rank
from papermail.ranking.bm25 import BM25
from papermail.ranking.corpus import load_corpus
from papermail.ranking.model import RelevanceModel
from papermail.ranking.text import Analyzer, phrase_terms

DEPTH = 20  # ranked list length the metrics read
SENT = 10  # papers per digest for the "sent" columns


@dataclass(frozen=True, slots=True)
class EvalProfile:
    name: str
    keywords: tuple[str, ...]
    excluded: tuple[str, ...] = ()
    need: str = ""  # the information need the judgements follow
    split: str = "dev"  # "dev": defaults may be chosen on it; "test": frozen, only reported

    def keyword_list(self) -> tuple[Keyword, ...]:
        return (
            *(Keyword(k) for k in self.keywords),
            *(Keyword(x, negative=True) for x in self.excluded),
        )


@dataclass
class LabelledSet:
    ids: list[str]
    papers: list[PaperText]
    upvotes: list[int | None]
    profiles: list[EvalProfile]
    grades: dict[str, dict[str, int]]  # profile -> paper id -> grade (missing: 0)

    def grade(self, profile: str, index: int) -> int:
        return self.grades.get(profile, {}).get(self.ids[index], 0)

    def split(self, name: str) -> LabelledSet:
        """The profiles of one split ("dev" or "test"), same papers."""
        kept = [p for p in self.profiles if p.split == name]
        grades = {p.name: self.grades.get(p.name, {}) for p in kept}
        return LabelledSet(self.ids, self.papers, self.upvotes, kept, grades)


@dataclass(frozen=True, slots=True)
class Variant:
    name: str
    config: ModelConfig | None = None  # None: BM25
    options: RankOptions = field(default_factory=RankOptions)


def load_labelled(judgements: Path, profiles: Path, corpus: Iterable[Path]) -> LabelledSet:
    """The TSV of judgements (profile, paper_id, grade, title), the profiles JSON and the corpus
    they were made on. A judged id missing from the corpus is an error: the set would lie."""
    ids, papers, upvotes = load_corpus(corpus)
    known = set(ids)
    specs = json.loads(profiles.read_text(encoding="utf-8"))
    wanted = [
        EvalProfile(
            s["name"],
            tuple(s["keywords"]),
            tuple(s.get("excluded", ())),
            s.get("need", ""),
            s.get("split", "dev"),
        )
        for s in specs
    ]
    grades: dict[str, dict[str, int]] = {p.name: {} for p in wanted}
    with judgements.open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            if row["paper_id"] not in known:
                raise ValueError(f"{judgements}: paper {row['paper_id']} is not in the corpus")
            if row["profile"] not in grades:
                raise ValueError(f"{judgements}: unknown profile {row['profile']!r}")
            grades[row["profile"]][row["paper_id"]] = int(row["grade"])
    return LabelledSet(ids, papers, upvotes, wanted, grades)


# --- variants -----------------------------------------------------------------------------

PLAIN_CONFIG = ModelConfig(stemming=False, title_weight=1.0, learn_acronyms=False, synonyms=False)
PLAIN_OPTIONS = RankOptions(
    phrases=False,
    combine="cosine",
    expand=False,
    prior=0.0,
    diversity=1.0,
    negative_factor=0.0,
    prf=0.0,
    context=0.0,
)


def variants(full: RankOptions | None = None, config: ModelConfig | None = None) -> list[Variant]:
    """Plain cosine, BM25, the previous model (hard phrase gate), then each change of the
    current model switched on in turn; the last is the full model as configured."""
    full = full or RankOptions()
    config = config or ModelConfig()
    previous = replace(full, gate="hard", prf=0.0, aspects=0.0, context=0.0, dense=0.0)
    soft = replace(previous, gate="soft", coverage_power=full.coverage_power)
    feedback = replace(soft, prf=full.prf, prf_docs=full.prf_docs)
    steps = [
        Variant("plain TF-IDF cosine", PLAIN_CONFIG, PLAIN_OPTIONS),
        Variant("BM25"),
        Variant("previous model (hard phrase gate)", config, previous),
        Variant(f"+ soft coverage (power {full.coverage_power:g})", config, soft),
        Variant(
            f"+ pseudo-relevance feedback ({full.prf:g}, top {full.prf_docs})", config, feedback
        ),
    ]
    if feedback == full:
        steps[-1] = replace(steps[-1], name=f"{steps[-1].name} = full model")
    else:
        steps.append(Variant("full model (as configured)", config, full))
    return steps


OPTIONS = {  # settings off by default, each measured on top of the full model
    "context": 0.5,  # KEYWORD_CONTEXT
    "aspects": 0.3,  # ASPECT_BALANCE
}


def option_variants(full: Variant) -> list[Variant]:
    """The full model with each option that is off by default switched on, to show what it
    would buy (the README quotes these rows)."""
    return [
        Variant(f"option: {name} {value:g}", full.config, replace(full.options, **{name: value}))
        for name, value in OPTIONS.items()
        if getattr(full.options, name) == 0
    ]


DENSE_CACHE = Path("var") / "cache"
SEMANTIC_WEIGHT = 0.3  # the dense fusion variant's weight (settings.semantic_weight's default)


def dense_variant(full: Variant, weight: float = SEMANTIC_WEIGHT) -> Variant | None:
    """The full model with the sentence-embedding score fused in, when papermail[semantic] is
    installed; None otherwise (the report then says it was not measured)."""
    from papermail.ranking import dense

    if not dense.available():
        return None
    return Variant(
        f"option: dense fusion (MiniLM, weight {weight:g})",
        full.config,
        replace(full.options, dense=weight),
    )


def dense_meaning(data: LabelledSet) -> Meaning:
    from papermail.ranking import dense

    pairs = [(p.title, p.abstract) for p in data.papers]
    return dense.meaning(dense.cached_paper_vectors(pairs, DENSE_CACHE))


# --- running and scoring ------------------------------------------------------------------


def _contains(analyzer: Analyzer, paper: PaperText, phrase: str) -> bool:
    wanted = set(phrase_terms(tuple(t for run in analyzer.words(phrase) for t in run)))
    return any(wanted <= set(analyzer(text)) for text in (paper.title, paper.abstract))


def run_variant(
    variant: Variant, data: LabelledSet, *, min_score: float, limit: int = DEPTH
) -> tuple[dict[str, list[int]], dict[str, list[int]] | None]:
    """Per profile: the ranked paper indexes (no score floor), and the papers a digest would
    send (min_score, SENT papers); BM25 has no score scale, so it sends nothing comparable."""
    if variant.config is None:
        bm25 = BM25(data.papers)
        ranked = {}
        for p in data.profiles:
            scores = bm25.scores(p.keywords)
            for i, paper in enumerate(data.papers):
                if any(_contains(bm25.analyzer, paper, x) for x in p.excluded):
                    scores[i] = 0.0
            order = np.lexsort((np.arange(len(scores)), -scores))
            ranked[p.name] = [int(i) for i in order[:limit] if scores[i] > 0]
        return ranked, None
    model = RelevanceModel.fit(data.papers, variant.config)
    profiles = [Profile(p.name, p.keyword_list(), limit) for p in data.profiles]
    options, votes = variant.options, data.upvotes
    meaning = dense_meaning(data) if options.dense > 0 else None
    deep = rank(
        model,
        data.papers,
        profiles,
        min_score=1e-9,
        options=options,
        upvotes=votes,
        meaning=meaning,
    )
    digest = [replace(p, limit=SENT) for p in profiles]
    sent = rank(
        model,
        data.papers,
        digest,
        min_score=min_score,
        options=options,
        upvotes=votes,
        meaning=meaning,
    )
    return (
        {k: [m.index for m in v] for k, v in deep.items()},  # type: ignore[misc]
        {k: [m.index for m in v] for k, v in sent.items()},  # type: ignore[misc]
    )


def ndcg(grades: Sequence[int], all_grades: Iterable[int], k: int = 10) -> float:
    discount = 1 / np.log2(np.arange(2, k + 2))
    gains = np.array([2**g - 1 for g in grades[:k]], dtype=float)
    ideal = np.sort(np.array([2**g - 1 for g in all_grades], dtype=float))[::-1][:k]
    best = float((ideal * discount[: len(ideal)]).sum())
    return float((gains * discount[: len(gains)]).sum()) / best if best else 0.0


@dataclass
class Row:
    name: str
    ndcg: float
    precision: float
    recall: float
    sent: float | None = None
    junk: float | None = None
    redundancy: float | None = None
    ms_per_1000: float | None = None
    per_profile: dict[str, dict[str, float]] = field(default_factory=dict, repr=False)
    ci: dict[str, tuple[float, float]] = field(default_factory=dict)  # metric -> 95% interval


METRICS = ("ndcg", "precision", "recall")
SPLITS = ("dev", "test")
BOOTSTRAP_ROUNDS = 2000
TIE = 0.01  # per-profile nDCG@10 differences this small count as ties


def per_profile(data: LabelledSet, ranked: dict[str, list[int]]) -> dict[str, dict[str, float]]:
    """Profile -> metric -> value: nDCG@10 where the profile has anything relevant; P@5 (grade
    2 in the top 5) and R@20 (share of its grade-2 papers in the top 20) where it has grade 2."""
    values: dict[str, dict[str, float]] = {}
    for p in data.profiles:
        found = ranked.get(p.name, [])
        grades = [data.grade(p.name, i) for i in found]
        judged = list(data.grades.get(p.name, {}).values())
        on_topic = sum(g == 2 for g in judged)
        mine: dict[str, float] = {}
        if any(judged):
            mine["ndcg"] = ndcg(grades, judged)
        if on_topic:
            mine["precision"] = sum(g == 2 for g in grades[:5]) / 5
            mine["recall"] = sum(g == 2 for g in grades[:DEPTH]) / on_topic
        values[p.name] = mine
    return values


def bootstrap(values: Sequence[float], rounds: int = BOOTSTRAP_ROUNDS) -> tuple[float, float]:
    """95% percentile interval of the mean, profiles resampled with replacement (seeded)."""
    x = np.asarray(values, dtype=float)
    if not len(x):
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(20261202)
    means = x[rng.integers(0, len(x), size=(rounds, len(x)))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


@dataclass(frozen=True, slots=True)
class Comparison:
    """One metric of a variant against a baseline, over the profiles both are scored on."""

    metric: str
    difference: float  # mean of the per-profile differences
    low: float  # 95% bootstrap interval of that mean
    high: float
    wins: int  # profiles where the variant is better by more than TIE
    ties: int
    losses: int


def compare(row: Row, baseline: Row, metric: str) -> Comparison:
    names = [n for n, v in row.per_profile.items() if metric in v]
    diffs = np.array([row.per_profile[n][metric] - baseline.per_profile[n][metric] for n in names])
    low, high = bootstrap(diffs)
    return Comparison(
        metric,
        float(diffs.mean()) if len(diffs) else float("nan"),
        low,
        high,
        int((diffs > TIE).sum()),
        int((np.abs(diffs) <= TIE).sum()),
        int((diffs < -TIE).sum()),
    )


def residual_row(
    name: str,
    model: RelevanceModel,
    data: LabelledSet,
    residual: LabelledSet,
    profiles: Sequence[Profile],
    eligible: dict[str, list[int]],
    options: RankOptions,
    feedback: dict[str, Feedback] | None,
) -> Row:
    """One row of a residual-collection evaluation (feedback and seed rows): rank only the
    `eligible` papers, score on the `residual` judgements."""
    found = rank(
        model,
        data.papers,
        profiles,
        min_score=1e-9,
        eligible=eligible,
        options=options,
        upvotes=data.upvotes,
        feedback=feedback,
    )
    ranked = {k: [m.index for m in v] for k, v in found.items()}  # type: ignore[misc]
    return score_rankings(name, residual, ranked, None)


def score_rankings(
    name: str,
    data: LabelledSet,
    ranked: dict[str, list[int]],
    sent: dict[str, list[int]] | None,
    similarity: np.ndarray | None = None,
) -> Row:
    """Means over profiles that have something to find (nDCG, P@5: grade 2 in the top 5;
    recall of grade-2 papers in the top 20), with 95% bootstrap intervals; `sent` and `junk`
    (grade-0 papers among those sent) over every profile, including those with nothing
    relevant."""
    values = per_profile(data, ranked)
    columns = {m: [v[m] for v in values.values() if m in v] for m in METRICS}
    means = {m: float(np.mean(c)) if c else float("nan") for m, c in columns.items()}
    row = Row(name, means["ndcg"], means["precision"], means["recall"], per_profile=values)
    row.ci = {m: bootstrap(c) for m, c in columns.items()}
    redundancy = []
    for p in data.profiles:
        top = ranked.get(p.name, [])[:10]
        if similarity is not None and len(top) > 1:
            block = similarity[np.ix_(top, top)]
            redundancy.append(float(block[np.triu_indices(len(top), 1)].max()))
    if sent is not None:
        row.sent = float(np.mean([len(sent.get(p.name, [])) for p in data.profiles]))
        row.junk = float(
            np.mean(
                [
                    sum(data.grade(p.name, i) == 0 for i in sent.get(p.name, []))
                    for p in data.profiles
                ]
            )
        )
    if redundancy:
        row.redundancy = float(np.mean(redundancy))
    return row

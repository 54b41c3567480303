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
    Keyword,
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
            s["name"], tuple(s["keywords"]), tuple(s.get("excluded", ())), s.get("need", "")
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
    phrases=False, combine="cosine", expand=False, prior=0.0, diversity=1.0, negative_factor=0.0
)


def variants(full: RankOptions | None = None, config: ModelConfig | None = None) -> list[Variant]:
    """Plain cosine, BM25, then each feature of the full model switched on in turn."""
    full = full or RankOptions()
    config = config or ModelConfig()
    steps = [Variant("plain TF-IDF cosine", PLAIN_CONFIG, PLAIN_OPTIONS), Variant("BM25")]
    options = replace(PLAIN_OPTIONS, phrases=True, combine="or", near=full.near)
    steps.append(Variant("+ phrases (gate, OR of phrases)", PLAIN_CONFIG, options))
    cfg = replace(PLAIN_CONFIG, learn_acronyms=config.learn_acronyms, synonyms=config.synonyms)
    options = replace(options, expand=True)
    steps.append(Variant("+ expansion (acronyms, synonyms)", cfg, options))
    cfg = replace(cfg, stemming=config.stemming)
    steps.append(Variant("+ stemming", cfg, options))
    cfg = replace(cfg, title_weight=config.title_weight)
    steps.append(Variant(f"+ title weight x{config.title_weight:g}", cfg, options))
    options = replace(options, prior=full.prior)
    steps.append(Variant(f"+ popularity prior {full.prior:g}", cfg, options))
    options = replace(options, diversity=full.diversity)
    steps.append(Variant(f"+ MMR lambda {full.diversity:g} (full model)", cfg, options))
    return steps


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
    deep = rank(model, data.papers, profiles, min_score=1e-9, options=options, upvotes=votes)
    digest = [replace(p, limit=SENT) for p in profiles]
    sent = rank(model, data.papers, digest, min_score=min_score, options=options, upvotes=votes)
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


def score_rankings(
    name: str,
    data: LabelledSet,
    ranked: dict[str, list[int]],
    sent: dict[str, list[int]] | None,
    similarity: np.ndarray | None = None,
) -> Row:
    """Means over profiles that have something to find (nDCG, P@5: grade 2 in the top 5;
    recall of grade-2 papers in the top 20); `sent` and `junk` (grade-0 papers among those
    sent) over every profile, including those with nothing relevant."""
    ndcgs, precisions, recalls, redundancy = [], [], [], []
    for p in data.profiles:
        found = ranked.get(p.name, [])
        grades = [data.grade(p.name, i) for i in found]
        judged = list(data.grades.get(p.name, {}).values())
        on_topic = sum(g == 2 for g in judged)
        if any(judged):
            ndcgs.append(ndcg(grades, judged))
        if on_topic:
            precisions.append(sum(g == 2 for g in grades[:5]) / 5)
            recalls.append(sum(g == 2 for g in grades[:DEPTH]) / on_topic)
        top = found[:10]
        if similarity is not None and len(top) > 1:
            block = similarity[np.ix_(top, top)]
            redundancy.append(float(block[np.triu_indices(len(top), 1)].max()))
    row = Row(name, float(np.mean(ndcgs)), float(np.mean(precisions)), float(np.mean(recalls)))
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

"""The evaluation report: every variant's quality and cost, and what ratings add (relevance
feedback on a residual collection), printed as one plain-text table."""

from __future__ import annotations

import random
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from itertools import pairwise

import numpy as np

from papermail.ranking.base import Feedback, Keyword, ModelConfig, PaperText, Profile, RankOptions
from papermail.ranking.batch import rank
from papermail.ranking.bm25 import BM25
from papermail.ranking.evaluation import (
    DEPTH,
    METRICS,
    SENT,
    SPLITS,
    Comparison,
    LabelledSet,
    Row,
    Variant,
    compare,
    dense_variant,
    option_variants,
    residual_row,
    run_variant,
    score_rankings,
    variants,
)
from papermail.ranking.model import RelevanceModel

# --- cost ---------------------------------------------------------------------------------

_TITLE_WORD = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:-[A-Za-z0-9]+)*")


def synthetic_profiles(papers: Sequence[PaperText], n: int, seed: int = 7) -> list[Profile]:
    """Profiles like the ones people type: 1-4 word pairs (or acronyms) seen in at least two
    titles, a few with an excluded phrase; deterministic for a seed."""
    from papermail.ranking.text import STOP_WORDS

    counts: dict[str, int] = {}
    for paper in papers:
        words = _TITLE_WORD.findall(paper.title)
        found = {w for w in words if sum(c.isupper() for c in w) >= 2 and len(w) <= 8}
        low = [w.lower() for w in words]
        found |= {
            f"{a} {b}" for a, b in pairwise(low) if a not in STOP_WORDS and b not in STOP_WORDS
        }
        for phrase in found:
            counts[phrase] = counts.get(phrase, 0) + 1
    vocabulary = sorted(p for p, c in counts.items() if c >= 2) or ["transformer"]
    rng = random.Random(seed)
    profiles = []
    for key in range(n):
        keywords = [
            Keyword(p) for p in rng.sample(vocabulary, min(rng.randint(1, 4), len(vocabulary)))
        ]
        if rng.random() < 0.05:
            keywords.append(Keyword(rng.choice(vocabulary), negative=True))
        profiles.append(Profile(key, tuple(keywords), SENT))
    return profiles


def latency_ms(
    variant: Variant, data: LabelledSet, profiles: Sequence[Profile], *, min_score: float
) -> float:
    """Milliseconds to rank 1,000 subscribers (median of three runs; fitting not included)."""
    if variant.config is None:
        bm25 = BM25(data.papers)
        runs = []
        for _ in range(3):
            start = time.perf_counter()
            for p in profiles:
                scores = bm25.scores([k.phrase for k in p.keywords if not k.negative])
                np.argpartition(-scores, min(SENT, len(scores) - 1))[:SENT]
            runs.append(time.perf_counter() - start)
    else:
        model = RelevanceModel.fit(data.papers, variant.config)
        runs = []
        for _ in range(3):
            start = time.perf_counter()
            rank(
                model,
                data.papers,
                profiles,
                min_score=min_score,
                options=variant.options,
                upvotes=data.upvotes,
            )
            runs.append(time.perf_counter() - start)
    return float(np.median(runs)) * 1000 * 1000 / len(profiles)


# --- relevance feedback -------------------------------------------------------------------


def feedback_rows(data: LabelledSet, variant: Variant, *, rated: int = 2 * SENT) -> list[Row]:
    """Residual-collection evaluation: each profile "rates" its first `rated` papers (grade 2:
    like, grade 0: dislike, 1: no rating); every variant then ranks the other papers only."""
    model = RelevanceModel.fit(data.papers, variant.config)
    profiles = [Profile(p.name, p.keyword_list(), DEPTH) for p in data.profiles]
    first = rank(
        model,
        data.papers,
        [replace(p, limit=rated) for p in profiles],
        min_score=1e-9,
        options=variant.options,
        upvotes=data.upvotes,
    )
    feedback, eligible, residual = {}, {}, {}
    position = {pid: i for i, pid in enumerate(data.ids)}
    for p in data.profiles:
        seen = [m.index for m in first[p.name]]
        rated = set(seen)
        feedback[p.name] = Feedback(
            tuple(data.papers[i] for i in seen if data.grade(p.name, i) == 2),
            tuple(data.papers[i] for i in seen if data.grade(p.name, i) == 0),
        )
        eligible[p.name] = [i for i in range(len(data.papers)) if i not in rated]
        residual[p.name] = {
            pid: g for pid, g in data.grades.get(p.name, {}).items() if position[pid] not in rated
        }
    rest = LabelledSet(data.ids, data.papers, data.upvotes, data.profiles, residual)
    never = replace(variant.options, classifier_min_ratings=10**9)
    rows = []
    for name, options, given in (
        ("no feedback (same papers)", variant.options, None),
        ("+ Rocchio", never, feedback),
        (
            f"+ classifier (>= {variant.options.classifier_min_ratings} ratings)",
            variant.options,
            feedback,
        ),
    ):
        rows.append(residual_row(name, model, data, rest, profiles, eligible, options, given))
    return rows


# --- the whole report ---------------------------------------------------------------------


@dataclass
class Report:
    rows: dict[str, list[Row]]  # split ("dev", "test") -> one row per variant
    comparisons: dict[str, dict[str, list[Comparison]]]  # split -> "a - b" -> per metric
    feedback: list[Row]  # on the dev split
    papers: int
    profiles: dict[str, int]  # split -> profiles scored
    judged: dict[str, int]  # split -> judgements
    subscribers: int


BASELINES = ("plain TF-IDF cosine", "BM25")


def evaluate(
    data: LabelledSet,
    *,
    min_score: float,
    options: RankOptions | None = None,
    config: ModelConfig | None = None,
    subscribers: int = 1000,
    semantic: bool = True,
) -> Report:
    """Every variant on each split; the full model (the last variant) compared with each
    baseline per profile. Defaults are chosen on "dev"; "test" is only ever reported. With
    `semantic` and papermail[semantic] installed, dense fusion is a row of its own."""
    steps = variants(options, config)
    full = steps[-1]
    semantic_variant = dense_variant(full) if semantic and full.options.dense == 0 else None
    scored = [*steps, *option_variants(full), *([semantic_variant] if semantic_variant else [])]
    reference = RelevanceModel.fit(data.papers, full.config).vectors(data.papers).tfidf
    similarity = (reference @ reference.T).toarray()
    people = synthetic_profiles(data.papers, subscribers)
    latency = {  # the dense variant's cost needs vectors: `python -m bench` has it
        v.name: latency_ms(v, data, people, min_score=min_score) if subscribers else None
        for v in scored
        if v.options.dense == 0
    }
    rows: dict[str, list[Row]] = {}
    comparisons: dict[str, dict[str, list[Comparison]]] = {}
    profiles, judged = {}, {}
    for split in SPLITS:
        part = data.split(split)
        if not part.profiles:
            continue
        rows[split] = []
        for variant in scored:
            ranked, sent = run_variant(variant, part, min_score=min_score)
            row = score_rankings(variant.name, part, ranked, sent, similarity)
            row.ms_per_1000 = latency.get(variant.name)
            rows[split].append(row)
        by_name = {r.name: r for r in rows[split]}
        model = by_name[full.name]
        comparisons[split] = {
            f"full model - {base}": [compare(model, by_name[base], m) for m in METRICS]
            for base in BASELINES
        }
        for extra in scored[len(steps) :]:
            comparisons[split][f"{extra.name} - full model"] = [
                compare(by_name[extra.name], model, m) for m in METRICS
            ]
        profiles[split] = len(part.profiles)
        judged[split] = sum(len(part.grades.get(p.name, {})) for p in part.profiles)
    dev = data.split("dev")
    return Report(
        rows,
        comparisons,
        feedback_rows(dev, full) if dev.profiles else [],
        len(data.papers),
        profiles,
        judged,
        subscribers,
    )


def _cell(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _with_ci(row: Row, metric: str) -> str:
    low, high = row.ci.get(metric, (float("nan"), float("nan")))
    return f"{getattr(row, metric):.3f} [{low:.2f}-{high:.2f}]"


_SPLIT_NOTE = {
    "dev": "dev split: defaults were chosen on these profiles",
    "test": "test split: frozen, never used to choose anything (bench/data/README.md)",
}
_LABEL = {"ndcg": "nDCG@10", "precision": "P@5", "recall": "R@20"}


def format_report(report: Report) -> str:
    """The report as a plain-text table (the same in a terminal, a log or a README): each
    split with 95% bootstrap intervals over profiles, then the full model against plain
    cosine and BM25, per profile (wins/ties/losses, ties within 0.01)."""
    lines = [
        f"{report.papers} papers. sent/junk: papers sent per digest of {SENT} at MIN_SCORE and "
        "how many are graded 0; redund.: the top 10's most similar pair (TF-IDF cosine); "
        f"latency: rank() for {report.subscribers} synthetic subscribers, per 1,000; "
        "[a-b]: 95% bootstrap interval of the mean over profiles",
    ]
    head = ("variant", "nDCG@10", "P@5", "R@20", "sent", "junk", "redund.", "ms/1k")
    everything = [r for rows in report.rows.values() for r in rows] + report.feedback
    width = max(len(r.name) for r in everything) + 2
    for split, rows in report.rows.items():
        lines += [
            "",
            f"{_SPLIT_NOTE.get(split, split)}: {report.profiles[split]} profiles, "
            f"{report.judged[split]} judgements",
            head[0].ljust(width)
            + "".join(h.rjust(18 if i < 3 else 8) for i, h in enumerate(head[1:])),
        ]
        for r in rows:
            cells = [_with_ci(r, m).rjust(18) for m in METRICS]
            cells += [
                _cell(r.sent, 1).rjust(8),
                _cell(r.junk, 2).rjust(8),
                _cell(r.redundancy).rjust(8),
                _cell(r.ms_per_1000, 0).rjust(8),
            ]
            lines.append(r.name.ljust(width) + "".join(cells))
        for base, comparisons in report.comparisons[split].items():
            parts = [
                f"{_LABEL[c.metric]} {c.difference:+.3f} [{c.low:+.3f}, {c.high:+.3f}] "
                f"W/T/L {c.wins}/{c.ties}/{c.losses}"
                for c in comparisons
            ]
            lines.append(f"  {base}: " + "; ".join(parts))
    if report.feedback:
        lines += [
            "",
            f"relevance feedback (dev): each profile rates its first {2 * SENT} papers (grade 2 "
            "like, 0 dislike); scores on the papers not rated",
        ]
        for r in report.feedback:
            cells = (_cell(r.ndcg), _cell(r.precision), _cell(r.recall))
            lines.append(r.name.ljust(width) + "".join(c.rjust(11) for c in cells))
    return "\n".join(lines)

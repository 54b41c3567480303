"""The seed-paper rows of `papermail eval` (issue 13): an interest started from three papers a
reader already knows, with no keywords, against keywords alone and both together.

Residual collection, as the feedback rows of `report`: per profile, its three grade-2 papers of
smallest id (deterministic) are the seeds; every row ranks the other papers only and is scored
on their judgements. Profiles with fewer than four grade-2 papers are left out (nothing left to
find). The seeds enter ranking as liked papers (`Feedback`), the path the digest takes.
"""

from __future__ import annotations

from papermail.ranking.base import Feedback, ModelConfig, Profile, RankOptions
from papermail.ranking.evaluation import DEPTH, SPLITS, LabelledSet, Row, residual_row, variants
from papermail.ranking.model import RelevanceModel

SEEDS = 3


def seed_rows(data: LabelledSet, options: RankOptions, config: ModelConfig) -> list[Row]:
    model = RelevanceModel.fit(data.papers, config)
    position = {pid: i for i, pid in enumerate(data.ids)}
    kept, seeds, eligible, residual = [], {}, {}, {}
    for p in data.profiles:
        liked = sorted(pid for pid, g in data.grades.get(p.name, {}).items() if g == 2)
        if len(liked) <= SEEDS:
            continue
        chosen = {position[pid] for pid in liked[:SEEDS]}
        kept.append(p)
        seeds[p.name] = Feedback(tuple(data.papers[i] for i in sorted(chosen)))
        eligible[p.name] = [i for i in range(len(data.papers)) if i not in chosen]
        residual[p.name] = {
            pid: g for pid, g in data.grades.get(p.name, {}).items() if position[pid] not in chosen
        }
    rest = LabelledSet(data.ids, data.papers, data.upvotes, kept, residual)
    rows = []
    for name, with_keywords, feedback in (
        ("keywords alone", True, None),
        (f"{SEEDS} seed papers, no keywords", False, seeds),
        (f"keywords + {SEEDS} seed papers", True, seeds),
    ):
        profiles = [Profile(p.name, p.keyword_list() if with_keywords else (), DEPTH) for p in kept]
        rows.append(residual_row(name, model, data, rest, profiles, eligible, options, feedback))
    return rows


def evaluate_seeds(
    data: LabelledSet, *, options: RankOptions | None = None, config: ModelConfig | None = None
) -> dict[str, tuple[int, list[Row]]]:
    """Per split: (profiles scored, the three rows), with the full model's options."""
    full = variants(options, config)[-1]
    assert full.config is not None
    out = {}
    for split in SPLITS:
        part = data.split(split)
        if part.profiles:
            rows = seed_rows(part, full.options, full.config)
            scored = sum(
                1 for p in part.profiles
                if sum(g == 2 for g in part.grades.get(p.name, {}).values()) > SEEDS
            )  # fmt: skip
            out[split] = (scored, rows)
    return out


def format_seed_rows(result: dict[str, tuple[int, list[Row]]]) -> str:
    lines = []
    for split, (profiles, rows) in result.items():
        lines += [
            "",
            f"seed papers ({split}, {profiles} profiles): an interest started from {SEEDS} "
            "grade-2 papers (smallest ids), scored on the other papers",
            "variant".ljust(34) + "".join(h.rjust(11) for h in ("nDCG@10", "P@5", "R@20")),
        ]
        for r in rows:
            cells = (f"{r.ndcg:.3f}", f"{r.precision:.3f}", f"{r.recall:.3f}")
            lines.append(r.name.ljust(34) + "".join(c.rjust(11) for c in cells))
    return "\n".join(lines)

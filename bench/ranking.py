"""``python -m bench.ranking``: ranking quality on the labelled set in bench/data (the same
table as ``papermail eval``), and ``python -m bench.ranking pool`` to list the candidates a
person judges when extending it (see bench/data/README.md).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from papermail.ranking import evaluation, report
from papermail.settings import default_samples_dir

DATA = Path(__file__).resolve().parent / "data"
DEPTH = 30  # candidates each system contributes to a pool


def pools(
    data: evaluation.LabelledSet, specs: list[dict], depth: int = DEPTH
) -> dict[str, dict[int, list[str]]]:
    """Per profile: paper index -> how it was found. Four systems contribute their top `depth`
    (plain cosine, BM25, phrase gating alone, the full model); the profile's `search` regexes
    add every paper whose title matches one, or whose abstract matches one of the first three;
    `title_scan` lists papers added by reading all titles."""
    steps = evaluation.variants()
    systems = {"plain": steps[0], "bm25": steps[1], "phrases": steps[2], "full": steps[-1]}
    ranked = {
        name: evaluation.run_variant(v, data, min_score=0.0, limit=depth)[0]
        for name, v in systems.items()
    }
    found: dict[str, dict[int, list[str]]] = {}
    for spec in specs:
        pool: dict[int, list[str]] = {}
        for name, lists in ranked.items():
            for place, index in enumerate(lists[spec["name"]], start=1):
                pool.setdefault(index, []).append(f"{name}{place}")
        patterns = spec.get("search", [])
        for index, paper in enumerate(data.papers):
            in_title = any(re.search(p, paper.title, _flags(p)) for p in patterns)
            in_abstract = any(re.search(p, paper.abstract, _flags(p)) for p in patterns[:3])
            if in_title or in_abstract:
                pool.setdefault(index, []).append("search")
        for pid in spec.get("title_scan", []):
            pool.setdefault(data.ids.index(pid), []).append("titles")
        found[spec["name"]] = pool
    return found


def _flags(pattern: str) -> int:
    """Patterns with capitals are acronyms: matched case-sensitively."""
    return 0 if any(c.isupper() for c in pattern) else re.IGNORECASE


def print_pool(data: evaluation.LabelledSet, specs: list[dict], only: str | None) -> None:
    for name, pool in pools(data, specs).items():
        if only and name != only:
            continue
        judged = data.grades.get(name, {})
        print(
            f"## {name}: {len(pool)} candidates, {sum(data.ids[i] in judged for i in pool)} judged"
        )
        for index in sorted(pool):
            paper = data.papers[index]
            grade = judged.get(data.ids[index], "?")
            print(f"{grade} {data.ids[index]} [{','.join(pool[index])}] {paper.title}")
            print(f"      {paper.abstract[:300]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ranking", description=__doc__)
    parser.add_argument("command", nargs="?", choices=["eval", "pool"], default="eval")
    parser.add_argument("--profile", help="pool: only this profile")
    parser.add_argument("--corpus", type=Path, nargs="*", help="default: the sample pages")
    parser.add_argument("--subscribers", type=int, default=1000, help="timed; 0 skips timing")
    parser.add_argument("--min-score", type=float, default=0.08)
    args = parser.parse_args(argv)
    corpus = args.corpus or [default_samples_dir()]
    data = evaluation.load_labelled(DATA / "judgements.tsv", DATA / "profiles.json", corpus)
    if args.command == "pool":
        print_pool(data, json.loads((DATA / "profiles.json").read_text("utf-8")), args.profile)
        return 0
    result = report.evaluate(data, min_score=args.min_score, subscribers=args.subscribers)
    print(report.format_report(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

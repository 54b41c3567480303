"""``python -m bench.ranking``: ranking quality on the labelled set in bench/data (the same
table as ``papermail eval``), ``python -m bench.ranking pool`` to list the candidates a person
judges when extending it (see bench/data/README.md), ``python -m bench.ranking split`` to draw
the dev/test split of new profiles, and ``python -m bench.ranking blind-pools`` to write the
blinded grading files of the profiles not judged yet (bench/data/pools/).
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from papermail.ranking import evaluation, report
from papermail.settings import default_samples_dir

DATA = Path(__file__).resolve().parent / "data"
DEPTH = 30  # candidates each system contributes to a pool
POOLS = DATA / "pools"  # blinded grading files of the profiles not judged yet
DENSE_CACHE = DATA.parents[1] / "var" / "bench-dense"  # paper embeddings (not in git)
BLIND_SYSTEMS = ("plain", "bm25", "full", "dense")  # plus the keyword search
BLIND_DEPTH = 20  # top n of each system; 15 when a pool passes 80, 25 when under 35
SEED = 20261202  # the dev/test draw and the order candidates are shown in
STRATA = (  # the shapes new profiles are drawn in, by how their `kind` starts
    "narrow phrase",
    "broad topic",
    "acronym only",
    "two aspects|three aspects",
    "excluded keyword",
    "ambiguous",
    "morphological variant",
)


def pools(
    data: evaluation.LabelledSet,
    specs: list[dict],
    depth: int = DEPTH,
    systems: Sequence[str] = ("plain", "bm25", "phrases", "full"),
) -> dict[str, dict[int, list[str]]]:
    """Per profile: paper index -> how it was found. Each system in `systems` contributes its
    top `depth` (see `rankings`); the profile's `search` regexes add every paper whose title
    matches one, or whose abstract matches one of the first three; `title_scan` lists papers
    added by reading all titles."""
    ranked = rankings(data, systems, depth)
    found: dict[str, dict[int, list[str]]] = {}
    for spec in specs:
        pool: dict[int, list[str]] = {}
        for name, lists in ranked.items():
            for place, index in enumerate(lists[spec["name"]], start=1):
                pool.setdefault(index, []).append(f"{name}{place}")
        for index in keyword_search(data, spec.get("search", [])):
            pool.setdefault(index, []).append("search")
        for pid in spec.get("title_scan", []):
            pool.setdefault(data.ids.index(pid), []).append("titles")
        found[spec["name"]] = pool
    return found


def rankings(
    data: evaluation.LabelledSet, systems: Sequence[str], depth: int
) -> dict[str, dict[str, list[int]]]:
    """System -> profile -> its top `depth` paper indexes. Systems: "plain" (TF-IDF cosine),
    "bm25", "phrases" (phrase gating alone), "full" (the model as it stands) and "dense"
    (MiniLM sentence embeddings, see `dense_rankings`)."""
    steps = evaluation.variants()
    known = {"plain": steps[0], "bm25": steps[1], "phrases": steps[2], "full": steps[-1]}
    ranked = {}
    for name in systems:
        if name == "dense":
            ranked[name] = dense_rankings(data, depth)
        else:
            ranked[name] = evaluation.run_variant(known[name], data, min_score=0.0, limit=depth)[0]
    return ranked


def dense_rankings(
    data: evaluation.LabelledSet, depth: int, cache: Path = DENSE_CACHE
) -> dict[str, list[int]]:
    """Per profile: papers by the best cosine between any of its keywords and the paper's
    "title. abstract" MiniLM embedding (excluded keywords ignored). Paper vectors are cached
    in `cache`, keyed by the model and the texts embedded."""
    from papermail.ranking import dense  # torch: imported only when asked for

    texts = [dense.paper_text(p.title, p.abstract) for p in data.papers]
    key = dense.text_hash(dense.MODEL_NAME + "\n" + "\n".join(texts))
    path = cache / f"papers-{key}.npy"
    if path.exists():
        papers = np.load(path)
    else:
        papers = dense.encode(texts)
        cache.mkdir(parents=True, exist_ok=True)
        np.save(path, papers)
    ranked = {}
    for profile in data.profiles:
        scores = (dense.encode(list(profile.keywords)) @ papers.T).max(axis=0)
        order = np.lexsort((np.arange(len(scores)), -scores))
        ranked[profile.name] = [int(i) for i in order[:depth]]
    return ranked


def keyword_search(data: evaluation.LabelledSet, patterns: Sequence[str]) -> list[int]:
    """Papers whose title matches one of `patterns`, or whose abstract matches one of the
    first three."""
    return [
        index
        for index, paper in enumerate(data.papers)
        if any(re.search(p, paper.title, _flags(p)) for p in patterns)
        or any(re.search(p, paper.abstract, _flags(p)) for p in patterns[:3])
    ]


def _flags(pattern: str) -> int:
    """Patterns with capitals are acronyms: matched case-sensitively."""
    return 0 if any(c.isupper() for c in pattern) else re.IGNORECASE


def stratum(kind: str) -> str:
    """The stratum of a profile's `kind` (the first of STRATA it starts with)."""
    return next(s for s in STRATA if re.match(s, kind))


def draw_split(specs: list[dict], test: int, seed: int = SEED) -> dict[str, str]:
    """Profile -> "dev" or "test" for `specs` (profiles nobody tuned on): within each stratum,
    `random.Random(seed).sample` draws the dev profiles, dev getting its share of the stratum
    (rounded) and every stratum keeping at least one test profile."""
    rng = random.Random(seed)
    groups: dict[str, list[str]] = {}
    for spec in specs:
        groups.setdefault(stratum(spec["kind"]), []).append(spec["name"])
    dev_total = len(specs) - test
    shares = {k: round(dev_total * len(v) / len(specs)) for k, v in groups.items()}
    for k in sorted(groups, key=lambda k: -len(groups[k])):  # fix rounding on the big strata
        gap = dev_total - sum(shares.values())
        if gap == 0:
            break
        shares[k] += 1 if gap > 0 else -1
    split = {}
    for k, names in groups.items():
        dev = set(rng.sample(names, min(shares[k], len(names) - 1)))
        split.update({name: "dev" if name in dev else "test" for name in names})
    return split


def blind_pools(
    data: evaluation.LabelledSet, specs: list[dict], low: int = 35, high: int = 80
) -> dict[str, dict[int, list[str]]]:
    """Pools of the profiles in `specs`: the top BLIND_DEPTH of plain cosine, BM25, the full
    model and the dense ranker, plus the keyword search; a profile whose pool passes `high`
    takes the top 15 instead, one under `low` the top 25."""
    ranked = rankings(data, BLIND_SYSTEMS, 25)
    found = {}
    for spec in specs:
        searched = keyword_search(data, spec.get("search", []))
        pool = _union(ranked, spec["name"], searched, BLIND_DEPTH)
        if len(pool) > high:
            pool = _union(ranked, spec["name"], searched, 15)
        elif len(pool) < low:
            pool = _union(ranked, spec["name"], searched, 25)
        found[spec["name"]] = pool
    return found


def _union(
    ranked: dict[str, dict[str, list[int]]], profile: str, searched: list[int], depth: int
) -> dict[int, list[str]]:
    pool: dict[int, list[str]] = {}
    for system, lists in ranked.items():
        for place, index in enumerate(lists[profile][:depth], start=1):
            pool.setdefault(index, []).append(f"{system}{place}")
    for index in searched:
        pool.setdefault(index, []).append("search")
    return pool


def write_blind_pools(
    data: evaluation.LabelledSet, specs: list[dict], out: Path = POOLS
) -> dict[str, int]:
    """One Markdown grading file per profile (keywords, excluded words and need, then every
    candidate's id, title and whole abstract in a seeded random order, with nothing saying
    which system found it), and provenance.json (profile -> paper id -> systems with ranks,
    updated in place). Returns the pool sizes."""
    out.mkdir(parents=True, exist_ok=True)
    record = out / "provenance.json"
    provenance = json.loads(record.read_text("utf-8")) if record.exists() else {}
    found = blind_pools(data, specs)
    for spec in specs:
        name = spec["name"]
        ids = sorted(data.ids[i] for i in found[name])
        random.Random(f"{SEED}:{name}").shuffle(ids)
        provenance[name] = {data.ids[i]: how for i, how in sorted(found[name].items())}
        (out / f"{name}.md").write_text(_grading_sheet(data, spec, ids), encoding="utf-8")
    record.write_text(json.dumps(provenance, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return {name: len(pool) for name, pool in found.items()}


def _grading_sheet(data: evaluation.LabelledSet, spec: dict, ids: list[str]) -> str:
    papers = dict(zip(data.ids, data.papers, strict=True))
    excluded = spec.get("excluded", [])
    lines = [
        f"# {spec['name']}",
        "",
        f"- **keywords**: {', '.join(f'`{k}`' for k in spec['keywords'])}",
        f"- **excluded**: {', '.join(f'`{x}`' for x in excluded) if excluded else 'none'}",
        f"- **need**: {spec['need']}",
        "",
        "Grades: 2 on-topic, 1 partly, 0 not relevant (bench/data/README.md). A paper whose",
        "title or abstract contains an excluded word (regex `\\bword`, any case) is 0.",
        f"{len(ids)} candidates, in random order.",
    ]
    for pid in ids:
        paper = papers[pid]
        title = " ".join(paper.title.split())
        lines += ["", f"### {pid}", "", f"**{title}**", "", " ".join(paper.abstract.split())]
    return "\n".join(lines) + "\n"


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
    parser.add_argument(
        "command", nargs="?", choices=["eval", "pool", "split", "blind-pools"], default="eval"
    )
    parser.add_argument("--profile", help="pool, blind-pools: only this profile")
    parser.add_argument("--corpus", type=Path, nargs="*", help="default: the sample pages")
    parser.add_argument("--subscribers", type=int, default=1000, help="timed; 0 skips timing")
    parser.add_argument("--min-score", type=float, default=0.08)
    args = parser.parse_args(argv)
    corpus = args.corpus or [default_samples_dir()]
    data = evaluation.load_labelled(DATA / "judgements.tsv", DATA / "profiles.json", corpus)
    specs = json.loads((DATA / "profiles.json").read_text("utf-8"))
    if args.command == "pool":
        print_pool(data, specs, args.profile)
        return 0
    fresh = [s for s in specs if not data.grades.get(s["name"])]  # nobody judged them yet
    if args.command == "split":
        for name, half in sorted(draw_split(fresh, test=30).items()):
            print(half, name)
        return 0
    if args.command == "blind-pools":
        wanted = [s for s in fresh if args.profile in (None, s["name"])]
        sizes = write_blind_pools(data, wanted)
        for name, size in sizes.items():
            print(f"{size:4d} {name}")
        print(f"{sum(sizes.values()):4d} candidates over {len(sizes)} profiles")
        return 0
    result = report.evaluate(data, min_score=args.min_score, subscribers=args.subscribers)
    print(report.format_report(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Papers from files for ranking outside the daily job: the evaluation's corpus and the
`papermail rank` command, which ranks whatever `read_path` reads, touching no database."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from papermail.ranking.base import Keyword, Match, ModelConfig, PaperText, Profile, RankOptions
from papermail.ranking.batch import rank
from papermail.ranking.model import RelevanceModel
from papermail.sources import read_path


def files_in(paths: Iterable[Path]) -> list[Path]:
    """Files named, and every file inside folders named (sorted), skipping hidden ones."""
    found = []
    for path in paths:
        if path.is_dir():
            found += sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
        else:
            found.append(path)
    return found


def load_corpus(paths: Iterable[Path]) -> tuple[list[str], list[PaperText], list[int | None]]:
    """Every paper in `paths` (anything read_path reads), each id once (first seen wins)."""
    seen: dict[str, tuple[PaperText, int | None]] = {}
    for path in files_in(paths):
        for record in read_path(path).records:
            seen.setdefault(
                record.paper_id, (PaperText(record.title, record.abstract), record.upvotes)
            )
    return list(seen), [t for t, _ in seen.values()], [u for _, u in seen.values()]


def rank_files(
    paths: Iterable[Path],
    keywords: Sequence[str],
    excluded: Sequence[str] = (),
    *,
    limit: int,
    min_score: float,
    options: RankOptions | None = None,
    config: ModelConfig | None = None,
    cache: Path | None = None,
) -> list[tuple[str, str, Match]]:
    """(paper id, title, match) for an ad-hoc profile over the papers in `paths`, best first:
    the model is fitted on those papers, as the daily job fits it on its rolling corpus. With
    `options.dense` and the semantic extra, paper vectors are encoded once into `cache`."""
    ids, papers, upvotes = load_corpus(paths)
    if not papers:
        raise ValueError("no papers in the corpus")
    model = RelevanceModel.fit(papers, config)
    wanted = (*(Keyword(k) for k in keywords), *(Keyword(x, negative=True) for x in excluded))
    profile = Profile(None, wanted, limit)
    meaning = None
    if options is not None and options.dense > 0 and cache is not None:
        from papermail.ranking import dense

        if dense.available():
            pairs = [(p.title, p.abstract) for p in papers]
            meaning = dense.meaning(dense.cached_paper_vectors(pairs, cache))
    found = rank(
        model,
        papers,
        [profile],
        min_score=min_score,
        options=options,
        upvotes=upvotes,
        meaning=meaning,
    )
    return [(ids[m.index], papers[m.index].title, m) for m in found[None]]

"""`papermail eval`'s seed-paper rows (issue 13): an interest started from three on-topic papers
with no keywords, beside keywords alone and both together, on the labelled set."""

from __future__ import annotations

from pathlib import Path

from papermail.ranking import evaluation, seed_eval

DATA = Path(__file__).resolve().parents[1] / "bench" / "data"


def test_seed_rows_on_both_splits(seeds_dir):
    data = evaluation.load_labelled(DATA / "judgements.tsv", DATA / "profiles.json", [seeds_dir])
    result = seed_eval.evaluate_seeds(data)
    assert set(result) == {"dev", "test"}
    for profiles, rows in result.values():
        assert profiles >= 10
        by_name = {r.name: r for r in rows}
        assert list(by_name) == [
            "keywords alone",
            "3 seed papers, no keywords",
            "keywords + 3 seed papers",
        ]
        # Three papers alone find on-topic papers; with keywords they never cost much.
        assert by_name["3 seed papers, no keywords"].ndcg > 0.4
        assert by_name["keywords + 3 seed papers"].ndcg >= by_name["keywords alone"].ndcg - 0.02
    text = seed_eval.format_seed_rows(result)
    assert "seed papers (dev" in text and "keywords + 3 seed papers" in text
